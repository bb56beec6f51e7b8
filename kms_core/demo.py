"""`kms demo`: the main job on embedded defaults.

Walks the seed's flow against the embedded engine (store under $KMS_HOME):
a key with an alias and a description; a secret encrypted and decrypted;
a data key that envelope-encrypts a file larger than 4 KB; rotation on,
an on-demand rotation, the old ciphertext still decrypting, and a
re-encryption under the new key material.  Then each installed integration
shows its one switch (entry-point group ``kms.demos``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def say(text: str) -> None:
    print(text, flush=True)


def core_demo(kms, workdir: Path) -> None:
    alias = "alias/kms-demo"
    key = kms.create_key(Description="kms demo: protects the demo's secrets")["KeyMetadata"]
    key_id = key["KeyId"]
    try:
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    except kms.exceptions.AlreadyExistsException:
        kms.update_alias(AliasName=alias, TargetKeyId=key_id)  # demo re-run: point at the new key
    say(f"1. created key {key_id} ({key['Description']!r}) with alias {alias}")

    secret = b"db-password: correct horse battery staple"
    context = {"app": "demo", "purpose": "secret"}
    blob = kms.encrypt(KeyId=alias, Plaintext=secret, EncryptionContext=context)["CiphertextBlob"]
    back = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    assert back == secret
    say(f"2. encrypted a {len(secret)}-byte secret into a {len(blob)}-byte blob and decrypted it "
        "(the encryption context is required to decrypt)")
    try:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "other"})
    except kms.exceptions.InvalidCiphertextException:
        say("   a wrong encryption context is refused: InvalidCiphertextException")

    data = os.urandom(48 * 1024)
    source = workdir / "report.bin"
    source.write_bytes(data)
    dk = kms.generate_data_key(KeyId=alias, KeySpec="AES_256", EncryptionContext={"file": source.name})
    nonce = os.urandom(12)
    sealed = workdir / "report.bin.enc"
    wrapped = dk["CiphertextBlob"]
    sealed.write_bytes(len(wrapped).to_bytes(2, "big") + wrapped + nonce
                       + AESGCM(dk["Plaintext"]).encrypt(nonce, data, source.name.encode()))
    del dk  # the plaintext data key is not kept
    raw = sealed.read_bytes()
    n = int.from_bytes(raw[:2], "big")
    key_bytes = kms.decrypt(CiphertextBlob=raw[2:2 + n], EncryptionContext={"file": source.name})["Plaintext"]
    restored = AESGCM(key_bytes).decrypt(raw[2 + n:14 + n], raw[14 + n:], source.name.encode())
    assert restored == data
    say(f"3. envelope-encrypted a {len(data) // 1024} KiB file with a data key from GenerateDataKey "
        f"({sealed.name}: wrapped key + AES-GCM), then decrypted it")

    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=365)
    status = kms.get_key_rotation_status(KeyId=key_id)
    old_material = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    kms.rotate_key_on_demand(KeyId=key_id)
    new_material = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert old_material != new_material
    say(f"4. enabled yearly rotation (next: {status['NextRotationDate']:%Y-%m-%d}) and rotated now: "
        f"key material {old_material[:8]}… → {new_material[:8]}…")
    old = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert old["Plaintext"] == secret and old["KeyMaterialId"] == old_material
    say("5. the ciphertext made before the rotation still decrypts (old material is kept)")
    re = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=context,
                        DestinationKeyId=alias, DestinationEncryptionContext=context)
    assert re["DestinationKeyMaterialId"] == new_material
    assert kms.decrypt(CiphertextBlob=re["CiphertextBlob"], EncryptionContext=context)["Plaintext"] == secret
    say("6. re-encrypted it under the new key material with ReEncrypt (the plaintext never left KMS)")


def _key_ids(kms) -> set[str]:
    return {k["KeyId"] for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kms demo", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--workdir", help="where to write the demo's files (default: a temp dir)")
    ap.add_argument("--temporary", action="store_true",
                    help="use a throw-away key store (a temporary KMS_HOME) instead of $KMS_HOME")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kms-demo-") as tmp:
        if args.temporary:
            os.environ["KMS_HOME"] = str(Path(tmp) / "kms-home")
            for var in ("KMS_STORE_URL", "KMS_ROOT_KEY", "KMS_ROOT_KEY_FILE"):
                os.environ.pop(var, None)
        import kms_core  # noqa: PLC0415 - only the demo needs it

        kms = kms_core.client()
        engine = kms.engine
        say(f"kms demo — embedded engine, store {engine.store.display_url}, "
            f"region {engine.settings.region}, account {engine.settings.account_id}")
        if not args.temporary:
            say("(the keys this demo creates stay in that store; `kms demo --temporary` uses a throw-away one)")
        before = _key_ids(kms)
        workdir = Path(args.workdir or tmp) / "files"
        workdir.mkdir(parents=True, exist_ok=True)
        core_demo(kms, workdir)
        for ep in sorted(entry_points(group="kms.demos"), key=lambda e: e.name):
            say(f"\n== {ep.name} ==")
            part = workdir / ep.name
            part.mkdir(exist_ok=True)
            ep.load()(kms, part, say)
        _say_what_stays(kms, before, args.temporary)
    say("\ndone.")
    return 0


def _say_what_stays(kms, before: set[str], temporary: bool) -> None:
    made = sorted(_key_ids(kms) - before)
    if temporary:
        say(f"\nThe demo made {len(made)} key(s) in a throw-away store, now removed.")
        return
    say(f"\nThe demo left {len(made)} new key(s) in {kms.engine.store.display_url}:")
    managed = []
    for key_id in made:
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        say(f"  {key_id}  {meta['KeyManager']:<8} {meta.get('Description', '')[:60]}")
        if meta["KeyManager"] == "AWS":
            managed.append(key_id)
    customer = [k for k in made if k not in managed]
    if customer:
        say("Remove the customer-managed ones as in AWS (a 7–30 day waiting period):")
        for key_id in customer:
            say(f"  kms schedule-key-deletion --key-id {key_id} --pending-window-in-days 7")
    if managed:
        say("AWS-managed keys cannot be deleted (as in AWS); they are reused by the next run.")


if __name__ == "__main__":
    sys.exit(main())

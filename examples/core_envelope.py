"""Envelope encryption with the same code on the embedded engine, `kms serve` or AWS KMS.

    python examples/core_envelope.py                          # embedded engine (KMS_HOME)
    AWS_ENDPOINT_URL_KMS=http://127.0.0.1:8080 python examples/core_envelope.py   # a KMS server

A data key from GenerateDataKey encrypts a payload locally (AES-256-GCM); only
the wrapped data key is stored with it.  Decryption unwraps the key with KMS.
The encryption context binds the payload to its purpose: change it and
decryption fails.
"""
from __future__ import annotations

import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import kms_core


def seal(kms, key_id: str, payload: bytes, context: dict[str, str]) -> bytes:
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    nonce = os.urandom(12)
    wrapped = dk["CiphertextBlob"]
    body = AESGCM(dk["Plaintext"]).encrypt(nonce, payload, wrapped)
    return len(wrapped).to_bytes(2, "big") + wrapped + nonce + body


def unseal(kms, sealed: bytes, context: dict[str, str]) -> bytes:
    n = int.from_bytes(sealed[:2], "big")
    wrapped, nonce, body = sealed[2:2 + n], sealed[2 + n:14 + n], sealed[14 + n:]
    key = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)["Plaintext"]
    return AESGCM(key).decrypt(nonce, body, wrapped)


def main() -> int:
    kms = kms_core.client()  # a boto3 client when AWS_ENDPOINT_URL_KMS is set
    key_id = kms.create_key(Description="examples/core_envelope.py")["KeyMetadata"]["KeyId"]
    context = {"purpose": "example", "record": "42"}
    payload = os.urandom(1 << 20)
    sealed = seal(kms, key_id, payload, context)
    assert unseal(kms, sealed, context) == payload
    print(f"sealed {len(payload):,} bytes under {key_id} ({len(sealed) - len(payload)} bytes of overhead)")
    try:
        unseal(kms, sealed, {"purpose": "example", "record": "43"})
    except kms.exceptions.InvalidCiphertextException:
        print("a different encryption context is refused, as it should be")
    # As in AWS, a key is never deleted at once: it waits out a 7-30 day window.
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    print(f"scheduled {key_id} for deletion in 7 days; until then it stays in the key store "
          "(KMS_HOME, or the server's store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

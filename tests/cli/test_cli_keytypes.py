"""`kms sign` / `kms verify` / `kms get-public-key` on the embedded engine; the signature is
checked by OpenSSL from the public key the CLI printed.  `kms create-key --key-spec` for every
spec, and the typed-key commands byte for byte against `aws kms` (both against moto)."""
from __future__ import annotations

import base64
import subprocess

import boto3
import pytest

from kms_core.keytypes.spec_facts import CHINA_ONLY, SPECS


def test_sign_get_public_key_verify_and_openssl(cli, tmp_path):
    key_id = cli("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY",
                 "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"signed on the command line\n")
    signed = cli("sign", "--key-id", key_id, "--message", f"fileb://{msg}", "--signing-algorithm", "ECDSA_SHA_256",
                 "--query", "Signature", "--output", "text")
    assert signed.rc == 0, signed
    sig = tmp_path / "sig.der"
    sig.write_bytes(base64.b64decode(signed.out))
    pub = cli("get-public-key", "--key-id", key_id)
    assert pub.rc == 0, pub
    assert pub.json["KeySpec"] == "ECC_NIST_P256" and pub.json["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    der = tmp_path / "pub.der"
    der.write_bytes(base64.b64decode(pub.json["PublicKey"]))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-keyform", "DER", "-verify", str(der), "-signature",
                           str(sig), str(msg)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verified OK" in done.stdout, done

    ok = cli("verify", "--key-id", key_id, "--message", f"fileb://{msg}", "--signature", f"fileb://{sig}",
             "--signing-algorithm", "ECDSA_SHA_256", "--query", "SignatureValid", "--output", "text")
    assert (ok.rc, ok.out.strip()) == (0, "True")
    msg.write_bytes(b"tampered\n")
    bad = cli("verify", "--key-id", key_id, "--message", f"fileb://{msg}", "--signature", f"fileb://{sig}",
              "--signing-algorithm", "ECDSA_SHA_256")
    assert bad.rc == 255
    assert bad.err.startswith("An error occurred (KMSInvalidSignatureException) when calling the Verify operation")


def test_get_public_key_of_symmetric_key_is_one_line_error(cli):
    key_id = cli("create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    res = cli("get-public-key", "--key-id", key_id)
    assert res.rc == 255
    assert res.err.startswith("An error occurred (UnsupportedOperationException) when calling the GetPublicKey")
    assert res.err.count("\n") == 1


_EVERY_SPEC_AND_USAGE = [(spec, usage) for spec, f in SPECS.items() if spec not in CHINA_ONLY
                         for usage in f.key_usages]


@pytest.mark.parametrize(("spec", "usage"), _EVERY_SPEC_AND_USAGE)
def test_create_key_every_spec_and_usage(cli, spec, usage):
    res = cli("create-key", "--key-spec", spec, "--key-usage", usage)
    assert res.rc == 0, res
    md = res.json["KeyMetadata"]
    assert (md["KeySpec"], md["CustomerMasterKeySpec"], md["KeyUsage"]) == (spec, spec, usage)
    for field, algorithms in SPECS[spec].algorithms(usage).items():
        assert md[field] == algorithms


def test_create_key_spec_errors_are_awss_one_line_errors(cli):
    missing = cli("create-key", "--key-spec", "HMAC_256")
    assert missing.rc == 255 and missing.err == (
        "An error occurred (ValidationException) when calling the CreateKey operation: You must specify "
        "a KeyUsage value for all KMS keys except for symmetric encryption keys.\n")
    wrong = cli("create-key", "--key-spec", "RSA_2048", "--key-usage", "KEY_AGREEMENT")
    assert wrong.rc == 255
    assert wrong.err.strip() == ("An error occurred (ValidationException) when calling the CreateKey operation: "
                                 "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048")
    sm2 = cli("create-key", "--key-spec", "SM2", "--key-usage", "SIGN_VERIFY")
    assert sm2.rc == 255 and "(UnsupportedOperationException)" in sm2.err


@pytest.fixture
def moto_typed_keys(moto_url, aws_env):
    """An RSA signing key, an ECC P-256 signing key and an HMAC key in moto (which, for
    these, answers as AWS does)."""
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    return {spec: kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
            for spec, usage in (("RSA_2048", "SIGN_VERIFY"), ("ECC_NIST_P256", "SIGN_VERIFY"),
                                ("HMAC_256", "GENERATE_VERIFY_MAC"))}


def test_typed_key_commands_print_what_awscli_prints(cli, aws, moto_url, moto_typed_keys, tmp_path):
    """`kms X --endpoint-url M` and `aws kms X --endpoint-url M` print the same bytes for
    describe-key / get-public-key of asymmetric and HMAC keys, a deterministic RSA PKCS#1
    signature and an HMAC (both computed by the same server)."""
    msg = tmp_path / "m.bin"
    msg.write_bytes(b"compare me")
    rsa, ecc, hmac_key = (moto_typed_keys[s] for s in ("RSA_2048", "ECC_NIST_P256", "HMAC_256"))
    commands = [
        ("describe-key", "--key-id", rsa),
        ("describe-key", "--key-id", ecc, "--output", "text"),
        ("describe-key", "--key-id", hmac_key, "--output", "table"),
        ("get-public-key", "--key-id", ecc),
        ("get-public-key", "--key-id", rsa, "--query", "SigningAlgorithms", "--output", "text"),
        ("sign", "--key-id", rsa, "--message", f"fileb://{msg}", "--signing-algorithm",
         "RSASSA_PKCS1_V1_5_SHA_256"),
        ("generate-mac", "--key-id", hmac_key, "--message", f"fileb://{msg}", "--mac-algorithm", "HMAC_SHA_256"),
    ]
    for command in commands:
        args = (*command, "--endpoint-url", moto_url)
        ours, theirs = cli(*args), aws("kms", *args)
        assert theirs.rc == 0, theirs
        assert (ours.rc, ours.out) == (theirs.rc, theirs.out), command

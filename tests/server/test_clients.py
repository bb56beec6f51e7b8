"""Unchanged AWS tools against the server: the AWS CLI and the AWS Encryption SDK."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import botocore.session
import pytest


def _aws(server, key, tmp_path, *args) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_MAX_ATTEMPTS="1")
    aws = shutil.which("aws")
    assert aws, "the AWS CLI (awscli from PyPI) must be installed"
    out = subprocess.run([aws, "kms", *args, "--endpoint-url", server.url, "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_aws_cli_runs_the_five_seed_commands(server, access_key, kms_remote, tmp_path):
    k1 = kms_remote.create_key(Description="cli source")["KeyMetadata"]["KeyId"]
    k2 = kms_remote.create_key(Description="cli destination")["KeyMetadata"]["KeyId"]
    kms_remote.create_alias(AliasName="alias/cli", TargetKeyId=k1)
    secret = os.urandom(100)
    (tmp_path / "plain").write_bytes(secret)

    enc = _aws(server, access_key, tmp_path, "encrypt", "--key-id", "alias/cli",
               "--plaintext", f"fileb://{tmp_path / 'plain'}", "--encryption-context", "purpose=cli")
    assert enc["KeyId"].endswith(k1)
    (tmp_path / "ct").write_bytes(base64.b64decode(enc["CiphertextBlob"]))

    dec = _aws(server, access_key, tmp_path, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}",
               "--encryption-context", "purpose=cli")
    assert base64.b64decode(dec["Plaintext"]) == secret

    re = _aws(server, access_key, tmp_path, "re-encrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}",
              "--source-encryption-context", "purpose=cli", "--destination-key-id", k2)
    assert re["KeyId"].endswith(k2) and re["SourceKeyId"].endswith(k1)
    assert kms_remote.decrypt(CiphertextBlob=base64.b64decode(re["CiphertextBlob"]))["Plaintext"] == secret

    assert _aws(server, access_key, tmp_path, "enable-key-rotation", "--key-id", k1) == {}
    assert kms_remote.get_key_rotation_status(KeyId=k1)["KeyRotationEnabled"] is True

    gdk = _aws(server, access_key, tmp_path, "generate-data-key", "--key-id", "alias/cli", "--key-spec", "AES_256")
    plain = base64.b64decode(gdk["Plaintext"])
    assert len(plain) == 32
    assert kms_remote.decrypt(CiphertextBlob=base64.b64decode(gdk["CiphertextBlob"]))["Plaintext"] == plain


def test_aws_encryption_sdk_round_trip(server, access_key, kms_remote, tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    import aws_encryption_sdk
    from aws_encryption_sdk import CommitmentPolicy
    from aws_encryption_sdk.key_providers.kms import StrictAwsKmsMasterKeyProvider

    arn = kms_remote.create_key(Description="esdk")["KeyMetadata"]["Arn"]
    # A botocore session whose KMS clients point at the server, with our access key.
    # (a profile with endpoint_url, as a user would configure it).
    config = tmp_path / "aws-config"
    config.write_text(f"[profile kms-local]\nregion = us-east-1\nendpoint_url = {server.url}\n"
                      f"aws_access_key_id = {access_key['AccessKeyId']}\n"
                      f"aws_secret_access_key = {access_key['SecretAccessKey']}\n")
    session = botocore.session.Session(profile="kms-local")
    session.set_config_variable("config_file", str(config))
    session.set_config_variable("credentials_file", str(tmp_path / "none"))
    assert session.create_client("kms").meta.endpoint_url == server.url
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[arn], botocore_session=session)
    sdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

    data = os.urandom(10_000)
    ciphertext, header = sdk.encrypt(source=data, key_provider=provider, encryption_context={"app": "test"})
    assert data not in ciphertext
    assert [k.key_provider.key_info for k in header.encrypted_data_keys] == [arn.encode()]
    plaintext, dheader = sdk.decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == data
    assert dheader.encryption_context["app"] == "test"

    # The data key really is wrapped by the server's key: disabling it stops decryption.
    kms_remote.disable_key(KeyId=arn)
    try:
        with pytest.raises(Exception) as e:
            provider = StrictAwsKmsMasterKeyProvider(key_ids=[arn], botocore_session=session)
            sdk.decrypt(source=ciphertext, key_provider=provider)
        assert "DisabledException" in repr(e.value) or "Unable to decrypt" in str(e.value)
    finally:
        kms_remote.enable_key(KeyId=arn)

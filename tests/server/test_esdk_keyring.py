"""The AWS Encryption SDK with a KMS *keyring* (the Material Providers Library)
whose boto3 client points at `kms serve` round-trips data, and the data key
really is wrapped by the server's key."""
from __future__ import annotations

import os

import boto3
import pytest


def test_kms_keyring_round_trip(server, access_key, kms_remote):
    import aws_encryption_sdk
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
    from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsKeyringInput
    from aws_encryption_sdk import CommitmentPolicy

    arn = kms_remote.create_key(Description="esdk keyring")["KeyMetadata"]["Arn"]
    client = boto3.client("kms", endpoint_url=server.url, region_name="us-east-1",
                          aws_access_key_id=access_key["AccessKeyId"],
                          aws_secret_access_key=access_key["SecretAccessKey"])
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyring = mpl.create_aws_kms_keyring(input=CreateAwsKmsKeyringInput(kms_key_id=arn, kms_client=client))
    sdk = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

    data = os.urandom(50_000)
    ciphertext, _ = sdk.encrypt(source=data, keyring=keyring, encryption_context={"app": "keyring"})
    assert data not in ciphertext
    plaintext, header = sdk.decrypt(source=ciphertext, keyring=keyring)
    assert plaintext == data and header.encryption_context["app"] == "keyring"

    kms_remote.disable_key(KeyId=arn)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the ESDK wraps the KMS error in its own types
            sdk.decrypt(source=ciphertext, keyring=keyring)
    finally:
        kms_remote.enable_key(KeyId=arn)
    assert sdk.decrypt(source=ciphertext, keyring=keyring)[0] == data

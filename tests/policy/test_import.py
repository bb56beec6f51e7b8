"""BYOK: EXTERNAL keys, GetParametersForImport, ImportKeyMaterial with real
RSA-OAEP wrapping, re-import rules, expiry, deletion; the material never
appears in the store."""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding


def code(e):
    return e.value.response["Error"]["Code"]


def wrap(public_der: bytes, material: bytes, algorithm: str) -> bytes:
    pub = serialization.load_der_public_key(public_der)
    h = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return pub.encrypt(material, oaep)
    aes = os.urandom(32)
    return pub.encrypt(aes, oaep) + aes_key_wrap_with_padding(aes, material)


def import_into(kms, key, material, algorithm="RSAES_OAEP_SHA_256", **kw):
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    kw.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=wrap(params["PublicKey"], material, algorithm), **kw)


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"])
def test_import_round_trip_and_material_not_in_store(kms, kms_home, algorithm):
    md = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
    key = md["KeyId"]
    assert md["KeyState"] == "PendingImport" and md["Origin"] == "EXTERNAL"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert code(e) == "KMSInvalidStateException"
    material = os.urandom(32)
    import_into(kms, key, material, algorithm)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    blob = kms.encrypt(KeyId=key, Plaintext=b"hello")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hello"
    kms.engine.store.dispose()
    for path in kms_home.rglob("*"):
        if path.is_file():
            assert material not in path.read_bytes(), path


def test_reimport_must_be_same_material_even_after_delete(kms):
    key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    material = os.urandom(32)
    import_into(kms, key, material)
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        import_into(kms, key, os.urandom(32))
    assert code(e) == "IncorrectKeyMaterialException"
    out = kms.delete_imported_key_material(KeyId=key)
    assert out["KeyId"].endswith(key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(ClientError) as e:
        import_into(kms, key, os.urandom(32))
    assert code(e) == "IncorrectKeyMaterialException"
    import_into(kms, key, material)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_expiry_and_tokens(kms, clock):
    key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    assert params["ParametersValidTo"] - clock.now() == timedelta(days=1)
    material = os.urandom(32)
    wrapped = wrap(params["PublicKey"], material, "RSAES_OAEP_SHA_256")
    with pytest.raises(ClientError) as e:  # KEY_MATERIAL_EXPIRES needs ValidTo
        kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped)
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.import_key_material(KeyId=key, ImportToken=b"garbage" * 3, EncryptedKeyMaterial=wrapped,
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(e) == "InvalidImportTokenException"
    with pytest.raises(ClientError) as e:
        kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=b"\x01" * 256,
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(e) == "InvalidCiphertextException"
    kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ValidTo=clock.now() + timedelta(days=2))
    md = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and md["ValidTo"] == clock.now() + timedelta(days=2)
    kms.encrypt(KeyId=key, Plaintext=b"x")
    clock.advance(days=3)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert code(e) == "KMSInvalidStateException"
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(ClientError) as e:  # the token has expired too
        kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(e) == "ExpiredImportTokenException"


def test_import_rules_on_aws_kms_keys(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    assert code(e) == "UnsupportedOperationException"
    assert "origin is AWS_KMS which is not valid for this operation" in e.value.response["Error"]["Message"]
    ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.enable_key_rotation(KeyId=ext)
    assert code(e) in ("UnsupportedOperationException", "KMSInvalidStateException")
    other = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = kms.get_parameters_for_import(KeyId=other, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    with pytest.raises(ClientError) as e:  # a token for another key
        kms.import_key_material(KeyId=ext, ImportToken=params["ImportToken"],
                                EncryptedKeyMaterial=wrap(params["PublicKey"], os.urandom(32), "RSAES_OAEP_SHA_256"),
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(e) == "InvalidImportTokenException"

"""Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext) and
GenerateRandom: response shapes, encryption context, key selection."""
from __future__ import annotations

import pytest

CTX = {"tenant": "acme", "purpose": "invoices"}
INCORRECT_KEY = "The key ID in the request does not identify a CMK that can perform this operation."


# Every test makes its own keys and unique aliases: one store for the module.
@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def clock(shared_store):
    return shared_store.clock


def _alias_arn(key, alias):
    return key["Arn"].replace(f"key/{key['KeyId']}", alias)


def test_encrypt_decrypt_shapes(kms, key, helpers):
    enc = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")
    assert set(enc) == {"CiphertextBlob", "KeyId", "EncryptionAlgorithm", "ResponseMetadata"}
    assert isinstance(enc["CiphertextBlob"], bytes)
    assert b"secret" not in enc["CiphertextBlob"]
    assert 1 <= len(enc["CiphertextBlob"]) <= 6144
    assert enc["KeyId"] == key["Arn"]
    assert enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"])
    assert dec["Plaintext"] == b"secret"
    assert dec["KeyId"] == key["Arn"]
    assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert dec["KeyMaterialId"] == key["CurrentKeyMaterialId"]
    assert helpers.MATERIAL_ID_RE.match(dec["KeyMaterialId"])


def test_encryption_algorithm_member(raises, kms, key):
    enc = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"a", EncryptionAlgorithm="SYMMETRIC_DEFAULT")
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm="SYMMETRIC_DEFAULT")
    assert dec["Plaintext"] == b"a"
    with raises("ValidationException", match="encryptionAlgorithm"):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"a", EncryptionAlgorithm="NOPE")
    with raises("InvalidKeyUsageException"):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"a", EncryptionAlgorithm="RSAES_OAEP_SHA_256")


def test_encrypt_is_randomised(kms, key):
    a = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    b = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    assert a != b


@pytest.mark.parametrize("size", [1, 4096])
def test_encrypt_size_bounds(kms, key, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=data)["CiphertextBlob"]
    assert len(blob) <= 6144
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == data


@pytest.mark.parametrize("form", ["id", "arn", "alias", "alias_arn"])
def test_encrypt_and_decrypt_accept_every_key_form(kms, key, helpers, form):
    alias = helpers.unique_alias("forms")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    ref = {"id": key["KeyId"], "arn": key["Arn"], "alias": alias,
           "alias_arn": _alias_arn(key, alias)}[form]
    enc = kms.encrypt(KeyId=ref, Plaintext=b"p")
    assert enc["KeyId"] == key["Arn"]
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], KeyId=ref)
    assert (dec["Plaintext"], dec["KeyId"]) == (b"p", key["Arn"])


@pytest.mark.parametrize("form", ["id", "arn", "alias", "alias_arn"])
def test_decrypt_with_another_key_is_incorrect_key(raises, kms, key, new_key, helpers, form):
    other = new_key()
    alias = helpers.unique_alias("the-other")
    kms.create_alias(AliasName=alias, TargetKeyId=other["KeyId"])
    ref = {"id": other["KeyId"], "arn": other["Arn"], "alias": alias,
           "alias_arn": _alias_arn(other, alias)}[form]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    with raises("IncorrectKeyException", message=INCORRECT_KEY):
        kms.decrypt(CiphertextBlob=blob, KeyId=ref)


def test_decrypt_naming_an_unknown_key(raises, kms, key, helpers):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    with raises("NotFoundException"):
        kms.decrypt(CiphertextBlob=blob, KeyId=helpers.unknown_key_id())


def test_decrypt_garbage_is_invalid_ciphertext(raises, kms, key):
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=b"\x00" * 100)
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=b"not a blob at all")


# --- encryption context -------------------------------------------------------

@pytest.fixture
def ctx_blob(kms, key):
    return kms.encrypt(KeyId=key["KeyId"], Plaintext=b"bound", EncryptionContext=CTX)["CiphertextBlob"]


def test_context_exact_match_any_order(kms, ctx_blob):
    reordered = dict(reversed(list(CTX.items())))
    assert list(reordered) != list(CTX)
    assert kms.decrypt(CiphertextBlob=ctx_blob, EncryptionContext=reordered)["Plaintext"] == b"bound"


@pytest.mark.parametrize("ctx", [
    None,                                                     # missing
    {},                                                       # empty
    {"tenant": "acme"},                                       # a pair missing
    {**CTX, "extra": "1"},                                    # an extra pair
    {"tenant": "acme", "purpose": "receipts"},                # different value
    {"tenant": "acme", "Purpose": "invoices"},                # key case
    {"tenant": "ACME", "purpose": "invoices"},                # value case
    {"tenant": "acme ", "purpose": "invoices"},               # whitespace
    {"purposeinvoicestenant": "acme"},                        # same sorted key+value concatenation
    {"purpose": "invoicestenantacme"},                        # boundary shift
], ids=["missing", "empty", "fewer", "extra", "value", "key-case", "value-case",
        "whitespace", "concat", "boundary"])
def test_context_mismatch_is_invalid_ciphertext(raises, kms, ctx_blob, ctx):
    kwargs = {} if ctx is None else {"EncryptionContext": ctx}
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=ctx_blob, **kwargs)


def test_context_given_when_none_was_used(raises, kms, key):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={})["Plaintext"] == b"p"


def test_context_unicode_values(kms, key):
    ctx = {"näme": "ünïcode ✓", "emoji": "🔑"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"u", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"u"


def test_reencrypt_changes_context_on_same_key(raises, kms, key, ctx_blob):
    new_ctx = {"tenant": "acme", "purpose": "archive"}
    out = kms.re_encrypt(CiphertextBlob=ctx_blob, SourceEncryptionContext=CTX,
                         DestinationKeyId=key["KeyId"], DestinationEncryptionContext=new_ctx)
    assert out["KeyId"] == key["Arn"] and out["SourceKeyId"] == key["Arn"]
    assert out["CiphertextBlob"] != ctx_blob
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=new_ctx)["Plaintext"] == b"bound"
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=CTX)


def test_reencrypt_needs_the_source_context(raises, kms, key, ctx_blob):
    with raises("InvalidCiphertextException", message=""):
        kms.re_encrypt(CiphertextBlob=ctx_blob, DestinationKeyId=key["KeyId"])


def test_reencrypt_shape_and_other_key(raises, kms, key, new_key, helpers):
    dest = new_key()
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"move me")["CiphertextBlob"]
    out = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=dest["Arn"])
    assert set(out) >= {"CiphertextBlob", "SourceKeyId", "KeyId", "SourceEncryptionAlgorithm",
                        "DestinationEncryptionAlgorithm", "ResponseMetadata"}
    assert out["SourceKeyId"] == key["Arn"]
    assert out["KeyId"] == dest["Arn"]
    assert out["SourceEncryptionAlgorithm"] == out["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert out["SourceKeyMaterialId"] == key["CurrentKeyMaterialId"]
    assert out["DestinationKeyMaterialId"] == dest["CurrentKeyMaterialId"]
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"])
    assert (dec["Plaintext"], dec["KeyId"]) == (b"move me", dest["Arn"])
    # SourceKeyId naming the wrong key is IncorrectKeyException, as in Decrypt.
    with raises("IncorrectKeyException", message=INCORRECT_KEY):
        kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=dest["KeyId"], DestinationKeyId=dest["KeyId"])
    ok = kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=key["Arn"], DestinationKeyId=dest["KeyId"])
    assert ok["SourceKeyId"] == key["Arn"]


def test_reencrypt_garbage(raises, kms, key):
    with raises("InvalidCiphertextException", message=""):
        kms.re_encrypt(CiphertextBlob=b"\x01" * 80, DestinationKeyId=key["KeyId"])


# --- data keys ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,length", [
    ({"KeySpec": "AES_256"}, 32), ({"KeySpec": "AES_128"}, 16),
    ({"NumberOfBytes": 1}, 1), ({"NumberOfBytes": 64}, 64), ({"NumberOfBytes": 1024}, 1024),
])
def test_generate_data_key(kms, key, kwargs, length):
    out = kms.generate_data_key(KeyId=key["KeyId"], EncryptionContext=CTX, **kwargs)
    assert set(out) >= {"CiphertextBlob", "Plaintext", "KeyId", "ResponseMetadata"}
    assert out["KeyId"] == key["Arn"]
    assert len(out["Plaintext"]) == length
    assert out["KeyMaterialId"] == key["CurrentKeyMaterialId"]
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=CTX)
    assert dec["Plaintext"] == out["Plaintext"]


def test_generate_data_keys_differ(kms, key):
    a = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"]
    b = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"]
    assert a != b


@pytest.mark.parametrize("form", ["id", "arn", "alias", "alias_arn"])
def test_generate_data_key_without_plaintext(raises, kms, key, helpers, form):
    alias = helpers.unique_alias("gdkwp")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    ref = {"id": key["KeyId"], "arn": key["Arn"], "alias": alias,
           "alias_arn": _alias_arn(key, alias)}[form]
    out = kms.generate_data_key_without_plaintext(KeyId=ref, KeySpec="AES_128", EncryptionContext=CTX)
    assert "Plaintext" not in out
    assert out["KeyId"] == key["Arn"]
    assert out["KeyMaterialId"] == key["CurrentKeyMaterialId"]
    assert len(kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=CTX)["Plaintext"]) == 16
    with raises("InvalidCiphertextException", message=""):
        kms.decrypt(CiphertextBlob=out["CiphertextBlob"])


@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
def test_data_key_needs_exactly_one_of_keyspec_or_number(raises, kms, key, op):
    with raises("ValidationException"):
        getattr(kms, op)(KeyId=key["KeyId"])
    with raises("ValidationException"):
        getattr(kms, op)(KeyId=key["KeyId"], KeySpec="AES_256", NumberOfBytes=32)


@pytest.mark.parametrize("size", [1, 32, 1024])
def test_generate_random(kms, size):
    out = kms.generate_random(NumberOfBytes=size)
    assert set(out) == {"Plaintext", "ResponseMetadata"}
    assert isinstance(out["Plaintext"], bytes) and len(out["Plaintext"]) == size


def test_generate_random_is_random(kms):
    assert kms.generate_random(NumberOfBytes=32)["Plaintext"] != kms.generate_random(NumberOfBytes=32)["Plaintext"]


def test_generate_random_needs_number_of_bytes(raises, kms):
    with raises("ValidationException", message="NumberOfBytes is required."):
        kms.generate_random()

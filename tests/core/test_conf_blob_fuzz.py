"""Property: a ciphertext blob that was mutated, truncated or extended only
ever gives InvalidCiphertextException — never another error, never a
plaintext (right or wrong)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CTX = {"fuzz": "yes"}
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def blobs(kms):
    """A small and a large ciphertext, plus a second key so that a corrupted
    key id could land on a real key."""
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_key()
    kms.rotate_key_on_demand(KeyId=kid)  # two material versions exist
    small = kms.encrypt(KeyId=kid, Plaintext=b"s", EncryptionContext=CTX)["CiphertextBlob"]
    large = kms.encrypt(KeyId=kid, Plaintext=bytes(range(256)) * 16, EncryptionContext=CTX)["CiphertextBlob"]
    return kid, [small, large]


def _mutate(data, blob):
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "replace"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        bit = data.draw(st.integers(1, 255))
        return blob[:i] + bytes([blob[i] ^ bit]) + blob[i + 1:]
    if kind == "truncate":
        return blob[:data.draw(st.integers(1, len(blob) - 1))]
    if kind == "extend":
        return blob + data.draw(st.binary(min_size=1, max_size=min(64, 6144 - len(blob))))
    if kind == "splice":
        i = data.draw(st.integers(0, len(blob) - 1))
        j = data.draw(st.integers(i, len(blob)))
        out = blob[:i] + data.draw(st.binary(min_size=1, max_size=32)) + blob[j:]
        return out[:6144]
    return data.draw(st.binary(min_size=1, max_size=600))


def _only_invalid_ciphertext(call):
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response["Error"]
    assert err["Code"] == "InvalidCiphertextException", err
    assert err.get("Message", "") == ""


@FUZZ
@given(data=st.data())
def test_mutated_blob_decrypt(kms, blobs, data):
    _, candidates = blobs
    blob = candidates[data.draw(st.integers(0, 1))]
    bad = _mutate(data, blob)
    if bad == blob:
        return
    _only_invalid_ciphertext(lambda: kms.decrypt(CiphertextBlob=bad, EncryptionContext=CTX))


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_blob_reencrypt(kms, blobs, data):
    kid, candidates = blobs
    blob = candidates[0]
    bad = _mutate(data, blob)
    if bad == blob:
        return
    _only_invalid_ciphertext(lambda: kms.re_encrypt(CiphertextBlob=bad, SourceEncryptionContext=CTX,
                                                    DestinationKeyId=kid))


def test_every_single_byte_flip_is_refused(kms, blobs):
    """Exhaustive over positions for the small blob (hypothesis samples)."""
    _, (small, _) = blobs
    for i in range(len(small)):
        for bit in (0x01, 0x80):
            bad = small[:i] + bytes([small[i] ^ bit]) + small[i + 1:]
            _only_invalid_ciphertext(lambda: kms.decrypt(CiphertextBlob=bad, EncryptionContext=CTX))
    assert kms.decrypt(CiphertextBlob=small, EncryptionContext=CTX)["Plaintext"] == b"s"

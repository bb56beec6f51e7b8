"""Blob format v1: known-answer vectors, tamper matrix and fuzzing at the format level.

The vectors are recomputed here from docs/ciphertext-blob.md's rules (struct +
AESGCM directly), so a change to kms_core.blob that breaks the spec fails.
"""
import json
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from kms_core import blob
from kms_core.envelope import encode_context
from kms_core.errors import KMSError

VECTORS = json.loads((Path(__file__).parents[2] / "docs/vectors/ciphertext-blob.json").read_text())


def spec_context(ec):
    if not ec:
        return b"\x00\x00"
    items = sorted((k.encode(), v.encode()) for k, v in ec.items())
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_known_answer_vectors(v):
    material, nonce = bytes.fromhex(v["material"]), bytes.fromhex(v["nonce"])
    pt, ec = bytes.fromhex(v["plaintext"]), v["encryption_context"]
    assert spec_context(ec).hex() == v["context_encoding"] == encode_context(ec).hex()
    header = b"\x01" + uuid.UUID(v["key_id"]).bytes + struct.pack(">I", v["material_version"])
    expected = header + nonce + AESGCM(material).encrypt(nonce, pt, header + spec_context(ec))
    assert expected.hex() == v["blob"]
    made = blob.seal(AESGCM(material), v["key_id"], v["material_version"], pt,
                     encode_context(ec), nonce=nonce)
    assert made == expected
    hdr = blob.parse_header(expected)
    assert (hdr.key_id, hdr.material_version) == (v["key_id"], v["material_version"])
    assert blob.open_(AESGCM(material), hdr, expected, encode_context(ec)) == pt


def test_context_encoding_is_injective_and_order_free():
    assert encode_context({"ab": "c"}) != encode_context({"a": "bc"})
    assert encode_context({"a": "1", "b": "2"}) == encode_context({"b": "2", "a": "1"})
    assert encode_context({}) == encode_context(None) == b"\x00\x00"


def _vector_blob():
    v = VECTORS[1]
    return (AESGCM(bytes.fromhex(v["material"])), bytes.fromhex(v["blob"]),
            encode_context(v["encryption_context"]))


def _open(aead, data, aad):
    hdr = blob.parse_header(data)
    return blob.open_(aead, hdr, data, aad)


def test_every_single_byte_change_is_invalid_ciphertext():
    aead, data, aad = _vector_blob()
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(KMSError) as e:
                _open(aead, bytes(bad), aad)
            assert e.value.code == "InvalidCiphertextException" and e.value.message == ""


def test_truncation_extension_and_wrong_context():
    aead, data, aad = _vector_blob()
    for cut in range(len(data)):
        with pytest.raises(KMSError):
            _open(aead, data[:cut], aad)
    with pytest.raises(KMSError):
        _open(aead, data + b"\x00", aad)
    with pytest.raises(KMSError):
        _open(aead, data, encode_context({"purpose": "test"}))
    with pytest.raises(KMSError):
        _open(aead, data, encode_context({"purpose": "test", "env": "prod", "x": "y"}))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data):
    aead, _, aad = _vector_blob()
    try:
        _open(aead, data, aad)
    except KMSError as e:
        assert e.code == "InvalidCiphertextException"
    else:  # pragma: no cover - would need a forged tag
        pytest.fail("random bytes decrypted")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_of_a_real_blob(data):
    aead, good, aad = _vector_blob()
    pos = data.draw(st.integers(0, len(good) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != good[pos]))
    bad = good[:pos] + bytes([new]) + good[pos + 1:]
    with pytest.raises(KMSError) as e:
        _open(aead, bad, aad)
    assert e.value.code == "InvalidCiphertextException"

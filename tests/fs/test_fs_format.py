"""The KFSE v1 format: known-answer vectors (docs/encrypted-file-format.md),
an independent re-derivation with pyca primitives, layout math and fuzzing."""
from __future__ import annotations

import hashlib
import pathlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.encrypted_fs import format as F
from integrations.encrypted_fs.errors import (
    ChunkAuthenticationError,
    EncryptedFileError,
    HeaderAuthenticationError,
    HeaderError,
    KeyCommitmentError,
    LayoutError,
    NotEncryptedError,
    TrailingDataError,
    TruncatedFileError,
    UnsupportedFormatError,
)

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "encrypted-file-format.md"

DK = bytes(range(32))
SALT = bytes(range(0x40, 0x60))
WRAPPED = bytes(range(0xA0, 0xC0))
KID = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"
CTX = {"purpose": "kat", "department": "finance"}

VECTORS = [
    # name, plaintext, chunk size, content key, header tag, first chunk (or None), size, sha256
    ("V1", b"", 65536,
     "016207887aaa38a611e264fd46d69b513ac219533e8bb95c23a80b258fbf72c4",
     "5e2f6c435258653f75d8e7df89ebfc009836ecef184064489745ce3a373e7bdf",
     "fdfe832185e05480049caccec91a04f9", 1040,
     "c9906db06773eebf132e5febc897f0360f9adef35c97e7f7128cd11e6c79d46a"),
    ("V2", b"hello, world", 65536,
     "016207887aaa38a611e264fd46d69b513ac219533e8bb95c23a80b258fbf72c4",
     "5e2f6c435258653f75d8e7df89ebfc009836ecef184064489745ce3a373e7bdf",
     "b7f10130ef96bf4e8b815d3ab952edaffabca12385c064a54c374926", 1052,
     "22a0da117d1618f052418c3ed17a4d8da675e24853b5d031808462d2a82abc89"),
    ("V3", bytes(i % 251 for i in range(5000)), 4096,
     "4f38fac40212cc48bd9b484e038c8353893fb7cfa92b2f1b082657bef20243a7",
     "b3151738e3c15b443cb2b078a9afad1248516b2402471b4d4c172f50839f92d7",
     None, 66577,
     "efbfe55baf90d99e18bb4f3fb2ff1ab09f6e69da3dff8b59785dfa17edb0d81f"),
]
COMMITMENT = "72abe3a1ad47eeab40c3049d36948c100ca940bc3c2f933a905b2185a4176c6c"
HEADER_KEY = "8d2ccc14643bb65d164e80321dc4c6db2c773b62ec5ac6c6a3db687a38c26ef4"
CONTEXT_BYTES = "0002000a6465706172746d656e74000766696e616e63650007707572706f736500036b6174"


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_known_answer_vectors_through_the_implementation(vec):
    _name, pt, chunk, ck, tag, chunk0, size, digest = vec
    blob = F.encrypt_bytes(pt, DK, WRAPPED, KID, CTX, chunk, salt=SALT)
    assert len(blob) == size
    assert hashlib.sha256(blob).hexdigest() == digest
    header, keys = F.new_header(DK, WRAPPED, KID, CTX, chunk, salt=SALT)
    assert keys.content_key.hex() == ck
    assert keys.commitment.hex() == COMMITMENT
    assert keys.header_key.hex() == HEADER_KEY
    assert header.context_bytes.hex() == CONTEXT_BYTES
    assert header.tag.hex() == tag
    if chunk0 is not None:
        assert blob[1024:1024 + len(chunk0) // 2].hex() == chunk0
    assert F.decrypt_bytes(blob, DK) == pt


def _hkdf(info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, SALT, b"KFSE v1 " + info).derive(DK)


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_known_answer_vectors_rederived_from_the_spec(vec):
    """Builds each vector from docs/encrypted-file-format.md with pyca only."""
    _name, pt, chunk, ck, tag, _chunk0, size, digest = vec
    log2 = chunk.bit_length() - 1
    ctx = bytes.fromhex(CONTEXT_BYTES)
    content_key = _hkdf(b"content\x01" + bytes([log2]) + hashlib.sha256(ctx).digest())
    assert content_key.hex() == ck
    assert _hkdf(b"commit\x01").hex() == COMMITMENT
    header_key = _hkdf(b"header\x01")
    signed = (b"KFSE" + bytes([1, 1, log2, 0]) + struct.pack(">I", 1024) + SALT
              + _hkdf(b"commit\x01") + ctx)
    h = hmac.HMAC(header_key, hashes.SHA256())
    h.update(signed)
    assert h.finalize().hex() == tag
    header = signed + bytes.fromhex(tag) + struct.pack(">H", len(KID)) + KID.encode() \
        + struct.pack(">H", 32) + WRAPPED
    header += bytes(1024 - len(header))
    aead = AESGCM(content_key)
    n = max(1, -(-len(pt) // chunk))
    body = b"".join(aead.encrypt(struct.pack(">QI", i, i == n - 1), pt[i * chunk:(i + 1) * chunk],
                                 None) for i in range(n))
    blob = header + body
    if chunk != 65536:
        t = 13 + (1 + 1024 - len(blob) - 13) % 65552
        blob += bytes(t - 13) + b"KFST" + bytes([log2]) + struct.pack(">II", 1024, t)
        assert (len(blob) - 1024) % 65552 == 1
    assert len(blob) == size
    assert hashlib.sha256(blob).hexdigest() == digest


def test_vectors_in_the_spec_match_the_tests():
    doc = DOC.read_text()
    for name, _pt, _chunk, ck, tag, chunk0, _size, digest in VECTORS:
        for value in (ck, tag, digest, chunk0):
            if value:
                assert value in doc, (name, value)
    for value in (COMMITMENT, HEADER_KEY, CONTEXT_BYTES, SALT.hex(), WRAPPED.hex(), KID):
        assert value in doc


# ------------------------------------------------------------------ layout

@pytest.mark.parametrize("plain", [0, 1, 65535, 65536, 65537, 2 * 65536, 10**6])
def test_plaintext_size_from_object_size_alone(plain):
    blob = F.encrypt_bytes(bytes(plain), DK, WRAPPED, KID, {})
    assert F.default_plaintext_size(len(blob)) == plain
    assert not F.needs_trailer(len(blob))


@settings(max_examples=60, deadline=None)
@given(plain=st.integers(0, 300_000), log2=st.sampled_from([12, 13, 16, 17]),
       ctx_len=st.integers(0, 3000))
def test_sizes_are_unambiguous(plain, log2, ctx_len):
    """Default-layout objects never look trailer-sized; others always do and the
    trailer gives back the exact plaintext size."""
    ctx = {"k": "x" * ctx_len} if ctx_len else {}
    header, _ = F.new_header(DK, WRAPPED, KID, ctx, 1 << log2, salt=SALT)
    body = F.ciphertext_body_size(plain, 1 << log2)
    if header.is_default_layout:
        total = header.header_size + body
        assert F.default_plaintext_size(total) == plain
    else:
        trailer = F.make_trailer(log2, header.header_size, body)
        total = header.header_size + body + len(trailer)
        assert F.needs_trailer(total)
        assert F.default_plaintext_size(total) is None
        assert F.plaintext_size_with_trailer(total, trailer[-13:]) == plain


def test_invalid_object_sizes_are_recognised():
    for size in (0, 5, 1039):
        assert F.default_plaintext_size(size) is None
    # residues 1..15 past the header never belong to a default-layout object
    for r in range(1, 16):
        assert F.needs_trailer(1024 + 65552 * 3 + r)
        assert F.default_plaintext_size(1024 + 65552 * 3 + r) is None


@settings(max_examples=40, deadline=None)
@given(pt=st.binary(max_size=20_000), log2=st.sampled_from([12, 16]))
def test_roundtrip_any_plaintext(pt, log2):
    blob = F.encrypt_bytes(pt, DK, WRAPPED, KID, CTX, 1 << log2)
    assert F.decrypt_bytes(blob, DK) == pt


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_bit_flip_fails_or_is_harmless(pos, bit):
    """Flipping any bit of a two-chunk object never yields other plaintext: it
    fails with a typed error, or it hit bytes KMS checks (key id, wrapped key),
    which this KMS-free reader does not use."""
    pt = bytes(range(256)) * 24  # 6144 bytes: two 4 KiB chunks
    blob = bytearray(F.encrypt_bytes(pt, DK, WRAPPED, KID, CTX, 4096, salt=SALT))
    pos %= len(blob)
    blob[pos] ^= 1 << bit
    try:
        out = F.decrypt_bytes(bytes(blob), DK)
    except EncryptedFileError:
        return
    assert out == pt


def test_header_parse_errors_are_typed():
    blob = F.encrypt_bytes(b"abc", DK, WRAPPED, KID, CTX, salt=SALT)
    with pytest.raises(NotEncryptedError):
        F.Header.parse(b"PAR1" + blob[4:])
    with pytest.raises(UnsupportedFormatError):
        F.Header.parse(blob[:4] + b"\x02" + blob[5:])
    with pytest.raises(UnsupportedFormatError):
        F.Header.parse(blob[:5] + b"\x07" + blob[6:])
    with pytest.raises(UnsupportedFormatError):
        F.Header.parse(blob[:6] + b"\x30" + blob[7:])
    with pytest.raises(UnsupportedFormatError):
        F.Header.parse(blob[:7] + b"\x01" + blob[8:])
    with pytest.raises(HeaderError):
        F.Header.parse(blob[:500])
    with pytest.raises(HeaderError):  # non-zero padding
        F.Header.parse(blob[:1000] + b"\x01" + blob[1001:])
    with pytest.raises(KeyCommitmentError):
        F.Header.parse(blob).verify(bytes(32))
    tampered = bytearray(blob)
    tampered[80] ^= 1  # inside the context
    with pytest.raises(EncryptedFileError):
        F.decrypt_bytes(bytes(tampered), DK)


def test_header_tag_covers_the_context():
    a = F.Header.parse(F.encrypt_bytes(b"x", DK, WRAPPED, KID, {"a": "1"}, salt=SALT))
    b = F.Header.parse(F.encrypt_bytes(b"x", DK, WRAPPED, KID, {"a": "2"}, salt=SALT))
    forged = F.Header.parse(a.encode())
    forged.context, forged.context_bytes = b.context, b.context_bytes
    with pytest.raises(HeaderAuthenticationError):
        forged.verify(DK)


def test_chunk_errors_name_truncation_and_extension():
    pt = bytes(3 * 4096)
    blob = F.encrypt_bytes(pt, DK, WRAPPED, KID, CTX, 4096, salt=SALT)
    header = F.Header.parse(blob)
    keys = header.verify(DK)
    c = F.ChunkCipher(keys.content_key, 4096)
    chunk1 = blob[1024 + 4112:1024 + 2 * 4112]
    with pytest.raises(TruncatedFileError):
        c.decrypt(1, True, chunk1)   # chunk 1 presented as final: file cut after it
    last = blob[1024 + 2 * 4112:1024 + 3 * 4112]
    with pytest.raises(TrailingDataError):
        c.decrypt(2, False, last)    # final chunk followed by more data
    with pytest.raises(ChunkAuthenticationError):
        c.decrypt(0, False, chunk1)  # moved chunk


def test_reprs_hide_keys():
    header, keys = F.new_header(DK, WRAPPED, KID, CTX, salt=SALT)
    for text in (repr(header), repr(keys), repr(F.ChunkCipher(keys.content_key, 4096))):
        for secret in (DK, keys.content_key, keys.header_key, WRAPPED, SALT):
            assert secret.hex() not in text and repr(secret) not in text


def test_layout_rejects_mismatched_sizes():
    blob = F.encrypt_bytes(bytes(100), DK, WRAPPED, KID, CTX, 4096, salt=SALT)
    header = F.Header.parse(blob)
    with pytest.raises(LayoutError):
        F.Layout.of(header, len(blob) - 5, blob[-13:])  # trailer-sized no more
    default = F.Header.parse(F.encrypt_bytes(bytes(100), DK, WRAPPED, KID, CTX, salt=SALT))
    with pytest.raises(TruncatedFileError):
        F.Layout.of(default, 1024 + 65552 + 3)
    with pytest.raises(TruncatedFileError):
        F.Layout.of(default, 1024)

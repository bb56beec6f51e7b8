"""Ciphertext blob formats v1 and v2 (specified in docs/ciphertext-blob.md).

    offset  size  field
    0       1     format version: 0x01 (key id is a UUID) or 0x02 (a multi-Region key
                  id ``mrk-`` + 32 hex: the 16 bytes are the hex digits' value)
    1       16    key id (16 raw bytes)
    17      4     key material version (uint32, big-endian, 1-based)
    21      12    nonce (random)
    33      n     AES-256-GCM ciphertext of the plaintext
    33+n    16    GCM tag

Associated data: the 21 header bytes followed by the canonical encoding of
the encryption context (kms_core.envelope.encode_context).  Binding the header
means that a blob re-labelled with another key id or material version fails
authentication instead of being tried under other material.
"""
from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .envelope import encode_context
from .errors import invalid_ciphertext

VERSION = 1
VERSION_MRK = 2  # same layout; the 16 key-id bytes name a multi-Region key (mrk-<hex>)
HEADER_LEN = 21
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN  # 49 bytes
MAX_BLOB = 6144

_HDR = struct.Struct(">B16sI")


class Header:
    __slots__ = ("key_id", "material_version", "raw")

    def __init__(self, key_id: str, material_version: int, raw: bytes):
        self.key_id = key_id
        self.material_version = material_version
        self.raw = raw


def parse_header(blob: bytes) -> Header:
    """Read the header; any malformation is InvalidCiphertextException."""
    if len(blob) < OVERHEAD + 1 or len(blob) > MAX_BLOB or blob[0] not in (VERSION, VERSION_MRK):
        raise invalid_ciphertext()
    fmt, kid, mv = _HDR.unpack_from(blob)
    if mv == 0:
        raise invalid_ciphertext()
    h = kid.hex()  # the UUID's text form; 5× cheaper than str(uuid.UUID(bytes=kid))
    if fmt == VERSION_MRK:
        return Header("mrk-" + h, mv, blob[:HEADER_LEN])
    return Header(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", mv, blob[:HEADER_LEN])


def key_id_bytes(key_id: str) -> tuple[int, bytes]:
    """(format version, 16 key-id bytes) for a UUID key id or a multi-Region ``mrk-`` id."""
    if key_id.startswith("mrk-"):
        return VERSION_MRK, bytes.fromhex(key_id[4:])
    return VERSION, bytes.fromhex(key_id.replace("-", ""))


def header_bytes(key_id: bytes | str, material_version: int) -> bytes:
    """The 21 header bytes for a key id (its text, or the 16 raw bytes of a UUID) and
    material version."""
    if isinstance(key_id, str):
        fmt, kid = key_id_bytes(key_id)
        return _HDR.pack(fmt, kid, material_version)
    return _HDR.pack(VERSION, key_id, material_version)


def seal(aead: AESGCM, key_id: str | bytes, material_version: int, plaintext: bytes,
         context_aad: bytes, nonce: bytes | None = None) -> bytes:
    """Encrypt under one key-material version.  ``key_id`` is the key id (UUID or
    ``mrk-`` form) or a UUID's 16 bytes; ``context_aad`` is
    ``encode_context(EncryptionContext)``; ``nonce`` only for test vectors."""
    header = header_bytes(key_id, material_version)
    nonce = nonce if nonce is not None else os.urandom(NONCE_LEN)
    return header + nonce + aead.encrypt(nonce, plaintext, header + context_aad)


def seal_header(aead: AESGCM, header: bytes, plaintext: bytes, context_aad: bytes) -> bytes:
    """``seal`` with the 21 header bytes already built (``header_bytes``): the hot path."""
    nonce = os.urandom(NONCE_LEN)
    return header + nonce + aead.encrypt(nonce, plaintext, header + context_aad)


def open_(aead: AESGCM, header: Header, blob: bytes, context_aad: bytes) -> bytes:
    nonce = blob[HEADER_LEN:HEADER_LEN + NONCE_LEN]
    try:
        return aead.decrypt(nonce, blob[HEADER_LEN + NONCE_LEN:], header.raw + context_aad)
    except InvalidTag:
        raise invalid_ciphertext() from None


__all__ = ["MAX_BLOB", "OVERHEAD", "VERSION", "VERSION_MRK", "Header", "encode_context", "header_bytes",
           "key_id_bytes", "open_", "parse_header", "seal", "seal_header"]

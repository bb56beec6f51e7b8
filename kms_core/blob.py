"""Ciphertext blob format v1 (specified in docs/ciphertext-blob.md).

    offset  size  field
    0       1     format version (0x01)
    1       16    key id (UUID, 16 raw bytes)
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
    if len(blob) < OVERHEAD + 1 or len(blob) > MAX_BLOB or blob[0] != VERSION:
        raise invalid_ciphertext()
    _, kid, mv = _HDR.unpack_from(blob)
    if mv == 0:
        raise invalid_ciphertext()
    h = kid.hex()  # the UUID's text form; 5× cheaper than str(uuid.UUID(bytes=kid))
    return Header(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", mv, blob[:HEADER_LEN])


def header_bytes(key_id: bytes, material_version: int) -> bytes:
    """The 21 header bytes for a key id (16 raw bytes) and material version."""
    return _HDR.pack(VERSION, key_id, material_version)


def seal(aead: AESGCM, key_id: str | bytes, material_version: int, plaintext: bytes,
         context_aad: bytes, nonce: bytes | None = None) -> bytes:
    """Encrypt under one key-material version.  ``key_id`` is the UUID string
    or its 16 bytes; ``context_aad`` is ``encode_context(EncryptionContext)``;
    ``nonce`` only for test vectors."""
    if isinstance(key_id, bytes):
        kid = key_id
    else:
        import uuid  # noqa: PLC0415 - only for string ids; the engine passes bytes (keeps uuid off cold starts)
        kid = uuid.UUID(key_id).bytes
    header = _HDR.pack(VERSION, kid, material_version)
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


__all__ = ["MAX_BLOB", "OVERHEAD", "VERSION", "Header", "encode_context", "header_bytes", "open_",
           "parse_header", "seal", "seal_header"]

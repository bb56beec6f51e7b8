"""The stored value format, version 1 (docs/encrypted-column-format.md).

    version(1)=0x01 | mode(1) | data-key id(8) | body

    mode 0x52 'R' randomized:    body = nonce(12) | AES-256-GCM ciphertext | tag(16)
    mode 0x44 'D' deterministic: body = SIV(16) | AES-256-SIV ciphertext

Associated data binds the 10-byte header and the value's context (table,
column, optionally primary key, as ``kms_core.envelope.encode_context``), so a
value copied to another column, table or row fails to authenticate.  Per-value
keys are derived from the 32-byte data key with HKDF-SHA256, one per purpose,
so the same data key never serves two algorithms.
"""
from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from itertools import repeat

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import DecryptionError

VERSION = 0x01
RANDOMIZED = 0x52  # 'R'
DETERMINISTIC = 0x44  # 'D'
KEY_ID_LEN = 8
HEADER_LEN = 2 + KEY_ID_LEN
NONCE_LEN = 12
TAG_LEN = 16
# Bytes added to the tagged plaintext (which itself adds 1 tag byte).
OVERHEAD = {RANDOMIZED: HEADER_LEN + NONCE_LEN + TAG_LEN, DETERMINISTIC: HEADER_LEN + TAG_LEN}

_INFO = {
    "gcm": b"kms-local encrypted-column v1 AES-256-GCM",
    "siv": b"kms-local encrypted-column v1 AES-256-SIV",
    "sig": b"kms-local encrypted-json v1 HMAC-SHA256",
}


def _hkdf(material: bytes, length: int, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)


class DataKey:
    """An unwrapped data key and its derived ciphers.  ``repr`` shows the id only."""

    __slots__ = ("_gcm", "_nonce_lock", "_nonce_next", "_sig", "_siv", "key_id", "nonce_prefix")

    def __init__(self, key_id: bytes, material: bytes):
        if len(key_id) != KEY_ID_LEN or len(material) != 32:
            raise ValueError("data key id must be 8 bytes and key material 32 bytes")
        self.key_id = bytes(key_id)
        self._gcm = AESGCM(_hkdf(material, 32, _INFO["gcm"]))
        self._siv = AESSIV(_hkdf(material, 64, _INFO["siv"]))
        self._sig = _hkdf(material, 32, _INFO["sig"])
        # For keys this process generated and alone writes with (randomized
        # columns): GCM nonces per NIST SP 800-38D 8.2.1, a fixed field and a
        # 64-bit invocation counter, unique by construction.
        self.nonce_prefix = os.urandom(4)
        self._nonce_next = 0
        self._nonce_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DataKey {self.key_id.hex()}>"

    def counter_nonces(self, n: int, header: bytes = b"") -> list[bytes]:
        """The next ``n`` counter nonces, each after ``header`` (writers pass
        the value header: one object per value), reserved under a lock: each
        is handed out once, whichever thread asks (callers take them in
        blocks, so the per-value path has no lock, no syscall and no packing)."""
        with self._nonce_lock:
            start = self._nonce_next
            if start + n > 2**64:
                raise ValueError("nonce counter exhausted")
            self._nonce_next = start + n
        fixed = header + self.nonce_prefix
        pack = struct.Struct(f">{len(fixed)}sQ").pack  # fixed field, 64-bit counter
        return list(map(pack, repeat(fixed, n), range(start, start + n)))  # packed in C

    # -- document signatures (EncryptedJSON) ------------------------------
    def sign(self, data: bytes) -> bytes:
        h = hmac.HMAC(self._sig, hashes.SHA256())
        h.update(data)
        return h.finalize()

    def verify(self, data: bytes, signature: bytes) -> bool:
        h = hmac.HMAC(self._sig, hashes.SHA256())
        h.update(data)
        try:
            h.verify(signature)  # constant-time comparison
            return True
        except InvalidSignature:
            return False


def random_nonces(n: int) -> list[bytes]:
    """``n`` random 96-bit nonces from one ``os.urandom`` call (one syscall per
    block instead of per value; the same CSPRNG output, just cut in pieces)."""
    buf = os.urandom(NONCE_LEN * n)
    return [buf[i:i + NONCE_LEN] for i in range(0, NONCE_LEN * n, NONCE_LEN)]


def header(mode: int, key_id: bytes) -> bytes:
    return bytes([VERSION, mode]) + key_id


def seal(key: DataKey, mode: int, plaintext: bytes, context: bytes,
         nonce: bytes | None = None) -> bytes:
    """Encrypt tagged plaintext.  ``nonce`` is for known-answer tests only."""
    head = header(mode, key.key_id)
    if mode == RANDOMIZED:
        nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
        return head + nonce + key._gcm.encrypt(nonce, plaintext, head + context)
    if mode == DETERMINISTIC:
        return head + key._siv.encrypt(plaintext, [head, context])
    raise ValueError("unknown mode")


def parse_header(blob: bytes) -> tuple[int, bytes]:
    """(mode, data-key id) of a stored value; DecryptionError if not ours."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise DecryptionError("stored value is not binary")
    blob = bytes(blob)
    if len(blob) < HEADER_LEN or blob[0] != VERSION or blob[1] not in OVERHEAD:
        raise DecryptionError("stored value is not in a known encrypted-column format")
    if len(blob) < HEADER_LEN + (NONCE_LEN + TAG_LEN if blob[1] == RANDOMIZED else TAG_LEN):
        raise DecryptionError("stored value is truncated")
    return blob[1], blob[2:HEADER_LEN]


def open_(blob: bytes, context: bytes, lookup: Callable[[bytes], DataKey]) -> bytes:
    """Authenticate and decrypt; returns the tagged plaintext."""
    blob = bytes(blob)
    mode, key_id = parse_header(blob)
    key = lookup(key_id)
    head = blob[:HEADER_LEN]
    try:
        if mode == RANDOMIZED:
            nonce = blob[HEADER_LEN:HEADER_LEN + NONCE_LEN]
            return key._gcm.decrypt(nonce, blob[HEADER_LEN + NONCE_LEN:], head + context)
        return key._siv.decrypt(blob[HEADER_LEN:], [head, context])
    except InvalidTag:
        raise DecryptionError() from None

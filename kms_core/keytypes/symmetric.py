"""SYMMETRIC_DEFAULT: 256-bit AES-GCM keys; ciphertexts in the blob format of
``kms_core.blob`` (docs/ciphertext-blob.md), which names the key and material version.
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_core import blob as blobfmt
from kms_core.errors import KMSError, invalid_ciphertext

from .base import Encrypter, KeyType, Material

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
_KEY_BYTES = 32
_CACHE_MAX = 4096
_HEADER_LEN = blobfmt.HEADER_LEN
_BODY = blobfmt.HEADER_LEN + blobfmt.NONCE_LEN  # where the GCM ciphertext starts


class _AesGcmEncrypter(Encrypter):
    """AES-256-GCM under one material version.

    Building an ``AESGCM`` and the blob header costs more than sealing 64 bytes, so
    both are kept per material object (the engine's hot path; it keeps one ``Material`` per
    loaded version).  The cache is bounded; an entry holds its ``Material``, so the object
    stays alive and its ``id`` cannot be reused by another while the entry exists (the
    ``is`` check makes that explicit).
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Material, AESGCM, bytes]] = {}

    def _prepared(self, material: Material) -> tuple[Material, AESGCM, bytes]:
        hit = self._cache.get(id(material))
        if hit is None or hit[0] is not material:
            header = blobfmt.header_bytes(material.key_id, material.version)
            hit = (material, AESGCM(material.secret), header)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[id(material)] = hit
        return hit

    def encrypt(self, material: Material, plaintext: bytes, algorithm: str, context: bytes) -> bytes:
        _, aead, header = self._prepared(material)
        return blobfmt.seal_header(aead, header, plaintext, context)

    def decrypt(self, material: Material, ciphertext: bytes, algorithm: str, context: bytes) -> bytes:
        _, aead, header = self._prepared(material)
        # The header must name this very material (it is also authenticated, as AAD).
        if ciphertext[:_HEADER_LEN] != header:
            raise invalid_ciphertext()
        try:
            return aead.decrypt(ciphertext[_HEADER_LEN:_BODY], ciphertext[_BODY:], header + context)
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise invalid_ciphertext() from None


class SymmetricDefault(KeyType):
    def __init__(self) -> None:
        super().__init__(SYMMETRIC_DEFAULT)
        self._encrypter = _AesGcmEncrypter()

    def generate(self) -> bytes:
        return os.urandom(_KEY_BYTES)

    def check_import(self, secret: bytes) -> bytes:
        if len(secret) != _KEY_BYTES:
            raise KMSError("IncorrectKeyMaterialException",
                           "The key material must be 256 bits (32 bytes) for a SYMMETRIC_DEFAULT key.")
        return bytes(secret)

    def encrypter(self) -> Encrypter:
        return self._encrypter


__all__ = ["SYMMETRIC_DEFAULT", "SymmetricDefault"]

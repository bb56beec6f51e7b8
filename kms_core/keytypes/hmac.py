"""HMAC_224 / 256 / 384 / 512: GenerateMac / VerifyMac (RFC 2104 HMAC with SHA-2).

KMS generates a key as long as the spec's number of bits (HMAC_256 -> 32 bytes).  Imported
material may be longer, up to the hash's block size (``IMPORT_LENGTHS``; the ranges LocalStack
uses too; *unconfirmed* against AWS's documentation).
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as pyca_hmac

from kms_core.errors import KMSError

from . import register
from . import spec_facts as specs
from .base import KeyType, Mac, Material

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "HMAC_SHA_224": hashes.SHA224, "HMAC_SHA_256": hashes.SHA256,
    "HMAC_SHA_384": hashes.SHA384, "HMAC_SHA_512": hashes.SHA512,
}
# Importable material lengths in bytes: from the spec's length up to the hash's block size.
IMPORT_LENGTHS = {"HMAC_224": (28, 64), "HMAC_256": (32, 64), "HMAC_384": (48, 128), "HMAC_512": (64, 128)}


class HmacMac(Mac):
    def __init__(self, kt: HmacKeyType):
        self.kt = kt

    def _hmac(self, material: Material, message: bytes, algorithm: str) -> pyca_hmac.HMAC:
        if algorithm not in self.kt.mac_algorithms:
            raise specs.algorithm_incompatible(algorithm, self.kt.key_spec)
        h = pyca_hmac.HMAC(material.secret, _HASHES[algorithm]())
        h.update(bytes(message))
        return h

    def generate_mac(self, material: Material, message: bytes, algorithm: str) -> bytes:
        return bytes(self._hmac(material, message, algorithm).finalize())

    def verify_mac(self, material: Material, message: bytes, algorithm: str, mac: bytes) -> bool:
        try:
            self._hmac(material, message, algorithm).verify(bytes(mac))  # constant time
        except InvalidSignature:
            return False
        return True


class HmacKeyType(KeyType):
    def __init__(self, bits: int):
        super().__init__(f"HMAC_{bits}")
        self.length = bits // 8
        self._mac = HmacMac(self)

    def generate(self) -> bytes:
        return os.urandom(self.length)

    def check_import(self, secret: bytes) -> bytes:
        low, high = IMPORT_LENGTHS[self.key_spec]
        if not low <= len(secret) <= high:
            raise KMSError("IncorrectKeyMaterialException",
                           f"Key material for key spec {self.key_spec} must be {low} to {high} bytes long.")
        return bytes(secret)

    def mac(self) -> Mac:
        return self._mac


HMAC_224 = register(HmacKeyType(224))
HMAC_256 = register(HmacKeyType(256))
HMAC_384 = register(HmacKeyType(384))
HMAC_512 = register(HmacKeyType(512))

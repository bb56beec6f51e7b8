"""ECC_NIST_EDWARDS25519: ED25519_SHA_512 (pure Ed25519, MessageType RAW) and
ED25519_PH_SHA_512 (RFC 8032 Ed25519ph, MessageType DIGEST).

AWS's Sign documentation: ED25519_SHA_512 requires RAW, ED25519_PH_SHA_512 requires DIGEST,
and with DIGEST "KMS still performs the SHA-512 prehash ... the input is hashed twice".  So
an ED25519_PH_SHA_512 signature is Ed25519ph over the 64 bytes given (which Ed25519ph hashes
with SHA-512), with an empty context.

pyca/cryptography has no Ed25519ph (it needs RFC 8032's dom2 prefix, which pure Ed25519
lacks), so that one algorithm uses PyCryptodome's RFC 8032 implementation, imported on first
use.  Without PyCryptodome installed, ED25519_PH_SHA_512 answers UnsupportedOperationException.
"""
from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from kms_core.errors import KMSError

from . import _asymmetric as common
from . import register
from . import spec_facts as specs
from .base import Material, Signer

PURE, PREHASH = specs.ED25519_SIGNING


def _pycryptodome() -> tuple[Any, Any, Any]:
    try:
        from Crypto.Hash import SHA512  # noqa: PLC0415 - optional dependency, only for Ed25519ph
        from Crypto.PublicKey import ECC  # noqa: PLC0415 - optional dependency, only for Ed25519ph
        from Crypto.Signature import eddsa  # noqa: PLC0415 - optional dependency, only for Ed25519ph
    except ImportError:
        raise KMSError("UnsupportedOperationException",
                       f"{PREHASH} needs PyCryptodome (pip install 'kms-local[ed25519ph]').") from None
    return SHA512, ECC, eddsa


def _ed25519ph(key_der: bytes) -> tuple[Any, Any]:
    sha512, ecc_mod, eddsa = _pycryptodome()
    return eddsa.new(ecc_mod.import_key(key_der), "rfc8032"), sha512


class Ed25519Signer(Signer):
    def __init__(self, kt: Ed25519KeyType):
        self.kt = kt

    def _check(self, message: bytes, message_type: str, algorithm: str) -> None:
        common.check_algorithm(self.kt, algorithm)
        required = specs.RAW if algorithm == PURE else specs.DIGEST
        if message_type != required:
            raise common.message_type_incompatible(message_type, f"algorithm {algorithm}")
        if algorithm == PREHASH and len(message) != specs.DIGEST_LENGTHS[PREHASH]:
            raise specs.digest_invalid_length(algorithm)

    def sign(self, material: Material, message: bytes, message_type: str, algorithm: str) -> bytes:
        self._check(message, message_type, algorithm)
        if algorithm == PURE:
            return bytes(common.private_key(material).sign(bytes(message)))
        signer, sha512 = _ed25519ph(material.secret)
        return bytes(signer.sign(sha512.new(bytes(message))))

    def verify(self, material: Material, message: bytes, message_type: str, algorithm: str,
               signature: bytes) -> bool:
        self._check(message, message_type, algorithm)
        if algorithm == PURE:
            try:
                common.private_key(material).public_key().verify(bytes(signature), bytes(message))
            except InvalidSignature:
                return False
            return True
        verifier, sha512 = _ed25519ph(self.kt.public_key_der(material))
        try:
            verifier.verify(sha512.new(bytes(message)), bytes(signature))
        except ValueError:
            return False
        return True


class Ed25519KeyType(common.SingleClassSigningKeyType):
    private_class = ed25519.Ed25519PrivateKey

    def __init__(self) -> None:
        super().__init__("ECC_NIST_EDWARDS25519")
        self._signer = Ed25519Signer(self)


ECC_NIST_EDWARDS25519 = register(Ed25519KeyType())

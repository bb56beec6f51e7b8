"""What the asymmetric key types share: PKCS#8 / SPKI handling, import checks, the
Sign/Verify argument checks with AWS's errors.  Private to ``kms_core.keytypes``."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from kms_core.errors import KMSError, validation

from . import spec_facts as specs
from .base import KeyType, Material, Signer

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512,
}


def hash_for(algorithm: str) -> hashes.HashAlgorithm:
    """The hash a signing algorithm's name ends in (``RSASSA_PSS_SHA_384`` -> SHA-384)."""
    return _HASHES[algorithm[-7:]]()


@lru_cache(maxsize=128)
def _load_private(secret: bytes) -> Any:
    # Parsing PKCS#8 (and RSA's key check) costs more than a signature: cache parsed keys.
    # Memory only, like the material itself; keyed by the material so a rotation is a new entry.
    return serialization.load_der_private_key(secret, password=None)


def private_key(material: Material) -> Any:
    return _load_private(material.secret)


def spki(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


def pkcs8(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def incorrect_material(spec: str) -> KMSError:
    # AWS's exception for material that does not fit the key; the message is ours.
    return KMSError("IncorrectKeyMaterialException",
                    f"The key material is not a valid private key for key spec {spec}.")


def load_import(secret: bytes, spec: str) -> Any:
    """Parse imported material: AWS takes asymmetric private keys as PKCS#8 DER."""
    try:
        return serialization.load_der_private_key(bytes(secret), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise incorrect_material(spec) from None


def check_algorithm(kt: KeyType, algorithm: str) -> None:
    if algorithm not in kt.signing_algorithms:
        raise specs.algorithm_incompatible(algorithm, kt.key_spec)


def message_type_incompatible(message_type: str, what: str) -> KMSError:
    # Wording as other emulators record AWS's (*unconfirmed* against AWS's documentation).
    return validation(f"Message type {message_type} is incompatible with {what}.")


def check_hashed_message(kt: KeyType, message: bytes, message_type: str, algorithm: str) -> None:
    """RSA and ECDSA take RAW or DIGEST; a DIGEST must be exactly one hash output long."""
    check_algorithm(kt, algorithm)
    if message_type == specs.DIGEST:
        if len(message) != specs.DIGEST_LENGTHS[algorithm]:
            raise specs.digest_invalid_length(algorithm)
    elif message_type != specs.RAW:
        raise message_type_incompatible(message_type, f"key spec {kt.key_spec}")


def public_from_der(der: bytes) -> Any:
    """A DER SubjectPublicKeyInfo, as given to Verify-like or DeriveSharedSecret calls."""
    try:
        return serialization.load_der_public_key(bytes(der))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


class SingleClassSigningKeyType(KeyType):
    """A signing key type whose material is one pyca private-key class (Ed25519, ML-DSA):
    generation, import checks and the public key are the same for each such family."""

    private_class: Any
    _signer: Signer

    def generate(self) -> bytes:
        return pkcs8(self.private_class.generate())

    def check_import(self, secret: bytes) -> bytes:
        key = load_import(secret, self.key_spec)
        if not isinstance(key, self.private_class):
            raise incorrect_material(self.key_spec)
        return pkcs8(key)

    def public_key_der(self, material: Material) -> bytes:
        return spki(private_key(material))

    def signer(self) -> Signer:
        return self._signer

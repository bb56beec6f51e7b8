"""ECC_NIST_P256 / P384 / P521 (ECDSA or ECDH) and ECC_SECG_P256K1 (ECDSA only).

Signatures are DER-encoded ``ECDSA-Sig-Value`` (what AWS returns).  MessageType DIGEST signs
the given digest as is.  DeriveSharedSecret returns the raw ECDH shared secret (the x
coordinate, SP 800-56A's Z), not a derived key: AWS's documentation says so.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from kms_core.errors import validation

from . import _asymmetric as common
from . import register
from . import spec_facts as specs
from .base import KeyAgreement, KeyType, Material, Signer

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
}


class EcdsaSigner(Signer):
    def __init__(self, kt: EccKeyType):
        self.kt = kt

    def _hash(self, message: bytes, message_type: str, algorithm: str) -> hashes.HashAlgorithm | utils.Prehashed:
        common.check_hashed_message(self.kt, message, message_type, algorithm)
        h = common.hash_for(algorithm)
        return utils.Prehashed(h) if message_type == specs.DIGEST else h

    def sign(self, material: Material, message: bytes, message_type: str, algorithm: str) -> bytes:
        h = self._hash(message, message_type, algorithm)
        return bytes(common.private_key(material).sign(bytes(message), ec.ECDSA(h)))

    def verify(self, material: Material, message: bytes, message_type: str, algorithm: str,
               signature: bytes) -> bool:
        h = self._hash(message, message_type, algorithm)
        try:
            common.private_key(material).public_key().verify(bytes(signature), bytes(message), ec.ECDSA(h))
        except InvalidSignature:
            return False
        return True


class Ecdh(KeyAgreement):
    def __init__(self, kt: EccKeyType):
        self.kt = kt

    def derive_shared_secret(self, material: Material, peer_public_key_der: bytes, algorithm: str) -> bytes:
        if algorithm not in self.kt.key_agreement_algorithms:
            raise specs.algorithm_incompatible(algorithm, self.kt.key_spec)
        peer = common.public_from_der(peer_public_key_der)
        if peer is None:
            # *unconfirmed*: AWS's exact message for a PublicKey that is not DER SPKI.
            raise validation("PublicKey is not a valid DER-encoded X.509 SubjectPublicKeyInfo.")
        if not isinstance(peer, ec.EllipticCurvePublicKey) or not isinstance(peer.curve, self.kt.curve):
            # *unconfirmed*: AWS's exact message for a peer key on another curve.
            raise validation(f"The public key must be on the same curve as key spec {self.kt.key_spec}.")
        return bytes(common.private_key(material).exchange(ec.ECDH(), peer))


class EccKeyType(KeyType):
    def __init__(self, spec: str):
        super().__init__(spec)
        self.curve = CURVES[spec]
        self._signer = EcdsaSigner(self)
        self._ecdh = Ecdh(self) if self.key_agreement_algorithms else None

    def generate(self) -> bytes:
        return common.pkcs8(ec.generate_private_key(self.curve()))

    def check_import(self, secret: bytes) -> bytes:
        key = common.load_import(secret, self.key_spec)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, self.curve):
            raise common.incorrect_material(self.key_spec)
        return common.pkcs8(key)

    def public_key_der(self, material: Material) -> bytes:
        return common.spki(common.private_key(material))

    def signer(self) -> Signer:
        return self._signer

    def key_agreement(self) -> KeyAgreement | None:
        return self._ecdh


ECC_NIST_P256 = register(EccKeyType("ECC_NIST_P256"))
ECC_NIST_P384 = register(EccKeyType("ECC_NIST_P384"))
ECC_NIST_P521 = register(EccKeyType("ECC_NIST_P521"))
ECC_SECG_P256K1 = register(EccKeyType("ECC_SECG_P256K1"))

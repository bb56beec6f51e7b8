"""RSA_2048 / RSA_3072 / RSA_4096: RSAES-OAEP encryption and RSASSA-PSS / PKCS#1 v1.5 signatures.

Ciphertexts are plain RSAES-OAEP (MGF1 with the same hash, empty label), so anyone with the
public key from GetPublicKey can produce them, as with AWS.  PSS uses a salt as long as the
digest, as AWS does.  MessageType DIGEST signs the given digest as is (``Prehashed``).
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from kms_core.envelope import encode_context
from kms_core.errors import invalid_ciphertext, validation

from . import _asymmetric as common
from . import register
from . import spec_facts as specs
from .base import Encrypter, KeyType, Material, Signer

_OAEP_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256,
}
PUBLIC_EXPONENT = 65537
# The canonical form of "no encryption context" (envelope.encode_context of {}).
_NO_CONTEXT = (b"", encode_context({}))


def oaep(algorithm: str) -> padding.OAEP:
    h = _OAEP_HASH[algorithm]
    return padding.OAEP(mgf=padding.MGF1(algorithm=h()), algorithm=h(), label=None)


def _signature_padding(algorithm: str, h: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if algorithm.startswith("RSASSA_PSS"):
        return padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


class RsaEncrypter(Encrypter):
    def __init__(self, kt: RsaKeyType):
        self.kt = kt

    def _check(self, algorithm: str, context: bytes) -> None:
        if algorithm not in self.kt.encryption_algorithms:
            raise specs.algorithm_incompatible(algorithm, self.kt.key_spec)
        if bytes(context) not in _NO_CONTEXT:
            # AWS: an encryption context is valid only with symmetric encryption keys.
            # *unconfirmed* message.
            raise validation("EncryptionContext is not supported for asymmetric KMS keys.")

    def encrypt(self, material: Material, plaintext: bytes, algorithm: str, context: bytes) -> bytes:
        self._check(algorithm, context)
        limit = specs.rsa_max_plaintext(self.kt.bits, algorithm)
        if len(plaintext) > limit:
            raise validation(f"Algorithm {algorithm} and key spec {self.kt.key_spec} cannot encrypt "
                             f"data larger than {limit} bytes.")
        key = common.private_key(material).public_key()
        return bytes(key.encrypt(bytes(plaintext), oaep(algorithm)))

    def decrypt(self, material: Material, ciphertext: bytes, algorithm: str, context: bytes) -> bytes:
        self._check(algorithm, context)
        try:
            return bytes(common.private_key(material).decrypt(bytes(ciphertext), oaep(algorithm)))
        except ValueError:
            raise invalid_ciphertext() from None


class RsaSigner(Signer):
    def __init__(self, kt: RsaKeyType):
        self.kt = kt

    def _prepare(self, message: bytes, message_type: str, algorithm: str
                 ) -> tuple[padding.AsymmetricPadding, hashes.HashAlgorithm | utils.Prehashed]:
        common.check_hashed_message(self.kt, message, message_type, algorithm)
        h = common.hash_for(algorithm)
        return (_signature_padding(algorithm, h),
                utils.Prehashed(h) if message_type == specs.DIGEST else h)

    def sign(self, material: Material, message: bytes, message_type: str, algorithm: str) -> bytes:
        pad, h = self._prepare(message, message_type, algorithm)
        return bytes(common.private_key(material).sign(bytes(message), pad, h))

    def verify(self, material: Material, message: bytes, message_type: str, algorithm: str,
               signature: bytes) -> bool:
        pad, h = self._prepare(message, message_type, algorithm)
        try:
            common.private_key(material).public_key().verify(bytes(signature), bytes(message), pad, h)
        except InvalidSignature:
            return False
        return True


class RsaKeyType(KeyType):
    def __init__(self, bits: int):
        super().__init__(f"RSA_{bits}")
        self.bits = bits
        self._encrypter = RsaEncrypter(self)
        self._signer = RsaSigner(self)

    def generate(self) -> bytes:
        return common.pkcs8(rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=self.bits))

    def check_import(self, secret: bytes) -> bytes:
        key = common.load_import(secret, self.key_spec)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != self.bits:
            raise common.incorrect_material(self.key_spec)
        return common.pkcs8(key)

    def public_key_der(self, material: Material) -> bytes:
        return common.spki(common.private_key(material))

    def encrypter(self) -> Encrypter:
        return self._encrypter

    def signer(self) -> Signer:
        return self._signer


RSA_2048 = register(RsaKeyType(2048))
RSA_3072 = register(RsaKeyType(3072))
RSA_4096 = register(RsaKeyType(4096))

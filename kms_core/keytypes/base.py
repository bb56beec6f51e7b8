"""The key-type interface: what a kind of KMS key can do, in four tiny primitives.

In the spirit of Tink's primitive interfaces: a handler never asks "is this an RSA key?";
it asks the key's type for the primitive the operation needs and gets an object that does
one thing.  A new key spec is a new ``KeyType`` implementation registered in
``kms_core.keytypes`` — no handler changes.

Key material crosses this interface as ``bytes`` in clear, only in memory: the store seals it
(AES-256-GCM under the root key) before anything is written.  Its form is the type's own:
raw bytes for symmetric and HMAC keys, PKCS#8 DER for private keys.

Every method raises ``kms_core.errors.KMSError`` (AWS's code and message) for anything the
caller can cause; anything else is a bug.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from . import spec_facts


@dataclass(frozen=True, slots=True)
class Material:
    """One version of a key's material, in clear (memory only).  ``key_id`` and ``version``
    let symmetric blobs name the material that sealed them."""

    key_id: str
    version: int
    secret: bytes

    def __repr__(self) -> str:  # never show the secret
        return f"Material(key_id={self.key_id!r}, version={self.version})"


class Encrypter(ABC):
    """Encrypt / Decrypt / ReEncrypt (ENCRYPT_DECRYPT keys)."""

    @abstractmethod
    def encrypt(self, material: Material, plaintext: bytes, algorithm: str, context: bytes) -> bytes:
        """``context`` is the canonical encryption context (``envelope.encode_context``);
        asymmetric algorithms do not take one (AWS rejects a context for them)."""

    @abstractmethod
    def decrypt(self, material: Material, ciphertext: bytes, algorithm: str, context: bytes) -> bytes:
        """Raise ``InvalidCiphertextException`` for anything that does not authenticate."""


class Signer(ABC):
    """Sign / Verify (SIGN_VERIFY keys).  ``message_type`` is RAW, DIGEST or EXTERNAL_MU."""

    @abstractmethod
    def sign(self, material: Material, message: bytes, message_type: str, algorithm: str) -> bytes: ...

    @abstractmethod
    def verify(self, material: Material, message: bytes, message_type: str, algorithm: str,
               signature: bytes) -> bool:
        """False for a signature that does not verify (the handler raises
        ``KMSInvalidSignatureException``); ``KMSError`` for malformed input."""


class Mac(ABC):
    """GenerateMac / VerifyMac (GENERATE_VERIFY_MAC keys)."""

    @abstractmethod
    def generate_mac(self, material: Material, message: bytes, algorithm: str) -> bytes: ...

    @abstractmethod
    def verify_mac(self, material: Material, message: bytes, algorithm: str, mac: bytes) -> bool:
        """Constant-time comparison."""


class KeyAgreement(ABC):
    """DeriveSharedSecret (KEY_AGREEMENT keys)."""

    @abstractmethod
    def derive_shared_secret(self, material: Material, peer_public_key_der: bytes, algorithm: str) -> bytes: ...


class KeyType(ABC):
    """One AWS ``KeySpec`` (``SYMMETRIC_DEFAULT``, ``RSA_2048``, ``HMAC_256`` …).

    The ``*_algorithms`` tuples are what DescribeKey / GetPublicKey report; ``key_usages`` the
    ``KeyUsage`` values CreateKey accepts for this spec (first is the default)."""

    key_spec: str
    key_usages: tuple[str, ...]
    encryption_algorithms: tuple[str, ...] = ()
    signing_algorithms: tuple[str, ...] = ()
    mac_algorithms: tuple[str, ...] = ()
    key_agreement_algorithms: tuple[str, ...] = ()

    def __init__(self, spec: str) -> None:
        # What AWS allows for the spec lives in spec_facts: the type reports those facts.
        f = spec_facts.facts(spec)
        self.key_spec = spec
        self.key_usages = f.key_usages
        self.encryption_algorithms = f.encryption_algorithms
        self.signing_algorithms = f.signing_algorithms
        self.mac_algorithms = f.mac_algorithms
        self.key_agreement_algorithms = f.key_agreement_algorithms

    @abstractmethod
    def generate(self) -> bytes:
        """New secret material in this type's form."""

    def check_import(self, secret: bytes) -> bytes:
        """Validate imported material (ImportKeyMaterial) and return it in this type's form;
        raise ``IncorrectKeyMaterialException`` (or ``ValidationException``) when it is wrong."""
        raise NotImplementedError

    def public_key_der(self, material: Material) -> bytes | None:
        """DER SubjectPublicKeyInfo for asymmetric keys, else None."""
        return None

    # The primitives; None when the type has no such capability.
    def encrypter(self) -> Encrypter | None:
        return None

    def signer(self) -> Signer | None:
        return None

    def mac(self) -> Mac | None:
        return None

    def key_agreement(self) -> KeyAgreement | None:
        return None


__all__ = ["Encrypter", "KeyAgreement", "KeyType", "Mac", "Material", "Signer"]

"""ML_DSA_44 / 65 / 87: FIPS 204 ML-DSA with signing algorithm ML_DSA_SHAKE_256.

MessageType RAW signs the message (pure ML-DSA, empty context); EXTERNAL_MU signs a
caller-computed 64-byte representative mu (FIPS 204 section 6.2), as AWS documents.  DIGEST
does not apply to ML-DSA.  Private keys are PKCS#8 DER as pyca/cryptography writes them
(the 32-byte seed form).
"""
from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from kms_core.errors import validation

from . import _asymmetric as common
from . import register
from . import spec_facts as specs
from .base import Material, Signer

_PRIVATE: dict[str, Any] = {
    "ML_DSA_44": mldsa.MLDSA44PrivateKey, "ML_DSA_65": mldsa.MLDSA65PrivateKey,
    "ML_DSA_87": mldsa.MLDSA87PrivateKey,
}


class MldsaSigner(Signer):
    def __init__(self, kt: MldsaKeyType):
        self.kt = kt

    def _check(self, message: bytes, message_type: str, algorithm: str) -> None:
        common.check_algorithm(self.kt, algorithm)
        if message_type == specs.EXTERNAL_MU:
            if len(message) != specs.EXTERNAL_MU_LENGTH:
                # *unconfirmed* wording; AWS documents only that mu "must be 64 bytes".
                raise validation(f"External mu must be {specs.EXTERNAL_MU_LENGTH} bytes long.")
        elif message_type != specs.RAW:
            raise common.message_type_incompatible(message_type, f"key spec {self.kt.key_spec}")

    def sign(self, material: Material, message: bytes, message_type: str, algorithm: str) -> bytes:
        self._check(message, message_type, algorithm)
        key = common.private_key(material)
        if message_type == specs.EXTERNAL_MU:
            return bytes(key.sign_mu(bytes(message)))
        return bytes(key.sign(bytes(message)))

    def verify(self, material: Material, message: bytes, message_type: str, algorithm: str,
               signature: bytes) -> bool:
        self._check(message, message_type, algorithm)
        public = common.private_key(material).public_key()
        try:
            if message_type == specs.EXTERNAL_MU:
                public.verify_mu(bytes(signature), bytes(message))
            else:
                public.verify(bytes(signature), bytes(message))
        except InvalidSignature:
            return False
        return True


class MldsaKeyType(common.SingleClassSigningKeyType):
    def __init__(self, spec: str):
        super().__init__(spec)
        self.private_class = _PRIVATE[spec]
        self._signer = MldsaSigner(self)


ML_DSA_44 = register(MldsaKeyType("ML_DSA_44"))
ML_DSA_65 = register(MldsaKeyType("ML_DSA_65"))
ML_DSA_87 = register(MldsaKeyType("ML_DSA_87"))

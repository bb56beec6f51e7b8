"""AWS's facts per ``KeySpec``, as data: usages, algorithms, features, limits, AWS's messages.

Sources: botocore's KMS service model (enums and the CreateKey / Sign / Verify / Encrypt /
ImportKeyMaterial / EnableKeyRotation / RotateKeyOnDemand documentation) and
``/work/shared/reference/kms-api.md``.  Facts that neither states are marked *unconfirmed*
where they are used (and listed in ``docs/key-types.md``).

The key-type modules take their algorithm lists from here, so DescribeKey, GetPublicKey and
the crypto agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

from kms_core.errors import KMSError, validation

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
SIGN_VERIFY = "SIGN_VERIFY"
GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
KEY_AGREEMENT = "KEY_AGREEMENT"

RAW, DIGEST, EXTERNAL_MU = "RAW", "DIGEST", "EXTERNAL_MU"
MESSAGE_TYPES = (RAW, DIGEST, EXTERNAL_MU)

# Sign / Verify / GenerateMac / VerifyMac: "Messages can be 0-4096 bytes" (model docs; the
# blob shape's min is 1).
MAX_MESSAGE = 4096
# EXTERNAL_MU is the 64-byte representative mu of FIPS 204 section 6.2.
EXTERNAL_MU_LENGTH = 64

RSA_ENCRYPTION = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
# The order DescribeKey reports (botocore's DescribeKey example for an RSA_2048 SIGN_VERIFY key).
RSA_SIGNING = (
    "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
)
ECDH = ("ECDH",)
ED25519_SIGNING = ("ED25519_SHA_512", "ED25519_PH_SHA_512")
ML_DSA_SIGNING = ("ML_DSA_SHAKE_256",)

# DIGEST length per signing algorithm: the output length of the hash its name ends in.
DIGEST_LENGTHS = {
    "RSASSA_PKCS1_V1_5_SHA_256": 32, "RSASSA_PKCS1_V1_5_SHA_384": 48, "RSASSA_PKCS1_V1_5_SHA_512": 64,
    "RSASSA_PSS_SHA_256": 32, "RSASSA_PSS_SHA_384": 48, "RSASSA_PSS_SHA_512": 64,
    "ECDSA_SHA_256": 32, "ECDSA_SHA_384": 48, "ECDSA_SHA_512": 64,
    "ED25519_PH_SHA_512": 64,
}

# The data key pair specs GenerateDataKeyPair accepts (botocore's DataKeyPairSpec enum).
DATA_KEY_PAIR_SPECS = (
    "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
    "ECC_SECG_P256K1", "SM2", "ECC_NIST_EDWARDS25519",
)

# Specs that exist only in the China Regions (cn-north-1, cn-northwest-1).
CHINA_ONLY = ("SM2",)


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What AWS allows for one ``KeySpec``."""

    key_spec: str
    key_usages: tuple[str, ...]
    encryption_algorithms: tuple[str, ...] = ()
    signing_algorithms: tuple[str, ...] = ()
    mac_algorithms: tuple[str, ...] = ()
    key_agreement_algorithms: tuple[str, ...] = ()
    # EnableKeyRotation / RotateKeyOnDemand: "supported only on symmetric encryption KMS keys".
    rotation: bool = False
    # CreateKey Origin=EXTERNAL: every type may hold imported material (ImportKeyMaterial doc:
    # symmetric, HMAC, asymmetric encryption, signing and key agreement keys).
    importable: bool = True
    # CreateKey MultiRegion: "all supported KMS key types".
    multi_region: bool = True
    asymmetric: bool = False

    def algorithms(self, usage: str) -> dict[str, list[str]]:
        """The algorithm lists DescribeKey / GetPublicKey report for a key of this spec and usage.

        AWS reports only the list that goes with the key's usage (an RSA SIGN_VERIFY key has
        SigningAlgorithms and no EncryptionAlgorithms)."""
        field, values = {
            ENCRYPT_DECRYPT: ("EncryptionAlgorithms", self.encryption_algorithms),
            SIGN_VERIFY: ("SigningAlgorithms", self.signing_algorithms),
            GENERATE_VERIFY_MAC: ("MacAlgorithms", self.mac_algorithms),
            KEY_AGREEMENT: ("KeyAgreementAlgorithms", self.key_agreement_algorithms),
        }[usage]
        return {field: list(values)} if values else {}


def _ecc(spec: str, ecdsa: str) -> SpecFacts:
    return SpecFacts(spec, (SIGN_VERIFY, KEY_AGREEMENT), signing_algorithms=(ecdsa,),
                     key_agreement_algorithms=ECDH, asymmetric=True)


def _rsa(spec: str) -> SpecFacts:
    return SpecFacts(spec, (ENCRYPT_DECRYPT, SIGN_VERIFY), encryption_algorithms=RSA_ENCRYPTION,
                     signing_algorithms=RSA_SIGNING, asymmetric=True)


def _hmac(bits: int) -> SpecFacts:
    return SpecFacts(f"HMAC_{bits}", (GENERATE_VERIFY_MAC,), mac_algorithms=(f"HMAC_SHA_{bits}",))


def _mldsa(spec: str) -> SpecFacts:
    return SpecFacts(spec, (SIGN_VERIFY,), signing_algorithms=ML_DSA_SIGNING, asymmetric=True)


SPECS: dict[str, SpecFacts] = {f.key_spec: f for f in (
    SpecFacts(SYMMETRIC_DEFAULT, (ENCRYPT_DECRYPT,), encryption_algorithms=(SYMMETRIC_DEFAULT,),
              rotation=True),
    _rsa("RSA_2048"), _rsa("RSA_3072"), _rsa("RSA_4096"),
    _ecc("ECC_NIST_P256", "ECDSA_SHA_256"), _ecc("ECC_NIST_P384", "ECDSA_SHA_384"),
    _ecc("ECC_NIST_P521", "ECDSA_SHA_512"),
    # "KMS keys with ECC_SECG_P256K1 can be used only to sign and verify messages."
    SpecFacts("ECC_SECG_P256K1", (SIGN_VERIFY,), signing_algorithms=("ECDSA_SHA_256",), asymmetric=True),
    SpecFacts("ECC_NIST_EDWARDS25519", (SIGN_VERIFY,), signing_algorithms=ED25519_SIGNING, asymmetric=True),
    _mldsa("ML_DSA_44"), _mldsa("ML_DSA_65"), _mldsa("ML_DSA_87"),
    _hmac(224), _hmac(256), _hmac(384), _hmac(512),
    SpecFacts("SM2", (ENCRYPT_DECRYPT, SIGN_VERIFY, KEY_AGREEMENT), encryption_algorithms=("SM2PKE",),
              signing_algorithms=("SM2DSA",), key_agreement_algorithms=ECDH, asymmetric=True),
)}


def facts(spec: str) -> SpecFacts:
    try:
        return SPECS[spec]
    except KeyError:
        raise validation(f"1 validation error detected: Value '{spec}' at 'keySpec' failed to satisfy "
                         f"constraint: Member must satisfy enum value set: [{', '.join(SPECS)}]") from None


def is_china_region(region: str) -> bool:
    return region.startswith("cn-")


def check_region(spec: str, region: str) -> None:
    """SM2 exists only in the China Regions; elsewhere AWS answers UnsupportedOperationException
    (message as reported from us-east-1; *unconfirmed* against AWS's documentation)."""
    if spec in CHINA_ONLY and not is_china_region(region):
        raise KMSError("UnsupportedOperationException", f"KeySpec {spec} is not supported in this Region")


def check_key_usage(spec: str, usage: str | None) -> str:
    """CreateKey's KeySpec/KeyUsage rule: returns the usage to record."""
    f = facts(spec)
    if usage is None:
        if spec == SYMMETRIC_DEFAULT:
            return ENCRYPT_DECRYPT
        raise validation("You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.")
    if usage not in f.key_usages:
        raise validation(f"KeyUsage {usage} is not compatible with KeySpec {spec}")
    return usage


def rsa_max_plaintext(key_bits: int, algorithm: str) -> int:
    """RSAES-OAEP's limit, k - 2*hLen - 2 (RFC 8017 7.1.1): 2048 -> 214 / 190, 3072 -> 342 / 318,
    4096 -> 470 / 446, the figures in AWS's Encrypt documentation."""
    h_len = 20 if algorithm == "RSAES_OAEP_SHA_1" else 32
    return key_bits // 8 - 2 * h_len - 2


def algorithm_incompatible(algorithm: str, spec: str) -> KMSError:
    """An algorithm the key's spec does not support (AWS's message for MAC algorithms;
    the same wording for signing/encryption algorithms is *unconfirmed*)."""
    return KMSError("InvalidKeyUsageException", f"Algorithm {algorithm} is incompatible with key spec {spec}.")


def digest_invalid_length(algorithm: str) -> KMSError:
    return validation(f"Digest is invalid length for algorithm {algorithm}.")


__all__ = [
    "CHINA_ONLY", "DATA_KEY_PAIR_SPECS", "DIGEST", "DIGEST_LENGTHS", "ECDH", "ENCRYPT_DECRYPT",
    "EXTERNAL_MU", "EXTERNAL_MU_LENGTH", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "MAX_MESSAGE",
    "MESSAGE_TYPES", "RAW", "SIGN_VERIFY", "SPECS", "SYMMETRIC_DEFAULT", "SpecFacts",
    "algorithm_incompatible", "check_key_usage", "check_region", "digest_invalid_length", "facts",
    "is_china_region", "rsa_max_plaintext",
]

"""The key-type half of the KMS operations on asymmetric and HMAC keys.

An engine handler resolves the key, checks its state and authorizes the call, then hands
the key's record and current material to one of these functions, which apply AWS's rules
for the key's spec and usage (key usage, algorithms, message types, limits, DryRun) and
return the response in boto3's form.  Nothing here touches the store.

``DryRun``: AWS answers DryRunOperationException only for a request that would have
succeeded, so each function runs every check, and the cheap operation itself, before
raising it; no result leaves the function.
"""
from __future__ import annotations

from typing import Any, Protocol

from kms_core.errors import KMSError, validation

from . import get
from . import spec_facts as specs
from .base import Mac, Material, Signer

DRY_RUN_MESSAGE = "The request would have succeeded, but the DryRun option is set."


class KeyView(Protocol):
    """What these functions read from the engine's key record."""

    arn: str
    key_spec: str
    key_usage: str
    origin: str


def _dry_run(p: dict) -> None:
    if p.get("DryRun"):
        raise KMSError("DryRunOperationException", DRY_RUN_MESSAGE)


def require_usage(rec: KeyView, usage: str, operation: str) -> None:
    if rec.key_usage != usage:
        raise KMSError("InvalidKeyUsageException",
                       f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")


# -- CreateKey / DescribeKey ---------------------------------------------------------------
def create_key_spec(p: dict, region: str) -> tuple[str, str]:
    """CreateKey's KeySpec / KeyUsage / Origin / MultiRegion rules: the spec and usage to record."""
    if p.get("KeySpec") is not None and p.get("CustomerMasterKeySpec") is not None:
        raise validation("You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
                         "CustomerMasterKeySpec is deprecated.")
    spec = p.get("KeySpec") or p.get("CustomerMasterKeySpec") or specs.SYMMETRIC_DEFAULT
    facts = specs.facts(spec)
    specs.check_region(spec, region)
    usage = specs.check_key_usage(spec, p.get("KeyUsage"))
    origin = p.get("Origin") or "AWS_KMS"
    if origin == "EXTERNAL" and not facts.importable:
        raise KMSError("UnsupportedOperationException", f"KeySpec {spec} does not support imported key material.")
    if spec != specs.SYMMETRIC_DEFAULT and (origin in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
                                           or p.get("CustomKeyStoreId") is not None):
        raise KMSError("UnsupportedOperationException",
                       f"KeySpec {spec} is not supported in a custom key store. Use SYMMETRIC_DEFAULT.")
    if spec != specs.SYMMETRIC_DEFAULT:
        get(spec)  # UnsupportedOperationException for a spec with no implementation here (SM2)
    return spec, usage


def metadata_algorithms(spec: str, usage: str) -> dict[str, list[str]]:
    """The algorithm lists DescribeKey / CreateKey / GetPublicKey report."""
    return specs.facts(spec).algorithms(usage)


# -- GetPublicKey ----------------------------------------------------------------------------
def get_public_key(rec: KeyView, material: Material) -> dict[str, Any]:
    kt = get(rec.key_spec)
    der = kt.public_key_der(material)
    if der is None:
        # *unconfirmed* message; the code is what AWS answers for a key without a public key.
        raise KMSError("UnsupportedOperationException",
                       f"{rec.arn} key spec {rec.key_spec} has no public key, which is not valid for GetPublicKey.")
    out: dict[str, Any] = {"KeyId": rec.arn, "PublicKey": der, "CustomerMasterKeySpec": rec.key_spec,
                           "KeySpec": rec.key_spec, "KeyUsage": rec.key_usage}
    out.update(metadata_algorithms(rec.key_spec, rec.key_usage))
    return out


# -- Sign / Verify -----------------------------------------------------------------------------
def _signer(rec: KeyView, operation: str) -> Signer:
    require_usage(rec, specs.SIGN_VERIFY, operation)
    signer = get(rec.key_spec).signer()
    if signer is None:
        raise KMSError("InvalidKeyUsageException",
                       f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")
    return signer


def sign(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    alg = p["SigningAlgorithm"]
    signature = _signer(rec, "Sign").sign(material, bytes(p["Message"]), p.get("MessageType") or specs.RAW, alg)
    _dry_run(p)
    return {"KeyId": rec.arn, "Signature": signature, "SigningAlgorithm": alg}


def verify(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    alg = p["SigningAlgorithm"]
    valid = _signer(rec, "Verify").verify(material, bytes(p["Message"]), p.get("MessageType") or specs.RAW,
                                          alg, bytes(p["Signature"]))
    _dry_run(p)
    if not valid:
        raise KMSError("KMSInvalidSignatureException", "")
    return {"KeyId": rec.arn, "SignatureValid": True, "SigningAlgorithm": alg}


# -- GenerateMac / VerifyMac ---------------------------------------------------------------------
def _mac(rec: KeyView, operation: str) -> Mac:
    require_usage(rec, specs.GENERATE_VERIFY_MAC, operation)
    mac = get(rec.key_spec).mac()
    if mac is None:
        raise KMSError("InvalidKeyUsageException",
                       f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")
    return mac


def generate_mac(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    alg = p["MacAlgorithm"]
    mac = _mac(rec, "GenerateMac").generate_mac(material, bytes(p["Message"]), alg)
    _dry_run(p)
    return {"Mac": mac, "MacAlgorithm": alg, "KeyId": rec.arn}


def verify_mac(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    alg = p["MacAlgorithm"]
    valid = _mac(rec, "VerifyMac").verify_mac(material, bytes(p["Message"]), alg, bytes(p["Mac"]))
    _dry_run(p)
    if not valid:
        raise KMSError("KMSInvalidMacException", "")
    return {"KeyId": rec.arn, "MacValid": True, "MacAlgorithm": alg}


# -- DeriveSharedSecret ---------------------------------------------------------------------------
def derive_shared_secret(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    require_usage(rec, specs.KEY_AGREEMENT, "DeriveSharedSecret")
    agreement = get(rec.key_spec).key_agreement()
    if agreement is None:
        raise KMSError("InvalidKeyUsageException",
                       f"{rec.arn} key usage is {rec.key_usage} which is not valid for DeriveSharedSecret.")
    alg = p["KeyAgreementAlgorithm"]
    secret = agreement.derive_shared_secret(material, bytes(p["PublicKey"]), alg)
    _dry_run(p)
    return {"KeyId": rec.arn, "SharedSecret": secret, "KeyAgreementAlgorithm": alg, "KeyOrigin": rec.origin}


# -- Encrypt / Decrypt / ReEncrypt with asymmetric keys -------------------------------------------------
def _no_context(p: dict, name: str) -> None:
    if p.get(name):
        # AWS: "An encryption context is valid only for cryptographic operations with a
        # symmetric encryption KMS key."  *unconfirmed* message.
        raise validation(f"{name} is not supported for asymmetric KMS keys.")


def asymmetric_encrypt(rec: KeyView, material: Material, plaintext: bytes, algorithm: str | None,
                       context_param: str, p: dict) -> bytes:
    """Encrypt (and ReEncrypt's destination half) under an RSA ENCRYPT_DECRYPT key.  AWS's
    default algorithm is SYMMETRIC_DEFAULT, which an RSA key refuses."""
    _no_context(p, context_param)
    encrypter = get(rec.key_spec).encrypter()
    assert encrypter is not None  # ENCRYPT_DECRYPT on an asymmetric spec: RSA
    return encrypter.encrypt(material, bytes(plaintext), algorithm or specs.SYMMETRIC_DEFAULT, b"")


def asymmetric_decrypt(rec: KeyView, material: Material, ciphertext: bytes, algorithm: str | None,
                       context_param: str, p: dict) -> bytes:
    _no_context(p, context_param)
    encrypter = get(rec.key_spec).encrypter()
    assert encrypter is not None
    return encrypter.decrypt(material, bytes(ciphertext), algorithm or specs.SYMMETRIC_DEFAULT, b"")


def encrypt(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    require_usage(rec, specs.ENCRYPT_DECRYPT, "Encrypt")
    alg = p.get("EncryptionAlgorithm")
    blob = asymmetric_encrypt(rec, material, p["Plaintext"], alg, "EncryptionContext", p)
    _dry_run(p)
    return {"CiphertextBlob": blob, "KeyId": rec.arn, "EncryptionAlgorithm": alg}


def decrypt(rec: KeyView, material: Material, p: dict) -> dict[str, Any]:
    """Decrypt of an RSA ciphertext: the caller must name the key (KMS cannot put metadata in
    an RSA ciphertext), so the handler calls this when KeyId names an asymmetric key."""
    require_usage(rec, specs.ENCRYPT_DECRYPT, "Decrypt")
    alg = p.get("EncryptionAlgorithm")
    if p.get("DryRun") and "IGNORE_CIPHERTEXT" in (p.get("DryRunModifiers") or ()):
        _no_context(p, "EncryptionContext")
        if alg not in get(rec.key_spec).encryption_algorithms:
            raise specs.algorithm_incompatible(alg or specs.SYMMETRIC_DEFAULT, rec.key_spec)
        _dry_run(p)
    plaintext = asymmetric_decrypt(rec, material, p["CiphertextBlob"], alg, "EncryptionContext", p)
    _dry_run(p)
    return {"KeyId": rec.arn, "Plaintext": plaintext, "EncryptionAlgorithm": alg}


# -- GenerateDataKeyPair --------------------------------------------------------------------------------
def check_data_key_pair_spec(pair_spec: str, region: str) -> None:
    """GenerateDataKeyPair's KeyPairSpec: one of AWS's, offered in this Region, implemented."""
    if pair_spec not in specs.DATA_KEY_PAIR_SPECS:
        raise validation(f"1 validation error detected: Value '{pair_spec}' at 'keyPairSpec' failed to satisfy "
                         f"constraint: Member must satisfy enum value set: [{', '.join(specs.DATA_KEY_PAIR_SPECS)}]")
    specs.check_region(pair_spec, region)
    get(pair_spec)


def new_data_key_pair(pair_spec: str, region: str) -> tuple[bytes, bytes]:
    """A fresh key pair for GenerateDataKeyPair: (PKCS#8 DER private key, DER SPKI public key)."""
    check_data_key_pair_spec(pair_spec, region)
    kt = get(pair_spec)
    private = kt.generate()
    public = kt.public_key_der(Material("", 0, private))
    assert public is not None
    return private, public


__all__ = [
    "DRY_RUN_MESSAGE", "KeyView", "asymmetric_decrypt", "asymmetric_encrypt", "check_data_key_pair_spec",
    "create_key_spec", "decrypt",
    "derive_shared_secret", "encrypt", "generate_mac", "get_public_key", "metadata_algorithms",
    "new_data_key_pair", "require_usage", "sign", "verify", "verify_mac",
]

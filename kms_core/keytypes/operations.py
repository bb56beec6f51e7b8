"""The key-type half of the KMS operations on asymmetric and HMAC keys.

(Encrypt, Decrypt and ReEncrypt need nothing here: the engine's crypto handlers use the key
type's ``Encrypter`` for every spec, and the RSA one applies AWS's limits and rules.)

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
from .base import KeyAgreement, Mac, Material, Signer

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


def _wrong_usage(rec: KeyView, operation: str) -> KMSError:
    return KMSError("InvalidKeyUsageException",
                    f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")


def require_usage(rec: KeyView, usage: str, operation: str) -> None:
    if rec.key_usage != usage:
        raise _wrong_usage(rec, operation)


def _primitive(rec: KeyView, usage: str, operation: str, which: str) -> Any:
    """The key type's primitive for ``operation`` (``signer``, ``mac``, ``key_agreement``), or
    AWS's InvalidKeyUsageException when the key's usage or type has none."""
    require_usage(rec, usage, operation)
    primitive = getattr(get(rec.key_spec), which)()
    if primitive is None:
        raise _wrong_usage(rec, operation)
    return primitive


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
    signer: Signer = _primitive(rec, specs.SIGN_VERIFY, operation, "signer")
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
    mac: Mac = _primitive(rec, specs.GENERATE_VERIFY_MAC, operation, "mac")
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
    agreement: KeyAgreement = _primitive(rec, specs.KEY_AGREEMENT, "DeriveSharedSecret", "key_agreement")
    alg = p["KeyAgreementAlgorithm"]
    secret = agreement.derive_shared_secret(material, bytes(p["PublicKey"]), alg)
    _dry_run(p)
    return {"KeyId": rec.arn, "SharedSecret": secret, "KeyAgreementAlgorithm": alg, "KeyOrigin": rec.origin}


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
    "DRY_RUN_MESSAGE", "KeyView", "check_data_key_pair_spec", "create_key_spec",
    "derive_shared_secret", "generate_mac", "get_public_key", "metadata_algorithms",
    "new_data_key_pair", "require_usage", "sign", "verify", "verify_mac",
]

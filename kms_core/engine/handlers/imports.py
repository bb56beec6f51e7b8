"""Imported key material (BYOK): GetParametersForImport, ImportKeyMaterial,
DeleteImportedKeyMaterial.

The key's type checks the material (``KeyType.check_import``); the repository stores it
sealed, as every material.
"""
from __future__ import annotations

import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kms_core import blob as blobfmt
from kms_core.errors import KMSError, validation

from ..records import DAY, ENABLED, PENDING_DELETION, PENDING_IMPORT, Params, RequestContext, Result, ts
from ..repository import MaterialMismatch

if TYPE_CHECKING:
    from ..core import Engine

_WRAPPING = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256")
_WRAPPING_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
IMPORT_TOKEN_PREFIX = b"KMSLOCAL-IMPORT-1"
_TOKEN_LEN = len(IMPORT_TOKEN_PREFIX) + 48  # + token id (32) + key id (16)


def get_parameters_for_import(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - BYOK only
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415 - BYOK only

    rec = eng.admin_key(p["KeyId"], ctx, "GetParametersForImport", p)
    alg, spec = p["WrappingAlgorithm"], p["WrappingKeySpec"]
    if alg not in _WRAPPING:
        raise validation(f"1 validation error detected: Value '{alg}' at 'wrappingAlgorithm' failed to "
                         "satisfy constraint: Member must satisfy enum value set: "
                         f"[{', '.join(sorted(_WRAPPING))}]")
    if spec not in _WRAPPING_BITS:
        raise KMSError("UnsupportedOperationException", f"WrappingKeySpec {spec} is not supported.")
    private = rsa.generate_private_key(public_exponent=65537, key_size=_WRAPPING_BITS[spec])
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    valid_to = eng.now() + DAY
    token_id = eng.repo.save_import_parameters(rec.row_id, alg, spec, der, valid_to)
    token = IMPORT_TOKEN_PREFIX + bytes.fromhex(token_id) + blobfmt.key_id_bytes(rec.key_id)[1]
    return {"KeyId": rec.arn, "ImportToken": token, "PublicKey": public, "ParametersValidTo": ts(valid_to)}


def _expiry(p: Params, now: float) -> tuple[str, float | None]:
    """(ExpirationModel, ValidTo as epoch seconds or None)."""
    model = p.get("ExpirationModel") or "KEY_MATERIAL_EXPIRES"
    valid_to = p.get("ValidTo")
    if model == "KEY_MATERIAL_EXPIRES":
        if valid_to is None:
            raise validation("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
        vt = valid_to.timestamp() if isinstance(valid_to, datetime) else float(valid_to)
        if vt <= now or vt > now + 365 * DAY:
            raise validation("ValidTo must be in the future and at most 365 days from now.")
        return model, vt
    if model == "KEY_MATERIAL_DOES_NOT_EXPIRE":
        if valid_to is not None:
            raise validation("A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
        return model, None
    raise validation(f"1 validation error detected: Value '{model}' at 'expirationModel' failed "
                     "to satisfy constraint: Member must satisfy enum value set: "
                     "[KEY_MATERIAL_DOES_NOT_EXPIRE, KEY_MATERIAL_EXPIRES]")


def _unwrap(row: Any, der: bytes, wrapped: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - BYOK only
    from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: PLC0415 - BYOK only
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding  # noqa: PLC0415 - BYOK only

    private = serialization.load_der_private_key(der, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)  # we generated it
    alg = row["wrapping_algorithm"]
    h = hashes.SHA1() if alg.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    try:
        if alg.startswith("RSAES_OAEP"):
            return private.decrypt(wrapped, oaep)
        n = private.key_size // 8
        aes_key = private.decrypt(wrapped[:n], oaep)
        return aes_key_unwrap_with_padding(aes_key, wrapped[n:])
    except (ValueError, InvalidUnwrap):
        raise KMSError("InvalidCiphertextException",
                       "The EncryptedKeyMaterial could not be decrypted with the import parameters.") from None


def _token_id(token: Any, key_id: str) -> str:
    if (not isinstance(token, (bytes, bytearray)) or len(token) != _TOKEN_LEN
            or not bytes(token).startswith(IMPORT_TOKEN_PREFIX)):
        raise KMSError("InvalidImportTokenException", "The import token is not valid.")
    token = bytes(token)
    if token[-16:] != blobfmt.key_id_bytes(key_id)[1]:
        raise KMSError("InvalidImportTokenException", "The import token was issued for another key.")
    return token[len(IMPORT_TOKEN_PREFIX):len(IMPORT_TOKEN_PREFIX) + 32].hex()


def import_key_material(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "ImportKeyMaterial", p)
    found = eng.repo.import_parameters(_token_id(p["ImportToken"], rec.key_id))
    if found is None or found[0]["key_id"] != rec.row_id:
        raise KMSError("InvalidImportTokenException", "The import token is not valid.")
    row, der = found
    now = eng.now()
    if row["valid_to"] <= now:
        raise KMSError("ExpiredImportTokenException",
                       "The import token has expired. Use GetParametersForImport to get a new one.")
    model, vt = _expiry(p, now)
    secret = rec.key_type.check_import(_unwrap(row, der, bytes(p["EncryptedKeyMaterial"])))
    # Re-imports must bring the same material, even after it was deleted: only a
    # fingerprint (HMAC keyed by the material) is kept, never the bytes.
    fingerprint = hmac.new(secret, b"kms-local/imported-material-fingerprint", "sha256").hexdigest()
    state = ENABLED if rec.key_state == PENDING_IMPORT else rec.key_state
    try:
        material_id = eng.repo.import_material(rec.row_id, rec.key_spec, secret, fingerprint, now, {
            "key_state": state, "valid_to": vt, "expiration_model": model})
    except MaterialMismatch:
        raise KMSError("IncorrectKeyMaterialException",
                       "The key material does not match the key material previously imported "
                       "into this KMS key.") from None
    return {"KeyId": rec.arn, "KeyMaterialId": material_id}


def delete_imported_key_material(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "DeleteImportedKeyMaterial", p)
    material_id = rec.material_ids.get(1)
    values: dict[str, Any] = {"current_version": 0, "valid_to": None}
    if rec.key_state != PENDING_DELETION:
        values["key_state"] = PENDING_IMPORT
    eng.repo.delete_material(rec.row_id, **values)
    out: Result = {"KeyId": rec.arn}
    if material_id:
        out["KeyMaterialId"] = material_id
    return out

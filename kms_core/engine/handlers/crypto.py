"""Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
GenerateRandom.

Key material is reached only through the key's type (``kms_core.keytypes``): the record
carries ``key_type`` and its ``Encrypter``, and ``materials[version]``.  Ciphertexts in the
blob format (docs/ciphertext-blob.md) name their key and material version; any other
ciphertext needs the caller to name the key (as AWS requires for asymmetric keys).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kms_core import blob as blobfmt
from kms_core.errors import KMSError, invalid_ciphertext, validation
from kms_core.keytypes import Encrypter, Material

from ..records import SYMMETRIC, KeyRecord, Params, RequestContext, Result

if TYPE_CHECKING:
    from ..core import Engine


def _encrypter(rec: KeyRecord, algorithm: str | None) -> tuple[Encrypter, str]:
    """The key's Encrypter and the algorithm to use (SYMMETRIC_DEFAULT when not named, as AWS)."""
    alg = algorithm or SYMMETRIC
    enc = rec.encrypter
    if enc is None or (alg not in rec.key_type.encryption_algorithms):
        raise KMSError("InvalidKeyUsageException", f"The encryption algorithm {alg} is not valid for this key.")
    return enc, alg


def encrypt(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "Encrypt", p)
    enc, alg = _encrypter(rec, p.get("EncryptionAlgorithm"))
    plaintext = p["Plaintext"]
    eng.dry_run(p)
    v = rec.current_version
    return {"CiphertextBlob": enc.encrypt(rec.materials[v], bytes(plaintext), alg, eng.context_bytes(p)),
            "KeyId": rec.arn, "EncryptionAlgorithm": alg}


def _header(blob: bytes) -> blobfmt.Header | None:
    try:
        return blobfmt.parse_header(blob)
    except KMSError:
        return None


def _open(eng: Engine, blob: bytes, ctx: RequestContext, operation: str, p: Params, *, key_param: str,
          context_param: str, algorithm_param: str, permission: str | None = None) -> tuple[KeyRecord, bytes, int, str]:
    """Find the key and material a ciphertext was made under, check and authorize, decrypt.
    Returns (key, plaintext, material version, algorithm)."""
    named = p.get(key_param)
    header = _header(blob)
    if header is not None and named is not None:
        # An asymmetric key's raw ciphertext may begin with bytes that read as a blob header
        # (version 0x01 or 0x02): when the blob's key is not the named asymmetric key, it is that.
        found_rec = eng.get(header.key_id, ctx)
        named_rec = eng.resolve(named, ctx, operation)
        if named_rec.key_spec != "SYMMETRIC_DEFAULT" and (found_rec is None or found_rec.key_id != named_rec.key_id):
            header = None
    if header is not None:
        found = eng.get(header.key_id, ctx)
        if found is None:
            raise invalid_ciphertext()
        if named is not None and eng.resolve(named, ctx, operation).key_id != found.key_id:
            raise KMSError("IncorrectKeyException",
                           "The key ID in the request does not identify a CMK that can perform this operation.")
        rec, version = found, header.material_version
    elif named is not None:
        rec = eng.resolve(named, ctx, operation)
        version = rec.current_version
    else:
        raise invalid_ciphertext()
    eng.check_key_and_state(operation, rec)
    eng.authorize(operation, rec, ctx, p, permission)
    enc, alg = _encrypter(rec, p.get(algorithm_param))
    material: Material | None = rec.materials.get(version)
    if material is None:
        raise invalid_ciphertext()
    return rec, enc.decrypt(material, blob, alg, eng.context_bytes(p, context_param)), version, alg


def decrypt(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.no_recipient(p)
    if "CiphertextBlob" not in p:
        raise validation("CiphertextBlob is required.")
    rec, plaintext, version, alg = _open(eng, bytes(p["CiphertextBlob"]), ctx, "Decrypt", p, key_param="KeyId",
                                         context_param="EncryptionContext", algorithm_param="EncryptionAlgorithm")
    eng.dry_run(p)
    out: Result = {"KeyId": rec.arn, "Plaintext": plaintext, "EncryptionAlgorithm": alg}
    if rec.key_spec == SYMMETRIC:  # AWS: "present only when the operation uses a symmetric encryption KMS key"
        out["KeyMaterialId"] = rec.material_ids[version]
    return out


def re_encrypt(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    if "CiphertextBlob" not in p:
        raise validation("CiphertextBlob is required.")
    src, plaintext, version, src_alg = _open(
        eng, bytes(p["CiphertextBlob"]), ctx, "ReEncrypt", p, key_param="SourceKeyId",
        context_param="SourceEncryptionContext", algorithm_param="SourceEncryptionAlgorithm",
        permission="kms:ReEncryptFrom")
    dst = eng.crypto_key(p["DestinationKeyId"], ctx, "ReEncrypt", p, permission="kms:ReEncryptTo")
    enc, dst_alg = _encrypter(dst, p.get("DestinationEncryptionAlgorithm"))
    eng.dry_run(p)
    v = dst.current_version
    blob = enc.encrypt(dst.materials[v], plaintext, dst_alg, eng.context_bytes(p, "DestinationEncryptionContext"))
    out: Result = {"CiphertextBlob": blob, "SourceKeyId": src.arn, "KeyId": dst.arn,
                   "SourceEncryptionAlgorithm": src_alg, "DestinationEncryptionAlgorithm": dst_alg}
    # AWS reports material ids only for symmetric encryption keys.
    if src.key_spec == SYMMETRIC:
        out["SourceKeyMaterialId"] = src.material_ids[version]
    if dst.key_spec == SYMMETRIC:
        out["DestinationKeyMaterialId"] = dst.material_ids[v]
    return out


def _data_key_length(p: Params) -> int:
    # Exactly one of the two, the enum and 1–1024 are enforced by the operation table.
    spec = p.get("KeySpec")
    if spec is not None:
        return 32 if spec == "AES_256" else 16
    return int(p["NumberOfBytes"])


def _generate(eng: Engine, p: Params, ctx: RequestContext, operation: str) -> tuple[KeyRecord, bytes, bytes, int]:
    rec = eng.crypto_key(p["KeyId"], ctx, operation, p)
    enc, alg = _encrypter(rec, None)
    n = _data_key_length(p)
    eng.dry_run(p)
    plaintext = os.urandom(n)
    v = rec.current_version
    return rec, plaintext, enc.encrypt(rec.materials[v], plaintext, alg, eng.context_bytes(p)), v


def generate_data_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.no_recipient(p)
    rec, plaintext, blob, v = _generate(eng, p, ctx, "GenerateDataKey")
    return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": rec.arn, "KeyMaterialId": rec.material_ids[v]}


def generate_data_key_without_plaintext(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec, _, blob, v = _generate(eng, p, ctx, "GenerateDataKeyWithoutPlaintext")
    return {"CiphertextBlob": blob, "KeyId": rec.arn, "KeyMaterialId": rec.material_ids[v]}


def generate_random(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.no_recipient(p)
    if p.get("CustomKeyStoreId") is not None:
        raise KMSError("CustomKeyStoreNotFoundException", "Custom key stores are not supported by this KMS engine.")
    n = p["NumberOfBytes"]  # required and 1–1024: the operation table
    eng.authorize("GenerateRandom", None, ctx, p)
    return {"Plaintext": os.urandom(n)}

"""Data key pairs: GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext.

A fresh key pair of ``KeyPairSpec`` (PKCS#8 DER private key, DER SPKI public key); the
private key is encrypted under a symmetric encryption KMS key (the table allows no other)
with the request's encryption context, like a data key, so Decrypt opens it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kms_core.keytypes import operations as ops

from ..records import SYMMETRIC, Params, RequestContext, Result

if TYPE_CHECKING:
    from ..core import Engine


def _pair(eng: Engine, p: Params, ctx: RequestContext, operation: str) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, operation, p)
    pair_spec = p["KeyPairSpec"]
    region = eng.region(ctx)
    ops.check_data_key_pair_spec(pair_spec, region)
    eng.dry_run(p)
    private, public = ops.new_data_key_pair(pair_spec, region)
    v = rec.current_version
    assert rec.encrypter is not None  # a symmetric encryption key: the table's requirement
    blob = rec.encrypter.encrypt(rec.materials[v], private, SYMMETRIC, eng.context_bytes(p))
    return {"PrivateKeyCiphertextBlob": blob, "PrivateKeyPlaintext": private, "PublicKey": public,
            "KeyId": rec.arn, "KeyPairSpec": pair_spec, "KeyMaterialId": rec.material_ids[v]}


def generate_data_key_pair(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.no_recipient(p)
    return _pair(eng, p, ctx, "GenerateDataKeyPair")


def generate_data_key_pair_without_plaintext(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    out = _pair(eng, p, ctx, "GenerateDataKeyPairWithoutPlaintext")
    del out["PrivateKeyPlaintext"]
    return out

"""Asymmetric signing keys: Sign, Verify, GetPublicKey.

The operation table checks the key (KeyUsage SIGN_VERIFY; GetPublicKey: an asymmetric
KeySpec), its state and the caller's permission (``Engine.crypto_key``); the key's type does
the rest (``kms_core.keytypes.operations``: algorithms, message types, DryRun, AWS's errors).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kms_core.keytypes import operations as ops

from ..records import Params, RequestContext, Result

if TYPE_CHECKING:
    from ..core import Engine


def sign(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "Sign", p)
    return ops.sign(rec, rec.materials[rec.current_version], p)


def verify(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "Verify", p)
    return ops.verify(rec, rec.materials[rec.current_version], p)


def get_public_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "GetPublicKey", p)
    return ops.get_public_key(rec, rec.materials[rec.current_version])

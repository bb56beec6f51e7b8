"""HMAC keys: GenerateMac, VerifyMac (KeyUsage GENERATE_VERIFY_MAC, checked by the table)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kms_core.keytypes import operations as ops

from ..records import Params, RequestContext, Result

if TYPE_CHECKING:
    from ..core import Engine


def generate_mac(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "GenerateMac", p)
    return ops.generate_mac(rec, rec.materials[rec.current_version], p)


def verify_mac(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.crypto_key(p["KeyId"], ctx, "VerifyMac", p)
    return ops.verify_mac(rec, rec.materials[rec.current_version], p)

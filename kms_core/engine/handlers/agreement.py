"""Key agreement keys: DeriveSharedSecret (KeyUsage KEY_AGREEMENT, checked by the table)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kms_core.keytypes import operations as ops

from ..records import Params, RequestContext, Result

if TYPE_CHECKING:
    from ..core import Engine


def derive_shared_secret(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.no_recipient(p)
    rec = eng.crypto_key(p["KeyId"], ctx, "DeriveSharedSecret", p)
    return ops.derive_shared_secret(rec, rec.materials[rec.current_version], p)

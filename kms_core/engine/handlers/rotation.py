"""Key rotation: Enable/DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand,
ListKeyRotations."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kms_core.errors import KMSError, invalid_state, validation

from .. import paging
from ..records import (
    DAY,
    DEFAULT_ROTATION_DAYS,
    MAX_ON_DEMAND_ROTATIONS,
    PENDING_DELETION,
    Params,
    RequestContext,
    Result,
    ts,
)
from ..repository import TooMany

if TYPE_CHECKING:
    from ..core import Engine
    from ..records import KeyRecord


def _not_on_replica(rec: KeyRecord) -> None:
    """Rotation of a multi-Region key is managed on its primary; replicas share the result."""
    if rec.is_replica:
        raise KMSError("UnsupportedOperationException",
                       f"{rec.arn} is a multi-Region replica key. Rotation is managed on the primary "
                       f"key in {rec.primary_region}.")


def enable_key_rotation(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "EnableKeyRotation", p)
    _not_on_replica(rec)
    period = p.get("RotationPeriodInDays")
    period = DEFAULT_ROTATION_DAYS if period is None else period  # 90–2560: the operation table
    now = eng.now()
    if rec.rotation_enabled and rec.next_rotation_date is not None and rec.rotation_period_days:
        # Re-enabling changes the period; the schedule keeps its starting point.
        start = rec.next_rotation_date - rec.rotation_period_days * DAY
        nxt = max(start + period * DAY, now)
    else:
        nxt = now + period * DAY
    eng.repo.update_key(rec.row_id, rotation_enabled=True, rotation_period_days=period, next_rotation_date=nxt)
    return {}


def disable_key_rotation(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "DisableKeyRotation", p)
    _not_on_replica(rec)
    eng.repo.update_key(rec.row_id, rotation_enabled=False, next_rotation_date=None)
    return {}


def get_key_rotation_status(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "GetKeyRotationStatus", p)
    enabled = rec.rotation_enabled and rec.key_state != PENDING_DELETION
    out: Result = {"KeyRotationEnabled": enabled, "KeyId": rec.arn}
    if enabled:
        out["RotationPeriodInDays"] = rec.rotation_period_days
        if rec.next_rotation_date is not None:
            out["NextRotationDate"] = ts(rec.next_rotation_date)
    # AWS reports OnDemandRotationStartDate only while an on-demand rotation is in
    # progress and drops it once the rotation completes.  Ours completes before
    # RotateKeyOnDemand returns, so there is never one in progress to report.
    return out


def rotate_key_on_demand(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "RotateKeyOnDemand", p)
    _not_on_replica(rec)
    if rec.origin == "EXTERNAL":
        raise invalid_state(f"No available key material pending rotation for the key: {rec.arn}.")
    try:
        eng.repo.rotate_on_demand(rec.row_id, rec.key_spec, eng.now(), MAX_ON_DEMAND_ROTATIONS)
    except TooMany:
        raise KMSError("LimitExceededException",
                       "The on-demand rotations limit has been reached for the given keyId. "
                       f"No more on-demand rotations can be performed for this key: {rec.arn}") from None
    return {"KeyId": rec.arn}


def list_key_rotations(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "ListKeyRotations", p)
    include = p.get("IncludeKeyMaterial") or "ROTATIONS_ONLY"
    if include not in ("ROTATIONS_ONLY", "ALL_KEY_MATERIAL"):
        raise validation(f"1 validation error detected: Value '{include}' at 'includeKeyMaterial' "
                         "failed to satisfy constraint: Member must satisfy enum value set: "
                         "[ALL_KEY_MATERIAL, ROTATIONS_ONLY]")
    kind = "rotations:" + rec.key_id
    paging.marker(p, kind)  # a bad marker is reported before the store is read
    entries: list[dict[str, Any]] = []
    for r in eng.repo.materials(rec.key_id):
        if r.rotation_type is None and include == "ROTATIONS_ONLY":
            continue
        e = {"KeyId": rec.key_id, "KeyMaterialId": r.material_id,
             "KeyMaterialState": "CURRENT" if r.version == rec.current_version else "NON_CURRENT",
             "RotationDate": ts(r.created), "_v": f"{r.version:010d}"}
        if r.rotation_type is not None:
            e["RotationType"] = r.rotation_type
        entries.append(e)
    out = paging.page(entries, "_v", p, 100, "Rotations", kind)
    for e in out["Rotations"]:
        del e["_v"]
    return out

"""Key lifecycle: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, Enable/DisableKey,
Schedule/CancelKeyDeletion, GetKeyLastUsage."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kms_core.errors import KMSError, validation
from kms_core.keytypes import operations as ops

from .. import last_usage, paging
from ..records import (
    DAY,
    DISABLED,
    ENABLED,
    PENDING_DELETION,
    PENDING_IMPORT,
    PENDING_REPLICA_DELETION,
    Params,
    RequestContext,
    Result,
    ts,
)
from ..repository import new_key_id, row_id
from ..templates import check_policy_document, default_policy
from .tags_policies import check_tags

if TYPE_CHECKING:
    from ..core import Engine


def _key_type(p: Params, region: str) -> tuple[str, str]:
    """(KeySpec, KeyUsage) for CreateKey: AWS's rules per spec (``keytypes.operations``)."""
    return ops.create_key_spec(p, region)


def _origin(p: Params) -> str:
    origin = p.get("Origin") or "AWS_KMS"
    if p.get("CustomKeyStoreId") is not None or origin in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"):
        raise KMSError("CustomKeyStoreNotFoundException",
                       "Custom key stores are not supported by this KMS engine.")
    if origin not in ("AWS_KMS", "EXTERNAL"):
        raise validation(f"Origin {origin} is not valid.")
    return origin


def new_key_policy_and_tags(eng: Engine, p: Params, ctx: RequestContext) -> tuple[str, list[tuple[str, str]]]:
    """What a new key starts with — CreateKey's, or ReplicateKey's replica in ``ctx``'s Region:
    the request's policy (checked, and the lockout check unless bypassed) or the default one,
    and its tags; kms:CreateKey is authorized in ``ctx``'s Region."""
    policy = p.get("Policy")
    if policy is None:
        policy = default_policy(eng.account(ctx))
    else:
        check_policy_document(policy)
    tag_list = check_tags(p.get("Tags") or [])
    eng.authorize("CreateKey", None, ctx, p)
    if p.get("Policy") is not None:
        eng.access.check_lockout(policy, ctx, bool(p.get("BypassPolicyLockoutSafetyCheck")))
    return policy, tag_list


def create_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    spec, usage = _key_type(p, eng.region(ctx))
    origin = _origin(p)
    account, region = eng.account(ctx), eng.region(ctx)
    policy, tag_list = new_key_policy_and_tags(eng, p, ctx)
    multi_region = bool(p.get("MultiRegion"))
    key_id = new_key_id(multi_region)
    external = origin == "EXTERNAL"
    values = {
        "key_id": row_id(key_id, region), "account_id": account, "region": region,
        "description": p.get("Description") or "", "creation_date": eng.now(),
        "key_state": PENDING_IMPORT if external else ENABLED, "key_manager": "CUSTOMER",
        "origin": origin, "key_spec": spec, "key_usage": usage, "rotation_enabled": False,
        "on_demand_rotations": 0, "current_version": 0 if external else 1, "policy": policy}
    if multi_region:  # every spec and both origins AWS allows (custom key stores refused above)
        values.update(mrk_id=key_id, primary_region=region)
    eng.repo.create_key(values, with_material=not external, tags=tag_list)
    rec = eng.get(key_id, ctx)
    assert rec is not None  # just written
    return {"KeyMetadata": eng.metadata(rec)}


def describe_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "DescribeKey", p)
    return {"KeyMetadata": eng.metadata(rec)}


def list_keys(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.authorize("ListKeys", None, ctx, p)
    eng.repo.purge_expired(eng.now())
    limit = paging.limit(p, 100)
    after = paging.marker(p, "keys")
    ids = eng.repo.key_ids(eng.account(ctx), eng.region(ctx), after, limit + 1)
    page, more = ids[:limit], len(ids) > limit
    out: Result = {"Keys": [{"KeyId": k, "KeyArn": eng.key_arn(k, ctx)} for k in page], "Truncated": more}
    if more:
        out["NextMarker"] = paging.make_marker(page[-1], "keys")
    return out


def update_key_description(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "UpdateKeyDescription", p)
    eng.repo.update_key(rec.row_id, description=p["Description"])
    return {}


def enable_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "EnableKey", p)
    if rec.key_state == ENABLED:
        return {}
    now = eng.now()
    if rec.rotation_enabled and rec.next_rotation_date is not None and rec.next_rotation_date <= now:
        # No rotation happens while disabled; an overdue one happens on re-enable.
        period = rec.rotation_period_days or 0
        eng.repo.add_version(rec.row_id, rec.key_spec, now, "AUTOMATIC", key_state=ENABLED,
                             next_rotation_date=now + period * DAY)
        return {}
    eng.repo.update_key(rec.row_id, key_state=ENABLED)
    return {}


def disable_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "DisableKey", p)
    if rec.key_state != DISABLED:
        eng.repo.update_key(rec.row_id, key_state=DISABLED)
    return {}


def schedule_key_deletion(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "ScheduleKeyDeletion", p)
    days = p.get("PendingWindowInDays")
    days = 30 if days is None else days  # 7–30 is enforced by the operation table
    if rec.multi_region and not rec.is_replica and len(rec.regions) > 1:
        # A primary with replicas waits for them: its own window starts when the last one is
        # deleted (repository._delete_key_rows), so there is no DeletionDate yet (AWS).
        eng.repo.update_key(rec.row_id, key_state=PENDING_REPLICA_DELETION, deletion_date=None,
                            pending_window_days=days)
        return {"KeyId": rec.arn, "KeyState": PENDING_REPLICA_DELETION, "PendingWindowInDays": days}
    deletion = eng.now() + days * DAY
    eng.repo.update_key(rec.row_id, key_state=PENDING_DELETION, deletion_date=deletion, pending_window_days=days)
    return {"KeyId": rec.arn, "DeletionDate": ts(deletion), "KeyState": PENDING_DELETION,
            "PendingWindowInDays": days}


def cancel_key_deletion(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "CancelKeyDeletion", p)
    state = PENDING_IMPORT if (rec.origin == "EXTERNAL" and not rec.materials) else DISABLED
    eng.repo.update_key(rec.row_id, key_state=state, deletion_date=None, pending_window_days=None)
    return {"KeyId": rec.arn}


def get_key_last_usage(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    """Read from the audit trail (``engine/last_usage.py``): nothing is written per request.
    Tracking starts when the audit log began recording, or at the key's creation if later;
    with no audit log, it has not started (TrackingStartDate is now)."""
    rec = eng.read_key(p["KeyId"], ctx, "GetKeyLastUsage", p)
    last_usage.flush(eng.auditor)
    began, used = last_usage.read(eng.store, rec.key_id, rec.region)
    start = max(rec.creation_date, eng.now() if began is None else began)
    out: Result = {"KeyId": rec.arn, "TrackingStartDate": ts(start),
                   "KeyCreationDate": ts(rec.creation_date)}
    if used is not None and used.timestamp >= start:
        usage: Result = {"Operation": used.operation, "Timestamp": ts(used.timestamp),
                         "CloudTrailEventId": used.event_id}
        if used.request_id:
            usage["KmsRequestId"] = used.request_id
        out["KeyLastUsage"] = usage
    return out

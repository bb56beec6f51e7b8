"""Multi-Region keys: ReplicateKey, UpdatePrimaryRegion (docs/key-types.md "Multi-Region keys").

A multi-Region key has one ``kms_keys`` row per Region (``repository.row_id``); the rows share
the key id, the material and the rotation columns (``repository.SHARED_COLUMNS``) and keep
their own policy, tags, aliases, grants, description, state and deletion schedule.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kms_core.errors import KMSError, not_found

from ..records import CREATING, ENABLED, PENDING_IMPORT, Params, RequestContext, Result
from ..repository import ReplicaExists, row_id
from .lifecycle import new_key_policy_and_tags

if TYPE_CHECKING:
    from ..core import Engine


def _not_primary(arn: str) -> KMSError:
    return KMSError("UnsupportedOperationException", f"{arn} is not a multi-region primary key.")


def replicate_key(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    """A replica in ``ReplicaRegion`` of the same store and account.  Checked: kms:ReplicateKey
    on the primary (its key policy, in the primary's Region) and kms:CreateKey in the replica
    Region (IAM-only: the external authorizer, when one is installed).  The replica is written
    at once; the response shows it ``Creating``, as AWS does, and every later read ``Enabled``
    (``PendingImport`` for imported material)."""
    rec = eng.admin_key(p["KeyId"], ctx, "ReplicateKey", p)
    if not rec.multi_region or rec.is_replica:
        raise _not_primary(rec.arn)
    target = p["ReplicaRegion"]
    if target == rec.region:
        raise KMSError("ValidationException",
                       f"The replica Region {target} must differ from the primary key's Region.")
    if target in rec.regions:
        raise KMSError("AlreadyExistsException",
                       f"Key 'arn:aws:kms:{target}:{rec.account_id}:key/{rec.key_id}' already exists")
    account = rec.account_id
    replica_ctx = dataclasses.replace(ctx, region=target, account_id=account)
    policy, tag_list = new_key_policy_and_tags(eng, p, replica_ctx)
    try:
        eng.repo.replicate(rec.key_id, {
            "key_id": row_id(rec.key_id, target), "account_id": account, "region": target,
            "description": p.get("Description") or "", "creation_date": eng.now(),
            "key_state": PENDING_IMPORT if rec.origin == "EXTERNAL" else ENABLED, "policy": policy},
            tags=tag_list)
    except ReplicaExists:
        raise KMSError("AlreadyExistsException",
                       f"Key 'arn:aws:kms:{target}:{account}:key/{rec.key_id}' already exists") from None
    replica = eng.get(rec.key_id, replica_ctx)
    assert replica is not None  # just written
    md = eng.metadata(replica)
    md["KeyState"], md["Enabled"] = CREATING, False
    return {"ReplicaKeyMetadata": md, "ReplicaPolicy": policy,
            "ReplicaTags": [{"TagKey": k, "TagValue": v} for k, v in tag_list]}


def update_primary_region(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    """The replica in ``PrimaryRegion`` becomes the primary, this primary a replica.  Both must
    be Enabled (the table's rule, applied to each); kms:UpdatePrimaryRegion on both."""
    rec = eng.admin_key(p["KeyId"], ctx, "UpdatePrimaryRegion", p)
    if not rec.multi_region or rec.is_replica:
        raise _not_primary(rec.arn)
    target = p["PrimaryRegion"]
    if target == rec.region:
        return {}  # already the primary there: nothing to change
    other_ctx = dataclasses.replace(ctx, region=target, account_id=rec.account_id)
    replica = eng.get(rec.key_id, other_ctx) if target in rec.regions else None
    if replica is None:
        raise not_found(f"Key 'arn:aws:kms:{target}:{rec.account_id}:key/{rec.key_id}' does not exist")
    eng.authorize("UpdatePrimaryRegion", replica, other_ctx, p)
    eng.check_state("UpdatePrimaryRegion", replica)
    eng.repo.update_key(rec.row_id, primary_region=target)
    return {}

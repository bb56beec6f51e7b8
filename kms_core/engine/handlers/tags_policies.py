"""Tags and key policies: TagResource, UntagResource, ListResourceTags, GetKeyPolicy,
ListKeyPolicies, PutKeyPolicy."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kms_core.errors import KMSError, not_found, validation

from .. import paging
from ..records import MAX_TAGS, Params, RequestContext, Result
from ..repository import TooMany
from ..templates import check_policy_document

if TYPE_CHECKING:
    from ..core import Engine


def _reserved(tag_key: str) -> bool:
    """AWS reserves the ``aws:`` prefix in any letter case (``AWS:``, ``Aws:``)."""
    return tag_key[:4].lower() == "aws:"


def check_tags(tag_list: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for t in tag_list:
        if not isinstance(t, dict) or "TagKey" not in t or "TagValue" not in t:
            raise validation("Each tag must have a TagKey and a TagValue.")
        k, v = t["TagKey"], t["TagValue"]  # lengths: the operation table
        if _reserved(k):
            raise KMSError("TagException", "Tags beginning with aws: are reserved")
        if k in seen:
            raise KMSError("TagException", "Duplicate tag keys")
        seen.add(k)
        out.append((k, v))
    if len(out) > MAX_TAGS:
        raise KMSError("TagException", "Too many tags")
    return out


def tag_resource(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "TagResource", p)
    new = check_tags(p["Tags"])
    try:
        eng.repo.put_tags(rec.row_id, new, MAX_TAGS)
    except TooMany:
        raise KMSError("TagException", "Too many tags") from None
    return {}


def untag_resource(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "UntagResource", p)
    keys = p["TagKeys"]
    for k in keys:
        if isinstance(k, str) and _reserved(k):
            raise KMSError("TagException", "Tags beginning with aws: are reserved")
    eng.repo.delete_tags(rec.row_id, keys)
    return {}


def list_resource_tags(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "ListResourceTags", p)
    limit = paging.limit(p, 50)
    kind = "tags:" + rec.key_id
    rows = eng.repo.tags(rec.row_id, paging.marker(p, kind), limit + 1)
    page, more = rows[:limit], len(rows) > limit
    out: Result = {"Tags": [{"TagKey": r.tag_key, "TagValue": r.tag_value} for r in page], "Truncated": more}
    if more:
        out["NextMarker"] = paging.make_marker(page[-1].tag_key, kind)
    return out


def _policy_name(p: Params) -> None:
    if (p.get("PolicyName") or "default") != "default":
        raise not_found("No such policy exists")


def get_key_policy(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "GetKeyPolicy", p)
    _policy_name(p)
    return {"Policy": rec.policy, "PolicyName": "default"}


def list_key_policies(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.read_key(p["KeyId"], ctx, "ListKeyPolicies", p)
    paging.marker(p, "policies")
    return {"PolicyNames": ["default"], "Truncated": False}


def put_key_policy(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.admin_key(p["KeyId"], ctx, "PutKeyPolicy", p)
    _policy_name(p)
    check_policy_document(p["Policy"])
    eng.access.check_lockout(p["Policy"], ctx, bool(p.get("BypassPolicyLockoutSafetyCheck")))
    eng.repo.update_key(rec.row_id, policy=p["Policy"])
    return {}

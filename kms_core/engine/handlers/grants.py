"""Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant."""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from kms_core import arn as arns
from kms_core.errors import KMSError, not_found, validation
from kms_core.model import OPERATIONS, shape
from kms_core.policy import _principal_match, access_denied

from .. import paging
from ..access import make_grant_token, parse_grant_token
from ..records import MAX_GRANTS_PER_KEY, KeyRecord, Params, RequestContext, Result, ts
from ..repository import TooMany, grant_from_row, public_id

if TYPE_CHECKING:
    from ..core import Engine

# Every grant operation (the GrantOperation enum) and the operation whose rules say
# which keys it suits: a grant operation is valid for a key when that operation
# accepts the key (ReEncryptFrom/To are ReEncrypt's two permissions).
GRANT_OPERATIONS: tuple[str, ...] = shape("GrantOperation").enum or ()
_GRANT_OP_RULES = {g: next(name for name, op in OPERATIONS.items() if f"kms:{g}" in op.permission)
                   for g in GRANT_OPERATIONS}


def grant_operations_for(rec: KeyRecord) -> frozenset[str]:
    """The grant operations that suit this key (its KeyUsage and KeySpec)."""
    out = set()
    for g, op_name in _GRANT_OP_RULES.items():
        req = OPERATIONS[op_name].requirement
        if req.key_usages is not None and rec.key_usage not in req.key_usages:
            continue
        if req.key_specs is not None and rec.key_spec not in req.key_specs:
            continue
        out.add(g)
    return frozenset(out)


def _check_operations(ops: list[str], rec: KeyRecord) -> None:
    if not ops:
        raise validation("1 validation error detected: Value '[]' at 'operations' failed to "
                         "satisfy constraint: Member must have length greater than or equal to 1")
    valid = grant_operations_for(rec)
    for op in ops:
        if op not in GRANT_OPERATIONS:
            raise validation(f"1 validation error detected: Value '[{', '.join(ops)}]' at 'operations' "
                             "failed to satisfy constraint: Member must satisfy constraint: "
                             f"[Member must satisfy enum value set: [{', '.join(sorted(GRANT_OPERATIONS))}]]")
        if op not in valid:
            raise validation(f"Grant operation {op} is not valid for a {rec.key_spec} key.")


def _check_constraints(cons: Any) -> None:
    if not cons:
        return
    if set(cons) - {"EncryptionContextSubset", "EncryptionContextEquals"}:
        raise validation("Constraints may only hold EncryptionContextSubset or EncryptionContextEquals.")
    for name, pairs in cons.items():
        if not isinstance(pairs, dict) or len(pairs) > 8 or any(
                not isinstance(v, str) or len(v) > 384 for v in pairs.values()):
            raise validation(f"{name} must hold at most 8 pairs with values of at most 384 characters.")


def check_principal(value: Any, field: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[\w+=,.@:/-]{1,256}", value):
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
                         "constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$")


def check_grant_principal(value: Any, field: str) -> str:
    """The member's pattern (ValidationException), then a principal a grant can name: a
    value such as ``"bob"`` or an IAM group ARN used to give a grant nobody could ever use
    (issue #15); AWS refuses it with InvalidArnException."""
    check_principal(value, field)
    if not arns.is_grant_principal(value):
        raise KMSError("InvalidArnException", f"{field[:1].upper()}{field[1:]} {value} is not a valid principal ARN.")
    return str(value)


def create_grant(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.resolve(p["KeyId"], ctx, "CreateGrant")
    eng.check_key("CreateGrant", rec)
    eng.check_state("CreateGrant", rec)
    ops = list(p["Operations"])
    _check_operations(ops, rec)
    cons = p.get("Constraints")
    _check_constraints(cons)
    grantee = check_grant_principal(p["GranteePrincipal"], "granteePrincipal")
    retiring = p.get("RetiringPrincipal")
    if retiring is not None:
        check_grant_principal(retiring, "retiringPrincipal")
    name = p.get("Name")
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9:/_-]{1,256}", name):
        raise validation(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                         "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")
    eng.authorize("CreateGrant", rec, ctx, p)
    eng.dry_run(p)
    same_as = {"GranteePrincipal": grantee, "RetiringPrincipal": retiring,
               "Operations": sorted(ops), "Constraints": cons or None}
    try:
        grant_id = eng.repo.create_grant(rec.row_id, {
            "name": name, "grantee_principal": grantee, "retiring_principal": retiring, "operations": json.dumps(ops),
            "constraints": json.dumps(cons) if cons else None, "issuing_account": eng.account(ctx),
            "creation_date": eng.now()}, same_as, MAX_GRANTS_PER_KEY)
    except TooMany:
        raise KMSError("LimitExceededException",
                       f"The key {rec.arn} already has {MAX_GRANTS_PER_KEY} grants.") from None
    return {"GrantToken": make_grant_token(grant_id), "GrantId": grant_id}


def _entry(g: dict[str, Any], key_arn: str) -> dict[str, Any]:
    out = {k: v for k, v in g.items() if v is not None}
    out["KeyId"] = key_arn
    out["CreationDate"] = ts(out["CreationDate"])
    return out


def list_grants(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec = eng.read_key(p["KeyId"], ctx, "ListGrants", p)
    grants = sorted(eng.repo.key_grants(rec.row_id), key=lambda g: g["GrantId"])
    if p.get("GrantId") is not None:
        grants = [g for g in grants if g["GrantId"] == p["GrantId"]]
    if p.get("GranteePrincipal") is not None:
        grants = [g for g in grants if g["GranteePrincipal"] == p["GranteePrincipal"]]
    return paging.page([_entry(g, rec.arn) for g in grants], "GrantId", p, 50, "Grants", "grants:" + rec.key_id)


def list_retirable_grants(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    retiring = p["RetiringPrincipal"]
    check_principal(retiring, "retiringPrincipal")
    entries = [_entry(grant_from_row(r), f"arn:aws:kms:{r['region']}:{r['account_id']}:key/{public_id(r['key_id'])}")
               for r in eng.repo.retirable_grants(retiring)]
    return paging.page(entries, "GrantId", p, 50, "Grants", "retirable:" + retiring)


def _grant_id(p: Params, operation: str) -> tuple[str, bool]:
    """The grant id the request names (by GrantToken or GrantId); True when by token."""
    token, grant_id, key_ref = p.get("GrantToken"), p.get("GrantId"), p.get("KeyId")
    if token is not None:
        parsed = parse_grant_token(token)
        if parsed is None:
            raise KMSError("InvalidGrantTokenException", "The grant token is not valid.")
        if grant_id is not None and grant_id != parsed:
            raise KMSError("InvalidGrantIdException", "The grant ID does not match the grant token.")
        grant_id = parsed
    if grant_id is None or (operation == "RevokeGrant" and key_ref is None):
        raise validation("Specify a GrantToken, or a KeyId and a GrantId.")
    if not re.fullmatch(r"[0-9a-f]{64}", grant_id):
        raise KMSError("InvalidGrantIdException", "The grant ID is not valid.")
    return grant_id, token is not None


def _find_grant(eng: Engine, p: Params, ctx: RequestContext, operation: str) -> tuple[KeyRecord, dict[str, Any]]:
    grant_id, by_token = _grant_id(p, operation)
    row = eng.repo.grant(grant_id)
    key_ref = p.get("KeyId")
    rec: KeyRecord | None = None
    if key_ref is not None:
        rec = eng.resolve(key_ref, ctx, operation)
        if row is not None and row["key_id"] != rec.row_id:
            row = None
    elif row is not None:
        rec = eng.get(public_id(row["key_id"]), ctx)
    if row is None or rec is None:
        raise not_found("The grant token does not identify a grant." if by_token else "Grant ID not found")
    return rec, grant_from_row(row)


def retire_grant(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec, g = _find_grant(eng, p, ctx, "RetireGrant")
    eng.authorize("RetireGrant", rec, ctx, p)
    principal = ctx.principal
    if principal is not None:
        account = eng.account(ctx)
        ok = (principal == f"arn:aws:iam::{account}:root"
              or (g.get("RetiringPrincipal") and _principal_match(g["RetiringPrincipal"], principal, account))
              or ("RetireGrant" in g["Operations"] and _principal_match(g["GranteePrincipal"], principal, account)))
        if not ok:
            raise access_denied(principal, "kms:RetireGrant", rec.arn, explicit=False)
    eng.dry_run(p)
    eng.repo.delete_grant(rec.row_id, g["GrantId"])
    return {}


def revoke_grant(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    rec, g = _find_grant(eng, p, ctx, "RevokeGrant")
    eng.authorize("RevokeGrant", rec, ctx, p)
    eng.deny_if_managed("RevokeGrant", rec, ctx)
    eng.dry_run(p)
    eng.repo.delete_grant(rec.row_id, g["GrantId"])
    return {}

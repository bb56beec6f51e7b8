"""Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kms_core import arn as arns
from kms_core.errors import KMSError, not_found, validation
from kms_core.policy import access_denied

from .. import paging
from ..records import MANAGED_SERVICES, MAX_ALIASES_PER_KEY, KeyRecord, Params, RequestContext, Result, ts
from ..repository import AliasExists, TooMany

if TYPE_CHECKING:
    from ..core import Engine


def check_alias_name(name: Any) -> str:
    if not isinstance(name, str) or not name.startswith("alias/"):
        raise validation('Alias must start with the prefix "alias/". Please see '
                         "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
    if not arns.ALIAS_NAME.fullmatch(name) or len(name) > 256:
        raise validation(f"1 validation error detected: Value '{name}' at 'aliasName' failed to "
                         "satisfy constraint: Member must satisfy regular expression pattern: "
                         "^[a-zA-Z0-9:/_-]+$")
    if name == "alias/" or name.endswith("/"):
        raise KMSError("InvalidAliasNameException", f"Alias name {name} is not valid.")
    if name.startswith("alias/aws/") or name == "alias/aws":
        raise KMSError("InvalidAliasNameException",
                       "Alias names that begin with alias/aws/ are reserved for AWS managed keys.")
    return name


def _target_key(eng: Engine, ref: str, ctx: RequestContext, operation: str, p: Params) -> KeyRecord:
    rec = eng.resolve(ref, ctx, operation)
    eng.authorize(operation, rec, ctx, p)
    if rec.key_manager == "AWS":  # an AWS-managed key can be no alias's target
        raise access_denied(eng.principal(ctx), "kms:" + operation, rec.arn, explicit=False)
    eng.check_state(operation, rec)
    return rec


def create_alias(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    name = check_alias_name(p["AliasName"])
    rec = _target_key(eng, p["TargetKeyId"], ctx, "CreateAlias", p)
    try:
        eng.repo.create_alias(eng.account(ctx), eng.region(ctx), name, rec.key_id, eng.now(), MAX_ALIASES_PER_KEY)
    except AliasExists:
        raise KMSError("AlreadyExistsException",
                       f"An alias with the name {eng.alias_arn(name, ctx)} already exists") from None
    except TooMany:
        raise KMSError("LimitExceededException",
                       f"The key {rec.arn} already has the maximum of {MAX_ALIASES_PER_KEY} aliases.") from None
    return {}


def update_alias(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    name = check_alias_name(p["AliasName"])
    current = eng.repo.alias_target(eng.account(ctx), eng.region(ctx), name)
    if current is None:
        raise not_found(f"Alias {eng.alias_arn(name, ctx)} is not found.")
    # kms:UpdateAlias on the key the alias names now AND on the new key (issue #15):
    # otherwise anyone could repoint an application's alias to a key of their own.
    old = eng.get(current, ctx, settle=False)
    eng.authorize("UpdateAlias", old, ctx, p)
    rec = _target_key(eng, p["TargetKeyId"], ctx, "UpdateAlias", p)
    if old is not None and (old.key_spec != rec.key_spec or old.key_usage != rec.key_usage):
        raise validation(f"Alias {eng.alias_arn(name, ctx)} cannot be changed from a "
                         f"{old.key_spec}/{old.key_usage} key to a {rec.key_spec}/{rec.key_usage} key: "
                         "the new target must have the same key spec and key usage.")
    eng.repo.update_alias(eng.account(ctx), eng.region(ctx), name, rec.key_id, eng.now())
    return {}


def delete_alias(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    """kms:DeleteAlias on the key the alias names (the alias itself is an IAM resource)."""
    name = check_alias_name(p["AliasName"])
    target = eng.repo.alias_target(eng.account(ctx), eng.region(ctx), name)
    if target is None:
        raise not_found(f"Alias {eng.alias_arn(name, ctx)} is not found.")
    rec = eng.get(target, ctx, settle=False)
    eng.authorize("DeleteAlias", rec, ctx, p)
    eng.repo.delete_alias(eng.account(ctx), eng.region(ctx), name)
    return {}


def list_aliases(eng: Engine, p: Params, ctx: RequestContext) -> Result:
    eng.repo.purge_expired(eng.now())
    paging.marker(p, "aliases")  # a bad marker is reported before anything else
    key_filter = p.get("KeyId")
    key_id = None
    if key_filter is not None:
        rec = eng.read_key(key_filter, ctx, "ListAliases", p)
        key_id = rec.key_id
    else:
        eng.authorize("ListAliases", None, ctx, p)
    rows = {r["alias_name"]: r for r in eng.repo.aliases(eng.account(ctx), eng.region(ctx), key_id)}
    entries: list[dict[str, Any]] = [
        {"AliasName": name, "AliasArn": eng.alias_arn(name, ctx), "TargetKeyId": r["target_key_id"],
         "CreationDate": ts(r["creation_date"]), "LastUpdatedDate": ts(r["last_updated"])}
        for name, r in rows.items()]
    if key_filter is None:  # predefined AWS aliases exist before their keys do
        for service in MANAGED_SERVICES:
            name = f"alias/aws/{service}"
            if name not in rows:
                entries.append({"AliasName": name, "AliasArn": eng.alias_arn(name, ctx)})
    entries.sort(key=lambda e: e["AliasName"])
    return paging.page(entries, "AliasName", p, 50, "Aliases", "aliases")

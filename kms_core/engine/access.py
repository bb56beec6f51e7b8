"""Authorization: key policy, then grants, for one permission on one key.

A client that names no principal is the trusted local application (docs/policies.md) and
is not evaluated.  Which operations a key policy governs and which permission each needs
come from the operation table.
"""
from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING, Any

from kms_core import arn as arns
from kms_core.errors import KMSError
from kms_core.model import OPERATIONS
from kms_core.policy import _principal_match, access_denied, parse_policy

from .records import DEFAULT_ROTATION_DAYS, SYMMETRIC, KeyRecord, Params, RequestContext

if TYPE_CHECKING:
    from .core import Engine

# A permission is authorised against its own encryption context (ReEncrypt has two).
_CONTEXT_PARAM = {"ReEncryptFrom": "SourceEncryptionContext",
                  "ReEncryptTo": "DestinationEncryptionContext"}
# Permissions for which the kms:EncryptionAlgorithm condition key is set.
_ALGORITHM_KEYED = frozenset({"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                              "GenerateDataKeyWithoutPlaintext"})
# The request parameter naming that algorithm (absent: SYMMETRIC_DEFAULT, AWS's default).
_ALGORITHM_PARAM = {"Encrypt": "EncryptionAlgorithm", "Decrypt": "EncryptionAlgorithm",
                    "ReEncryptFrom": "SourceEncryptionAlgorithm", "ReEncryptTo": "DestinationEncryptionAlgorithm"}
# Other condition keys taken from the request: permission -> ((condition key, parameter, default), ...).
_REQUEST_KEYED = {
    "Sign": (("kms:SigningAlgorithm", "SigningAlgorithm", None), ("kms:MessageType", "MessageType", "RAW")),
    "Verify": (("kms:SigningAlgorithm", "SigningAlgorithm", None), ("kms:MessageType", "MessageType", "RAW")),
    "GenerateMac": (("kms:MacAlgorithm", "MacAlgorithm", None),),
    "VerifyMac": (("kms:MacAlgorithm", "MacAlgorithm", None),),
    "DeriveSharedSecret": (("kms:KeyAgreementAlgorithm", "KeyAgreementAlgorithm", None),),
    "GenerateDataKeyPair": (("kms:DataKeyPairSpec", "KeyPairSpec", None),),
    "GenerateDataKeyPairWithoutPlaintext": (("kms:DataKeyPairSpec", "KeyPairSpec", None),),
}
_DECISIONS_MAX = 65536

GRANT_TOKEN_PREFIX = "KMSGT1"


def make_grant_token(grant_id: str) -> str:
    # Not secret (as AWS's): names the grant, with random bytes so each call's token differs.
    raw = bytes.fromhex(grant_id) + os.urandom(16)
    return GRANT_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_grant_token(token: Any) -> str | None:
    """The grant id a token names, or None if it is not a token."""
    if not isinstance(token, str) or not token.startswith(GRANT_TOKEN_PREFIX):
        return None
    body = token[len(GRANT_TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw[:32].hex() if len(raw) == 48 else None


def grant_is_narrower(params: Params, parent: dict[str, Any]) -> bool:
    """A grantee holding CreateGrant may only grant a subset of its operations
    under equal or stricter constraints."""
    if not set(params.get("Operations") or []) <= set(parent["Operations"]):
        return False
    pc = parent.get("Constraints") or {}
    nc = params.get("Constraints") or {}
    if "EncryptionContextEquals" in pc:
        return bool(nc.get("EncryptionContextEquals") == pc["EncryptionContextEquals"])
    if "EncryptionContextSubset" in pc:
        want = pc["EncryptionContextSubset"]
        have = nc.get("EncryptionContextEquals") or nc.get("EncryptionContextSubset") or {}
        return all(have.get(k) == v for k, v in want.items())
    return True


def _constraints_hold(cons: dict[str, Any], ec: dict[str, Any]) -> bool:
    if "EncryptionContextEquals" in cons and ec != cons["EncryptionContextEquals"]:
        return False
    return not ("EncryptionContextSubset" in cons and any(
        ec.get(k) != v for k, v in cons["EncryptionContextSubset"].items()))


class Authorizer:
    """Key policy + grants for one engine (caches policy decisions per policy text)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._decisions: dict[tuple[str, str, str], str] = {}

    def authorize(self, operation: str, rec: KeyRecord | None, ctx: RequestContext, params: Params,
                  permission: str | None = None) -> None:
        """Raise AccessDeniedException unless ``ctx``'s principal may perform ``permission``
        (by default the operation's only one) on ``rec``."""
        tokens = params.get("GrantTokens")
        if tokens:
            for t in tokens:
                if parse_grant_token(t) is None:
                    raise KMSError("InvalidGrantTokenException", "The grant token is not valid.")
        eng = self.engine
        principal = ctx.principal
        if principal is None and eng.authorizer is None:
            return  # the trusted local application (the hot path: nothing to evaluate)
        action = permission or OPERATIONS[operation].permission[0]
        name = action[len("kms:"):]
        if eng.authorizer is not None:
            eng.authorizer(name, rec, ctx, params)
        if principal is None or rec is None or not OPERATIONS[operation].key_policy:
            return
        policy = parse_policy(rec.policy)
        account = eng.account(ctx)
        if policy.has_conditions:
            decision = policy.decide(principal, account, action, self._condition_context(name, rec, ctx, params))
        else:
            k = (rec.policy, principal, action)
            found = self._decisions.get(k)
            if found is None:
                found = policy.decide(principal, account, action, {})
                if len(self._decisions) > _DECISIONS_MAX:
                    self._decisions.clear()
                self._decisions[k] = found
            decision = found
        if decision == "Allow":
            return
        if decision == "Deny":
            raise access_denied(principal, action, rec.arn, explicit=True)
        if self.grant_allows(name, rec, ctx, params):
            return
        raise access_denied(principal, action, rec.arn, explicit=False)

    def _condition_context(self, name: str, rec: KeyRecord, ctx: RequestContext, params: Params) -> dict[str, Any]:
        eng = self.engine
        principal = ctx.principal or ""
        account = arns.principal_account(principal)
        # Only a caller that acts for a service (a service access key, docs/policies.md) has
        # kms:ViaService: an AWS-managed key's policy refuses everyone else, as in AWS.
        via = ctx.via_service
        c: dict[str, Any] = {
            "kms:CallerAccount": account or eng.account(ctx),
            "aws:PrincipalArn": principal, "aws:PrincipalAccount": account,
            "aws:SourceIp": ctx.source_ip, "kms:ViaService": via,
            "kms:KeySpec": rec.key_spec, "kms:KeyUsage": rec.key_usage, "kms:KeyOrigin": rec.origin,
            "kms:GrantIsForAWSResource": "true" if ctx.via_service else "false",
            # Multi-Region keys: the key's kind, and the Region a request names.
            "kms:MultiRegion": "true" if rec.multi_region else "false",
            "kms:MultiRegionKeyType": ("REPLICA" if rec.is_replica else "PRIMARY") if rec.multi_region else None,
        }
        ec = params.get(_CONTEXT_PARAM.get(name, "EncryptionContext"))
        if name == "CreateGrant":
            cons = params.get("Constraints") or {}
            ec = cons.get("EncryptionContextEquals") or cons.get("EncryptionContextSubset")
            c["kms:GrantOperations"] = list(params.get("Operations") or [])
        if isinstance(ec, dict):
            for k, v in ec.items():
                c["kms:EncryptionContext:" + k] = v
            c["kms:EncryptionContextKeys"] = list(ec)
        if name in _ALGORITHM_KEYED:
            c["kms:EncryptionAlgorithm"] = params.get(_ALGORITHM_PARAM.get(name, "")) or SYMMETRIC
        for key, param, default in _REQUEST_KEYED.get(name, ()):
            c[key] = params.get(param) or default
        ref = params.get("KeyId") or params.get("DestinationKeyId")
        alias = arns.alias_of(ref) if isinstance(ref, str) else None
        if alias is not None:
            c["kms:RequestAlias"] = alias
        if name == "ScheduleKeyDeletion":
            c["kms:ScheduleKeyDeletionPendingWindowInDays"] = params.get("PendingWindowInDays", 30)
        if name == "ReplicateKey":
            c["kms:ReplicaRegion"] = params.get("ReplicaRegion")
        if name == "UpdatePrimaryRegion":
            c["kms:PrimaryRegion"] = params.get("PrimaryRegion")
        if name == "EnableKeyRotation":
            c["kms:RotationPeriodInDays"] = params.get("RotationPeriodInDays", DEFAULT_ROTATION_DAYS)
        return {k: v for k, v in c.items() if v is not None}

    def grant_allows(self, name: str, rec: KeyRecord, ctx: RequestContext, params: Params) -> bool:
        """Whether a grant on ``rec`` gives ``ctx``'s principal the permission ``name``."""
        repo = self.engine.repo
        if self._grants_allow(name, repo.key_grants(rec.row_id), ctx, params):
            return True
        # A grant token makes its grant usable at once (AWS's contract), even where the new grant
        # has not reached this process's cache yet: read the key's grants again, once.
        tokens = params.get("GrantTokens") or ()
        named = {parse_grant_token(t) for t in tokens} - {None}
        if named - {g["GrantId"] for g in repo.key_grants(rec.row_id)}:
            repo.forget_grants(rec.row_id)
            return self._grants_allow(name, repo.key_grants(rec.row_id), ctx, params)
        return False

    def _grants_allow(self, name: str, grants: list[dict[str, Any]], ctx: RequestContext, params: Params) -> bool:
        ec = params.get(_CONTEXT_PARAM.get(name, "EncryptionContext")) or {}
        account = self.engine.account(ctx)
        principal = ctx.principal or ""
        for g in grants:
            if name not in g["Operations"] or not _principal_match(g["GranteePrincipal"], principal, account):
                continue
            if name == "CreateGrant":
                if grant_is_narrower(params, g):
                    return True
                continue
            cons = g.get("Constraints") or {}
            if name not in ("DescribeKey", "RetireGrant") and cons and not _constraints_hold(cons, ec):
                continue
            return True
        return False

    def check_lockout(self, policy_text: str, ctx: RequestContext, bypass: bool) -> None:
        """AWS's lockout safety check: the caller must be able to change the policy later."""
        if bypass or ctx.principal is None:
            return  # the trusted local application is never evaluated, so it cannot be locked out
        decision = parse_policy(policy_text).decide(ctx.principal, self.engine.account(ctx), "kms:PutKeyPolicy", {})
        if decision != "Allow":
            raise KMSError("MalformedPolicyDocumentException",
                           "The new key policy will not allow you to update the key policy in the future.")


__all__ = ["GRANT_TOKEN_PREFIX", "Authorizer", "grant_is_narrower", "make_grant_token", "parse_grant_token"]

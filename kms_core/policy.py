"""Key policies and grants: who may do what with a key.

Evaluation follows AWS's rules for a key policy plus grants:

* an explicit ``Deny`` in the key policy wins;
* otherwise an ``Allow`` statement of the key policy, or a grant, allows;
* otherwise the request is implicitly denied.

There is no IAM here.  A statement whose principal is the account
(``arn:aws:iam::<account>:root`` or the bare account id) therefore stands for
every principal of that account, as if each held an administrator IAM policy
— so the default key policy lets every principal of the account manage and
use the key, and a policy without that statement limits the key to the
principals it names (docs/policies.md).

The in-process client evaluates policies only when it is told which principal
it acts as (``kms_core.client(principal=...)``); the server always knows.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from .arn import principal_account, root_account
from .errors import KMSError

# Which operations a key policy governs is the operation table's (Operation.key_policy).

ADMIN_ACTIONS = ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                 "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                 "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                 "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"]
USER_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                "kms:DescribeKey"]
GRANT_ACTIONS = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]



def console_policy(account_id: str, *, administrators: Iterable[str] = (),
                   users: Iterable[str] = (), allow_account: bool = True,
                   imported: bool = False) -> str:
    """The key policy the AWS console writes for the chosen administrators and users."""
    statements: list[dict] = []
    if allow_account:
        statements.append({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                           "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                           "Action": "kms:*", "Resource": "*"})
    admins, users = list(administrators), list(users)
    if admins:
        actions = ADMIN_ACTIONS + (["kms:ImportKeyMaterial"] if imported else [])
        statements.append({"Sid": "Allow access for Key Administrators", "Effect": "Allow",
                           "Principal": {"AWS": admins}, "Action": actions, "Resource": "*"})
    if users:
        statements.append({"Sid": "Allow use of the key", "Effect": "Allow",
                           "Principal": {"AWS": users}, "Action": USER_ACTIONS, "Resource": "*"})
        statements.append({"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
                           "Principal": {"AWS": users}, "Action": GRANT_ACTIONS, "Resource": "*",
                           "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}})
    return json.dumps({"Version": "2012-10-17", "Id": "key-consolepolicy-3",
                       "Statement": statements}, indent=2)


def _malformed(msg: str) -> KMSError:
    return KMSError("MalformedPolicyDocumentException", msg)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Statement:
    __slots__ = ("actions", "conditions", "effect", "not_actions", "not_principals", "principals")

    def __init__(self, st: dict):
        self.effect = st["Effect"]
        self.principals = self._principals(st.get("Principal"))
        self.not_principals = self._principals(st.get("NotPrincipal")) if "NotPrincipal" in st else None
        self.actions = [a.lower() for a in _as_list(st.get("Action"))] if "Action" in st else None
        self.not_actions = [a.lower() for a in _as_list(st.get("NotAction"))] if "NotAction" in st else None
        cond = st.get("Condition") or {}
        if not isinstance(cond, dict):
            raise _malformed("Condition must be an object.")
        self.conditions = []
        for op, block in cond.items():
            if not isinstance(block, dict):
                raise _malformed(f"Condition {op} must map keys to values.")
            for key, values in block.items():
                self.conditions.append((op, key, [_cond_str(v) for v in _as_list(values)]))
                _check_operator(op)

    @staticmethod
    def _principals(p: Any) -> list[str]:
        if p is None:
            return []
        if p == "*":
            return ["*"]
        if not isinstance(p, dict):
            raise _malformed("Principal must be \"*\" or an object such as {\"AWS\": [...]}.")
        out = []
        for kind, values in p.items():
            for v in _as_list(values):
                if not isinstance(v, str):
                    raise _malformed("Principal values must be strings.")
                out.append(v if kind == "AWS" else f"{kind}:{v}")
        return out

    def matches_principal(self, principal: str, account: str) -> bool:
        if self.not_principals is not None:
            return not any(_principal_match(p, principal, account) for p in self.not_principals)
        return any(_principal_match(p, principal, account) for p in self.principals)

    def matches_action(self, action: str) -> bool:
        a = action.lower()
        if self.not_actions is not None:
            return not any(_action_match(p, a) for p in self.not_actions)
        return any(_action_match(p, a) for p in self.actions or ())


def _cond_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise _malformed("Condition values must be strings, numbers or booleans.")


def _principal_match(pattern: str, principal: str, account: str) -> bool:
    if pattern == "*":
        return True
    if pattern == principal:
        return True
    acct = root_account(pattern)
    if acct is not None:
        # No IAM here: the account stands for all of its principals.
        return principal_account(principal) == acct
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(principal, pattern)
    return False


@lru_cache(maxsize=4096)
def _action_re(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$")


def _action_match(pattern: str, action: str) -> bool:
    return pattern == action or pattern == "*" or bool(_action_re(pattern).match(action))


_OPERATORS = {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase",
              "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike", "Bool", "Null",
              "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
              "NumericGreaterThan", "NumericGreaterThanEquals", "ArnEquals", "ArnLike",
              "ArnNotEquals", "ArnNotLike", "IpAddress", "NotIpAddress", "DateEquals",
              "DateLessThan", "DateGreaterThan"}


def _split_operator(op: str) -> tuple[str | None, str, bool]:
    quantifier = None
    if ":" in op:
        quantifier, op = op.split(":", 1)
        if quantifier not in ("ForAnyValue", "ForAllValues"):
            raise _malformed(f"Unknown condition quantifier {quantifier}.")
    if_exists = op.endswith("IfExists") and op != "IfExists"
    if if_exists:
        op = op[: -len("IfExists")]
    return quantifier, op, if_exists


def _check_operator(op: str) -> None:
    _, base, _ = _split_operator(op)
    if base not in _OPERATORS:
        raise _malformed(f"Unknown condition operator {op}.")


def _compare(base: str, actual: str, expected: str) -> bool:
    if base in ("StringEquals", "ArnEquals"):
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base in ("StringLike", "ArnLike"):
        return fnmatch.fnmatchcase(actual, expected)
    if base == "Bool":
        return actual.lower() == expected.lower()
    if base.startswith("Numeric"):
        try:
            a, e = float(actual), float(expected)
        except ValueError:
            return False
        return {"NumericEquals": a == e, "NumericLessThan": a < e, "NumericLessThanEquals": a <= e,
                "NumericGreaterThan": a > e, "NumericGreaterThanEquals": a >= e}[base]
    if base == "IpAddress":
        try:
            return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
        except ValueError:
            return False
    if base.startswith("Date"):
        return {"DateEquals": actual == expected, "DateLessThan": actual < expected,
                "DateGreaterThan": actual > expected}[base]
    return False


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
            "NumericNotEquals": "NumericEquals", "NotIpAddress": "IpAddress"}


def condition_holds(op: str, key: str, expected: list[str], context: dict[str, Any]) -> bool:
    quantifier, base, if_exists = _split_operator(op)
    actual = context.get(key)
    if actual is None:
        for k, v in context.items():  # condition keys are case-insensitive
            if k.lower() == key.lower():
                actual = v
                break
    if base == "Null":
        is_null = actual is None or actual == []
        return any((e.lower() == "true") == is_null for e in expected)
    if actual is None:
        return if_exists or base in _NEGATED
    negate = base in _NEGATED
    base = _NEGATED.get(base, base)
    values = actual if isinstance(actual, list) else [actual]
    values = [_cond_str(v) for v in values]
    if quantifier == "ForAllValues":
        result = all(any(_compare(base, v, e) for e in expected) for v in values)
    else:  # ForAnyValue and single-valued keys
        result = any(_compare(base, v, e) for v in values for e in expected)
    return not result if negate else result


class KeyPolicy:
    """A parsed key policy (cached per policy text)."""

    def __init__(self, text: str):
        try:
            doc = json.loads(text)
        except ValueError:
            raise _malformed("The policy is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise _malformed("The policy must be a JSON object.")
        sts = doc.get("Statement")
        if isinstance(sts, dict):
            sts = [sts]
        if not isinstance(sts, list) or not sts:
            raise _malformed("The policy must contain at least one Statement.")
        self.statements = []
        for st in sts:
            if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
                raise _malformed("Each policy statement must have an Effect of Allow or Deny.")
            if ("Action" in st) == ("NotAction" in st):
                raise _malformed("Each policy statement must have exactly one of Action or NotAction.")
            if "Principal" not in st and "NotPrincipal" not in st:
                raise _malformed("Each key policy statement must name a Principal.")
            for a in _as_list(st.get("Action", st.get("NotAction"))):
                if not isinstance(a, str) or not (a == "*" or a.lower().startswith("kms:")):
                    raise _malformed(f"Policy contains an action that is not a KMS action: {a!r}.")
            self.statements.append(Statement(st))
        self.has_conditions = any(s.conditions for s in self.statements)

    def decide(self, principal: str, account: str, action: str, context: dict) -> str:
        """'Deny', 'Allow' or 'Implicit'."""
        allowed = False
        for st in self.statements:
            if not st.matches_action(action) or not st.matches_principal(principal, account):
                continue
            if st.conditions and not all(condition_holds(op, k, v, context)
                                         for op, k, v in st.conditions):
                continue
            if st.effect == "Deny":
                return "Deny"
            allowed = True
        return "Allow" if allowed else "Implicit"


@lru_cache(maxsize=1024)
def parse_policy(text: str) -> KeyPolicy:
    return KeyPolicy(text)


def access_denied(principal: str, action: str, arn: str, explicit: bool) -> KMSError:
    why = ("with an explicit deny in a resource-based policy" if explicit
           else f"because no resource-based policy allows the {action} action")
    return KMSError("AccessDeniedException",
                    f"User: {principal} is not authorized to perform: {action} on resource: {arn} {why}")

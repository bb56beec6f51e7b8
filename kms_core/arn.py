"""Key ids, key ARNs, alias names, alias ARNs and IAM principal ARNs: the one parser.

AWS issues key ids as lower-case UUIDs (``1234abcd-12ab-34cd-56ef-1234567890ab``) and
matches them exactly: an id in another case is well formed but names no key, so it is
``NotFoundException: Key '<ARN>' does not exist``, never a silent match of the lower-case
key (reference kms-api.md §2.1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import not_found

# A UUID, or a multi-Region key id: ``mrk-`` + 32 lower-case hex digits.
KEY_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$")
_ANY_CASE_KEY_ID = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|mrk-[0-9a-fA-F]{32})$")
KMS_ARN = re.compile(r"^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(key|alias)/(.+)$")
ALIAS_NAME = re.compile(r"^[a-zA-Z0-9:/_-]+$")
# IAM users, roles, assumed-role sessions, the account root...: arn:aws:iam::<account>:...
PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}):(.+)$")
ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
ACCOUNT_ID = re.compile(r"^\d{12}$")


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A parsed key reference.  ``name`` is the key id (``kind == "key"``) or the alias name
    with its ``alias/`` prefix; ``region``/``account`` are set when it was an ARN."""

    kind: str
    name: str
    region: str | None = None
    account: str | None = None


def parse_key_ref(ref: str) -> KeyRef:
    """Parse a key id, key ARN, alias name or alias ARN (the forms KMS's ``KeyId`` takes).

    Raises NotFoundException with AWS's messages for what is none of them."""
    if ref.startswith("arn:"):
        m = KMS_ARN.fullmatch(ref)
        if not m:
            raise not_found(f"Invalid arn {ref}") if ":kms:" in ref else not_found(f"Invalid keyId '{ref}'")
        _, region, account, kind, rest = m.groups()
        if kind == "alias":
            return KeyRef("alias", "alias/" + rest, region, account)
        if not _ANY_CASE_KEY_ID.fullmatch(rest):
            raise not_found(f"Invalid keyId '{ref}'")
        return KeyRef("key", rest, region, account)
    if ref.startswith("alias/"):
        return KeyRef("alias", ref)
    if not _ANY_CASE_KEY_ID.fullmatch(ref):
        raise not_found(f"Invalid keyId '{ref}'")
    return KeyRef("key", ref)


def is_key_id(value: str) -> bool:
    """A key id as AWS issues it (lower-case UUID)."""
    return KEY_ID.fullmatch(value) is not None


def key_arn(region: str, account: str, key_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:key/{key_id}"


def alias_arn(region: str, account: str, alias_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:{alias_name}"


def alias_of(ref: str) -> str | None:
    """The alias name an alias name or alias ARN refers to, else None."""
    if ref.startswith("alias/"):
        return ref
    if ref.startswith("arn:") and ":alias/" in ref:
        return "alias/" + ref.split(":alias/", 1)[1]
    return None


def principal_account(principal: str) -> str | None:
    """The account of an IAM/STS principal ARN, else None."""
    m = PRINCIPAL_ARN.fullmatch(principal)
    return m.group(2) if m else None


def root_account(pattern: str) -> str | None:
    """The account an account principal names (``arn:aws:iam::<account>:root`` or the bare
    12-digit id), else None."""
    m = ACCOUNT_ROOT.fullmatch(pattern)
    if m:
        return m.group(1)
    return pattern if ACCOUNT_ID.fullmatch(pattern) else None


# What a key policy or a grant may name as a principal: "*", an account id, an IAM or STS
# ARN of an account, or a service principal ("Service:s3.amazonaws.com" once parsed).
_POLICY_PRINCIPAL = re.compile(r"\d{12}|arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+|\w+:[\w.-]+")


def is_policy_principal(value: str) -> bool:
    """A principal a key policy statement may name (besides ``*``)."""
    return _POLICY_PRINCIPAL.fullmatch(value) is not None


def is_grant_principal(value: str) -> bool:
    """A principal a grant may name (GranteePrincipal, RetiringPrincipal): an account
    (``arn:aws:iam::<account>:root`` or its 12-digit id), an IAM user or role, an assumed-role
    or federated-user session.  Not ``*``, not service principals, not IAM groups (which are
    no principals): AWS says a grant is for "Amazon Web Services accounts, IAM users, IAM
    roles, federated users, and assumed role users" (CreateGrant docs, reference §5.2)."""
    if ACCOUNT_ID.fullmatch(value):
        return True
    m = PRINCIPAL_ARN.fullmatch(value)
    return m is not None and _GRANTABLE_RESOURCE.fullmatch(f"{m.group(1)}:{m.group(3)}") is not None


# iam: root, user/..., role/...; sts: assumed-role/..., federated-user/...
_GRANTABLE_RESOURCE = re.compile(r"^(iam:(root|user/.+|role/.+)|sts:(assumed-role/.+|federated-user/.+))$")


__all__ = ["ACCOUNT_ID", "ACCOUNT_ROOT", "ALIAS_NAME", "KEY_ID", "KMS_ARN", "PRINCIPAL_ARN", "KeyRef",
           "alias_arn", "alias_of", "is_grant_principal", "is_key_id", "is_policy_principal", "key_arn",
           "parse_key_ref", "principal_account", "root_account"]

"""Key policy documents the engine writes (default and AWS-managed) and the check of the
ones callers send."""
from __future__ import annotations

import json
from typing import Any

from kms_core import arn as arns
from kms_core.errors import KMSError
from kms_core.policy import KeyPolicy, parse_policy

MAX_POLICY_BYTES = 32768


def default_policy(account_id: str) -> str:
    return json.dumps({
        "Version": "2012-10-17", "Id": "key-default-1",
        "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                       "Action": "kms:*", "Resource": "*"}]}, indent=2)


def managed_policy(account_id: str, region: str, service: str) -> str:
    via = f"{service}.{region}.amazonaws.com"
    return json.dumps({
        "Version": "2012-10-17", "Id": f"auto-{service}-1",
        "Statement": [
            {"Sid": f"Allow access through {service} for all principals in the account that are "
                    f"authorized to use {service}",
             "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:CreateGrant", "kms:DescribeKey"],
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": via, "kms:CallerAccount": account_id}}},
            {"Sid": "Allow direct access to key metadata to the account", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
             "Resource": "*"}]}, indent=2)


def check_policy_document(policy: Any) -> KeyPolicy:
    """Parse a key policy; MalformedPolicyDocumentException if it is not one."""
    if not isinstance(policy, str):
        raise KMSError("MalformedPolicyDocumentException", "The policy must be a JSON string.")
    if len(policy.encode("utf-8")) > MAX_POLICY_BYTES:
        raise KMSError("LimitExceededException", "The key policy exceeds the 32 KB quota.")
    doc = parse_policy(policy)
    for st in doc.statements:
        for pr in (st.principals or []) + (st.not_principals or []):
            if pr != "*" and not arns.is_policy_principal(pr):
                raise KMSError("MalformedPolicyDocumentException",
                               "Policy contains a statement with one or more invalid principals.")
    return doc


__all__ = ["check_policy_document", "default_policy", "managed_policy"]

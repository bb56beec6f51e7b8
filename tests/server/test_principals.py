"""The SigV4 caller is the principal the engine's key policies judge."""
from __future__ import annotations

import json

import botocore.exceptions
import pytest

ACCOUNT = "111122223333"


def test_key_policy_sees_the_access_keys_user(server):
    alice = server.client(server.create_access_key("policy-alice"))
    bob = server.client(server.create_access_key("policy-bob"))
    alice_arn = f"arn:aws:iam::{ACCOUNT}:user/policy-alice"
    bob_arn = f"arn:aws:iam::{ACCOUNT}:user/policy-bob"
    # No account statement: only the principals named here may act on the key.
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": alice_arn}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "use", "Effect": "Allow", "Principal": {"AWS": bob_arn},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]}
    key_id = alice.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]

    blob = bob.encrypt(KeyId=key_id, Plaintext=b"for bob")["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"for bob"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.disable_key(KeyId=key_id)
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDeniedException"
    assert bob_arn in err["Message"] and "kms:DisableKey" in err["Message"]

    carol = server.client(server.create_access_key("policy-carol"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        carol.encrypt(KeyId=key_id, Plaintext=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    alice.disable_key(KeyId=key_id)

"""The operation table decides: change a rule in ``kms_core.model.OPERATIONS`` and the
engine's answer changes (one test per kind of rule: key states, alias acceptance,
permission, key policy or IAM-only, accepted keys by usage / spec / origin, AWS-managed
keys, managed-key creation, dispatch)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

import kms_core
from kms_core import model
from kms_core.model import KeyRequirement
from kms_core.policy import console_policy

ACCOUNT = "111122223333"
USER = f"arn:aws:iam::{ACCOUNT}:user/app"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"


def code(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return str(e.value.response["Error"]["Code"])


@pytest.fixture
def op(monkeypatch):
    """``op("Encrypt", key_state_rule="any")`` changes one rule for the test."""
    def change(name: str, **fields):
        for field, value in fields.items():
            monkeypatch.setattr(model.OPERATIONS[name], field, value)
    return change


def test_key_state_rule(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key)
    assert code(lambda: kms.encrypt(KeyId=key, Plaintext=b"x")) == "DisabledException"
    kms.describe_key(KeyId=key)
    op("Encrypt", key_state_rule="any")
    op("DescribeKey", key_state_rule="usable")
    assert kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert code(lambda: kms.describe_key(KeyId=key)) == "DisabledException"


def test_key_state_rule_table_entries(kms, op, monkeypatch):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setitem(model.KEY_STATE_RULES, "usable",
                        {"Enabled": ("KMSInvalidStateException", "{arn} is in use.")})
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert e.value.response["Error"]["Message"].endswith(f"key/{key} is in use.")


def test_alias_acceptance(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/table", TargetKeyId=key)
    assert code(lambda: kms.disable_key(KeyId="alias/table")) == "NotFoundException"
    kms.encrypt(KeyId="alias/table", Plaintext=b"x")
    op("DisableKey", alias_ok=True)
    op("Encrypt", alias_ok=False)
    kms.disable_key(KeyId="alias/table")
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=key)
    assert code(lambda: kms.encrypt(KeyId="alias/table", Plaintext=b"x")) == "NotFoundException"


def test_permission(kms, make_client, op):
    policy = console_policy(ACCOUNT, administrators=[ADMIN], users=[USER], allow_account=False)
    key = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    admin = make_client(principal=ADMIN)
    assert code(lambda: admin.encrypt(KeyId=key, Plaintext=b"x")) == "AccessDeniedException"
    op("Encrypt", permission=("kms:DescribeKey",))  # which the administrators hold
    assert admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    op("DescribeKey", permission=("kms:Encrypt",))
    with pytest.raises(ClientError) as e:
        admin.describe_key(KeyId=key)
    assert "kms:Encrypt" in e.value.response["Error"]["Message"]


def test_key_policy_or_iam_only(kms, make_client, op):
    policy = console_policy(ACCOUNT, administrators=[ADMIN], allow_account=False)
    key = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    outsider = make_client(principal=USER)
    assert code(lambda: outsider.describe_key(KeyId=key)) == "AccessDeniedException"
    op("DescribeKey", key_policy=False)
    assert outsider.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key


def test_key_usage_requirement(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    op("Encrypt", requirement=KeyRequirement(key_usages=("SIGN_VERIFY",)))
    assert code(lambda: kms.encrypt(KeyId=key, Plaintext=b"x")) == "InvalidKeyUsageException"


def test_key_spec_requirement(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    op("GenerateDataKey", requirement=KeyRequirement(key_specs=("RSA_2048",),
                                                     spec_error="InvalidKeyUsageException"))
    op("EnableKeyRotation", requirement=KeyRequirement(key_specs=("HMAC_256",)))
    assert code(lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")) == "InvalidKeyUsageException"
    assert code(lambda: kms.enable_key_rotation(KeyId=key)) == "UnsupportedOperationException"


def test_origin_requirement(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key)
    op("DisableKeyRotation", requirement=KeyRequirement(origins=("EXTERNAL",)))
    assert code(lambda: kms.disable_key_rotation(KeyId=key)) == "UnsupportedOperationException"
    ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    op("GetParametersForImport", requirement=KeyRequirement(origins=("AWS_KMS",)))
    assert code(lambda: kms.get_parameters_for_import(
        KeyId=ext, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")) \
        == "UnsupportedOperationException"


def test_grant_operations_follow_the_requirements(kms, op):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    grant = {"KeyId": key, "GranteePrincipal": USER}
    assert code(lambda: kms.create_grant(Operations=["Sign"], **grant)) == "ValidationException"
    kms.create_grant(Operations=["GenerateDataKey"], **grant)
    op("Sign", requirement=KeyRequirement())
    op("GenerateDataKey", requirement=KeyRequirement(key_specs=("RSA_2048",)))
    kms.create_grant(Operations=["Sign"], **grant)
    assert code(lambda: kms.create_grant(Operations=["GenerateDataKey"], **grant)) == "ValidationException"


def test_aws_managed_keys(kms, op):
    managed = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]
    tag = {"KeyId": managed, "Tags": [{"TagKey": "a", "TagValue": "b"}]}
    assert code(lambda: kms.tag_resource(**tag)) == "AccessDeniedException"
    op("TagResource", aws_managed_ok=True)
    kms.tag_resource(**tag)
    op("DescribeKey", aws_managed_ok=False)  # DescribeKey reads: the rule is for changes only
    kms.describe_key(KeyId=managed)


def test_creates_managed_key(kms, op):
    op("DescribeKey", creates_managed_key=False)
    assert code(lambda: kms.describe_key(KeyId="alias/aws/ebs")) == "NotFoundException"
    op("DescribeKey", creates_managed_key=True)
    assert kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["KeyManager"] == "AWS"


def test_dispatch(make_engine, op):
    op("GenerateRandom", handler=None)
    op("ListKeys", handler="aliases")  # not there: the table names the module, the op its function
    with pytest.raises(AttributeError):
        make_engine()
    op("ListKeys", handler="lifecycle")
    engine = make_engine()
    assert "GenerateRandom" not in engine.operations and "ListKeys" in engine.operations
    kms = kms_core.client(engine=engine)
    assert code(lambda: kms.generate_random(NumberOfBytes=8)) == "UnsupportedOperationException"

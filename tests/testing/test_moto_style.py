"""A KMS suite written the way moto's own KMS tests are (``@mock_aws``, a
``boto3.client`` per test, ``ClientError`` assertions).  The import below is the
only line that differs from a moto suite; ``test_moto_parity.py`` runs this very
file under moto's ``mock_aws`` and checks that every test that fails there is
one where moto departs from AWS (docs/testing.md, "Differences").

Every assertion is AWS's behaviour (docs/testing.md lists the sources).
"""
from __future__ import annotations

import base64
import json
import unittest
from datetime import datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from kms_core.testing import mock_kms  # with moto: from moto import mock_aws as mock_kms

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def _code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


@pytest.fixture
def kms():
    with mock_kms():
        yield boto3.client("kms", region_name=REGION)


# -- create_key / describe_key -------------------------------------------------------

@mock_kms
def test_create_key():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key(Description="my key", KeyUsage="ENCRYPT_DECRYPT",
                          Tags=[{"TagKey": "project", "TagValue": "kms-local"}])
    meta = key["KeyMetadata"]
    assert meta["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{meta['KeyId']}"
    assert meta["AWSAccountId"] == ACCOUNT_ID
    assert isinstance(meta["CreationDate"], datetime)
    assert meta["Description"] == "my key"
    assert meta["Enabled"] is True
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["KeySpec"] == meta["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["Origin"] == "AWS_KMS"
    assert meta["MultiRegion"] is False


@mock_kms
def test_describe_key_by_id_arn_and_alias():
    conn = boto3.client("kms", region_name=REGION)
    meta = conn.create_key()["KeyMetadata"]
    conn.create_alias(AliasName="alias/my-key", TargetKeyId=meta["KeyId"])
    for ref in (meta["KeyId"], meta["Arn"], "alias/my-key",
                f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/my-key"):
        assert conn.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == meta["KeyId"]


@mock_kms
def test_describe_key_unknown():
    conn = boto3.client("kms", region_name=REGION)
    with pytest.raises(ClientError) as err:
        conn.describe_key(KeyId="alias/does-not-exist")
    assert _code(err) == "NotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@mock_kms
def test_create_key_malformed_policy():
    # moto accepts any text as a policy; AWS checks that it is a policy document.
    conn = boto3.client("kms", region_name=REGION)
    with pytest.raises(ClientError) as err:
        conn.create_key(Policy="my policy")
    assert _code(err) == "MalformedPolicyDocumentException"


@mock_kms
def test_get_key_policy_default():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    policy = json.loads(conn.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    principals = [s["Principal"] for s in policy["Statement"]]
    assert {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"} in principals
    assert conn.list_key_policies(KeyId=key_id)["PolicyNames"] == ["default"]


# -- encrypt / decrypt ---------------------------------------------------------------------

@mock_kms
def test_encrypt_decrypt_roundtrip():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    enc = conn.encrypt(KeyId=key["KeyId"], Plaintext=b"secret", EncryptionContext={"app": "x"})
    assert enc["KeyId"] == key["Arn"]
    assert enc["CiphertextBlob"] != b"secret"
    dec = conn.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"app": "x"})
    assert dec["Plaintext"] == b"secret"
    assert dec["KeyId"] == key["Arn"]
    assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"  # moto leaves it out


@mock_kms
def test_encrypt_with_alias():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    conn.create_alias(AliasName="alias/app", TargetKeyId=key["KeyId"])
    blob = conn.encrypt(KeyId="alias/app", Plaintext=b"data")["CiphertextBlob"]
    assert conn.decrypt(CiphertextBlob=blob)["KeyId"] == key["Arn"]


@mock_kms
def test_decrypt_wrong_context():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    blob = conn.encrypt(KeyId=key_id, Plaintext=b"data", EncryptionContext={"a": "1"})["CiphertextBlob"]
    with pytest.raises(ClientError) as err:
        conn.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "2"})
    assert _code(err) == "InvalidCiphertextException"


@mock_kms
def test_decrypt_with_other_key_id():
    # AWS: IncorrectKeyException.  moto: AccessDeniedException.
    conn = boto3.client("kms", region_name=REGION)
    first = conn.create_key()["KeyMetadata"]["KeyId"]
    second = conn.create_key()["KeyMetadata"]["KeyId"]
    blob = conn.encrypt(KeyId=first, Plaintext=b"data")["CiphertextBlob"]
    with pytest.raises(ClientError) as err:
        conn.decrypt(CiphertextBlob=blob, KeyId=second)
    assert _code(err) == "IncorrectKeyException"
    assert err.value.response["message"] == err.value.response["Error"]["Message"]


@mock_kms
def test_decrypt_garbage():
    # AWS: InvalidCiphertextException.  moto: AccessDeniedException.
    conn = boto3.client("kms", region_name=REGION)
    with pytest.raises(ClientError) as err:
        conn.decrypt(CiphertextBlob=b"x" * 64)
    assert _code(err) == "InvalidCiphertextException"


@mock_kms
def test_encrypt_with_disabled_key():
    # AWS refuses a disabled key; moto encrypts with it.
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    conn.disable_key(KeyId=key["KeyId"])
    assert conn.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(ClientError) as err:
        conn.encrypt(KeyId=key["KeyId"], Plaintext=b"data")
    assert _code(err) == "DisabledException"
    assert err.value.response["Error"]["Message"] == f"{key['Arn']} is disabled."
    conn.enable_key(KeyId=key["KeyId"])
    conn.encrypt(KeyId=key["KeyId"], Plaintext=b"data")


@mock_kms
def test_re_encrypt():
    conn = boto3.client("kms", region_name=REGION)
    a = conn.create_key()["KeyMetadata"]
    b = conn.create_key()["KeyMetadata"]
    blob = conn.encrypt(KeyId=a["KeyId"], Plaintext=b"data")["CiphertextBlob"]
    out = conn.re_encrypt(CiphertextBlob=blob, DestinationKeyId=b["KeyId"])
    assert out["SourceKeyId"] == a["Arn"] and out["KeyId"] == b["Arn"]
    assert conn.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"data"


# -- data keys, random ------------------------------------------------------------------------

@mock_kms
def test_generate_data_key():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    resp = conn.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert len(resp["Plaintext"]) == 32
    assert resp["KeyId"] == key["Arn"]
    assert conn.decrypt(CiphertextBlob=resp["CiphertextBlob"])["Plaintext"] == resp["Plaintext"]
    assert len(conn.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=64)["Plaintext"]) == 64
    without = conn.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_128")
    assert "Plaintext" not in without
    assert len(conn.decrypt(CiphertextBlob=without["CiphertextBlob"])["Plaintext"]) == 16


@mock_kms
def test_generate_data_key_invalid_arguments():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    for kwargs in ({}, {"KeySpec": "AES_256", "NumberOfBytes": 32}, {"NumberOfBytes": 2048}):
        with pytest.raises(ClientError) as err:
            conn.generate_data_key(KeyId=key_id, **kwargs)
        assert _code(err) == "ValidationException"


@mock_kms
def test_generate_random():
    conn = boto3.client("kms", region_name=REGION)
    first = conn.generate_random(NumberOfBytes=32)["Plaintext"]
    assert len(first) == 32 and first != conn.generate_random(NumberOfBytes=32)["Plaintext"]


# -- aliases -----------------------------------------------------------------------------------

@mock_kms
def test_aliases():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    other = conn.create_key()["KeyMetadata"]
    conn.create_alias(AliasName="alias/one", TargetKeyId=key["KeyId"])
    conn.create_alias(AliasName="alias/two", TargetKeyId=key["KeyId"])
    names = sorted(a["AliasName"] for a in conn.list_aliases(KeyId=key["KeyId"])["Aliases"])
    assert names == ["alias/one", "alias/two"]
    with pytest.raises(ClientError) as err:
        conn.create_alias(AliasName="alias/one", TargetKeyId=other["KeyId"])
    assert _code(err) == "AlreadyExistsException"
    conn.update_alias(AliasName="alias/one", TargetKeyId=other["KeyId"])
    assert conn.describe_key(KeyId="alias/one")["KeyMetadata"]["KeyId"] == other["KeyId"]
    conn.delete_alias(AliasName="alias/two")
    assert conn.list_aliases(KeyId=key["KeyId"])["Aliases"] == []


@mock_kms
def test_list_aliases_predefined_aws_aliases_have_no_target():
    # AWS lists its predefined alias/aws/* names with no TargetKeyId until the key is made.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    conn.create_alias(AliasName="alias/mine", TargetKeyId=key_id)
    aliases = conn.list_aliases()["Aliases"]
    assert [a["AliasName"] for a in aliases if not a["AliasName"].startswith("alias/aws/")] == ["alias/mine"]
    s3 = next(a for a in aliases if a["AliasName"] == "alias/aws/s3")
    assert "TargetKeyId" not in s3
    made = conn.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]
    s3 = next(a for a in conn.list_aliases()["Aliases"] if a["AliasName"] == "alias/aws/s3")
    assert s3["TargetKeyId"] == made


@mock_kms
def test_alias_reserved_prefix():
    # The whole alias/aws/ prefix is AWS's; moto accepts alias/aws/foo.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError):
        conn.create_alias(AliasName="alias/aws/foo", TargetKeyId=key_id)


@mock_kms
def test_aws_managed_key():
    # DescribeKey on alias/aws/<service> creates the AWS managed key (KeyManager AWS).
    conn = boto3.client("kms", region_name=REGION)
    meta = conn.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"


# -- list_keys ------------------------------------------------------------------------------------

@mock_kms
def test_list_keys():
    conn = boto3.client("kms", region_name=REGION)
    made = {conn.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)}
    listed = conn.list_keys()
    assert {k["KeyId"] for k in listed["Keys"]} == made
    assert listed["Truncated"] is False


@mock_kms
def test_list_keys_paginates():
    # moto ignores Limit.
    conn = boto3.client("kms", region_name=REGION)
    made = {conn.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)}
    page = conn.list_keys(Limit=2)
    assert len(page["Keys"]) == 2 and page["Truncated"] is True
    seen = {k["KeyId"] for p in conn.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1})
            for k in p["Keys"]}
    assert seen == made


@mock_kms
def test_keys_are_regional():
    east = boto3.client("kms", region_name="us-east-1")
    west = boto3.client("kms", region_name="us-west-2")
    key_id = east.create_key()["KeyMetadata"]["KeyId"]
    assert west.list_keys()["Keys"] == []
    with pytest.raises(ClientError) as err:
        west.describe_key(KeyId=key_id)
    assert _code(err) == "NotFoundException"


# -- tags ---------------------------------------------------------------------------------------------

@mock_kms
def test_tags():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key(Tags=[{"TagKey": "a", "TagValue": "1"}])["KeyMetadata"]["KeyId"]
    conn.tag_resource(KeyId=key_id, Tags=[{"TagKey": "b", "TagValue": "2"}])
    tags = conn.list_resource_tags(KeyId=key_id)["Tags"]
    assert sorted((t["TagKey"], t["TagValue"]) for t in tags) == [("a", "1"), ("b", "2")]
    conn.untag_resource(KeyId=key_id, TagKeys=["a"])
    assert conn.list_resource_tags(KeyId=key_id)["Tags"] == [{"TagKey": "b", "TagValue": "2"}]


@mock_kms
def test_tag_aws_prefix_refused():
    # moto accepts a tag key starting with aws:.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as err:
        conn.tag_resource(KeyId=key_id, Tags=[{"TagKey": "aws:owner", "TagValue": "x"}])
    assert _code(err) == "TagException"


# -- rotation -----------------------------------------------------------------------------------------

@mock_kms
def test_key_rotation_status():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    assert conn.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False
    conn.enable_key_rotation(KeyId=key_id)
    assert conn.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    conn.disable_key_rotation(KeyId=key_id)
    assert conn.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False


@mock_kms
def test_rotation_period_echoed():
    # moto ignores RotationPeriodInDays and returns only KeyRotationEnabled.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    conn.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    status = conn.get_key_rotation_status(KeyId=key_id)
    assert status["RotationPeriodInDays"] == 90
    assert isinstance(status["NextRotationDate"], datetime)


@mock_kms
def test_rotate_on_demand_keeps_old_ciphertexts():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    old = conn.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    conn.rotate_key_on_demand(KeyId=key_id)
    rotations = conn.list_key_rotations(KeyId=key_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert conn.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"


@mock_kms
def test_enable_rotation_on_disabled_key():
    # AWS: DisabledException; moto accepts it.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    conn.disable_key(KeyId=key_id)
    with pytest.raises(ClientError) as err:
        conn.enable_key_rotation(KeyId=key_id)
    assert _code(err) == "DisabledException"


# -- grants ---------------------------------------------------------------------------------------------

@mock_kms
def test_grants():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    grantee = f"arn:aws:iam::{ACCOUNT_ID}:role/app"
    grant = conn.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Decrypt", "Encrypt"],
                              Name="app-grant")
    assert grant["GrantId"] and grant["GrantToken"]
    listed = conn.list_grants(KeyId=key_id)["Grants"]
    assert [(g["GrantId"], g["GranteePrincipal"], sorted(g["Operations"])) for g in listed] == [
        (grant["GrantId"], grantee, ["Decrypt", "Encrypt"])]
    conn.revoke_grant(KeyId=key_id, GrantId=grant["GrantId"])
    assert conn.list_grants(KeyId=key_id)["Grants"] == []


@mock_kms
def test_grant_name_is_idempotent():
    # AWS returns the same grant for the same name and arguments; moto makes a new one.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    kwargs = {"KeyId": key_id, "GranteePrincipal": f"arn:aws:iam::{ACCOUNT_ID}:role/app",
              "Operations": ["Decrypt"], "Name": "same"}
    assert conn.create_grant(**kwargs)["GrantId"] == conn.create_grant(**kwargs)["GrantId"]
    assert len(conn.list_grants(KeyId=key_id)["Grants"]) == 1


@mock_kms
def test_retire_grant_with_token():
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    grant = conn.create_grant(KeyId=key_id, GranteePrincipal=f"arn:aws:iam::{ACCOUNT_ID}:role/app",
                              Operations=["Decrypt"])
    conn.retire_grant(GrantToken=grant["GrantToken"])
    assert conn.list_grants(KeyId=key_id)["Grants"] == []


# -- deletion -------------------------------------------------------------------------------------------

@mock_kms
def test_schedule_and_cancel_key_deletion():
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    resp = conn.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert resp["KeyId"] == key["Arn"] and resp["KeyState"] == "PendingDeletion"
    assert resp["PendingWindowInDays"] == 7
    meta = conn.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    assert isinstance(meta["DeletionDate"], datetime)
    conn.cancel_key_deletion(KeyId=key["KeyId"])
    meta = conn.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert meta["KeyState"] == "Disabled" and "DeletionDate" not in meta


@mock_kms
def test_pending_window_out_of_range():
    # AWS: 7–30 days.  moto returns 200 without a DeletionDate for 3.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as err:
        conn.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=3)
    assert _code(err) == "ValidationException"


@mock_kms
def test_encrypt_with_key_pending_deletion():
    # AWS: KMSInvalidStateException; moto encrypts.
    conn = boto3.client("kms", region_name=REGION)
    key = conn.create_key()["KeyMetadata"]
    conn.schedule_key_deletion(KeyId=key["KeyId"])
    with pytest.raises(ClientError) as err:
        conn.encrypt(KeyId=key["KeyId"], Plaintext=b"data")
    assert _code(err) == "KMSInvalidStateException"
    assert err.value.response["Error"]["Message"] == f"{key['Arn']} is pending deletion."


# -- key policies ------------------------------------------------------------------------------------------

@mock_kms
def test_put_key_policy_that_denies_encrypt():
    # AWS evaluates the key policy; moto only honours a Deny on kms:DescribeKey.
    conn = boto3.client("kms", region_name=REGION)
    key_id = conn.create_key()["KeyMetadata"]["KeyId"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "kms:*",
         "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Encrypt", "Resource": "*"}]}
    conn.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
    with pytest.raises(ClientError) as err:
        conn.encrypt(KeyId=key_id, Plaintext=b"data")
    assert _code(err) == "AccessDeniedException"


# -- styles: fixture, context manager, class decorators ------------------------------------------------------

def test_fixture_style(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"data")["CiphertextBlob"]
    assert base64.b64encode(blob)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"data"


def test_context_manager_style():
    with mock_kms():
        conn = boto3.client("kms", region_name=REGION)
        conn.create_key()
        assert len(conn.list_keys()["Keys"]) == 1
    with mock_kms():  # a new mock starts empty
        assert boto3.client("kms", region_name=REGION).list_keys()["Keys"] == []


@mock_kms
class TestWithUnittest(unittest.TestCase):
    def setUp(self):
        self.conn = boto3.client("kms", region_name=REGION)
        self.key_id = self.conn.create_key()["KeyMetadata"]["KeyId"]

    def test_key_from_setup_is_visible(self):
        self.assertEqual(self.conn.describe_key(KeyId=self.key_id)["KeyMetadata"]["KeyState"], "Enabled")

    def test_each_test_starts_fresh(self):
        self.assertEqual(len(self.conn.list_keys()["Keys"]), 1)


@mock_kms
class TestPlainClass:
    def test_one(self):
        boto3.client("kms", region_name=REGION).create_key()
        assert len(boto3.client("kms", region_name=REGION).list_keys()["Keys"]) == 1

    def test_two(self):
        assert boto3.client("kms", region_name=REGION).list_keys()["Keys"] == []

"""mock_kms: which clients it catches, what it leaves alone, nesting, threads."""
from __future__ import annotations

import asyncio
import json
import os
import threading

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

import kms_core
from kms_core.testing import bypass, mock_kms

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1)


def test_every_kind_of_client_is_routed():
    # made before the mock starts (with credentials: none are in the environment yet)
    early = boto3.client("kms", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    with mock_kms() as mock:
        clients = [
            early,
            boto3.client("kms", region_name="us-east-1"),
            boto3.Session().client("kms", region_name="us-east-1"),
            botocore.session.get_session().create_client("kms", region_name="us-east-1"),
            boto3.client("kms", region_name="us-east-1", endpoint_url=DEAD),  # even one with its own endpoint
            kms_core.client(),  # the embedded client uses the mock's engine
        ]
        for c in clients:
            c.create_key()
        assert len(mock.engine.call("ListKeys", {})["Keys"]) == len(clients)


def test_aiobotocore_client_is_routed():
    from aiobotocore.session import get_session

    async def main():
        async with get_session().create_client("kms", region_name="us-west-2") as c:
            key = (await c.create_key())["KeyMetadata"]
            blob = (await c.encrypt(KeyId=key["KeyId"], Plaintext=b"a"))["CiphertextBlob"]
            assert (await c.decrypt(CiphertextBlob=blob))["Plaintext"] == b"a"
            with pytest.raises(c.exceptions.NotFoundException) as err:
                await c.describe_key(KeyId="alias/none")
            assert err.value.response["message"] == err.value.response["Error"]["Message"]
            return key["Arn"]

    with mock_kms():
        assert asyncio.run(main()).startswith("arn:aws:kms:us-west-2:123456789012:key/")


def test_decorated_coroutine_function():
    @mock_kms
    async def make_key():
        return boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyState"]

    assert asyncio.run(make_key()) == "Enabled"


def test_nothing_is_routed_without_a_mock():
    client = boto3.client("kms", region_name="us-east-1", endpoint_url=DEAD, config=NO_RETRY,
                          aws_access_key_id="a", aws_secret_access_key="b")
    with pytest.raises(EndpointConnectionError):
        client.list_keys()


def test_bypass_reaches_the_real_endpoint():
    with mock_kms():
        client = bypass(boto3.client("kms", region_name="us-east-1", endpoint_url=DEAD, config=NO_RETRY))
        with pytest.raises(EndpointConnectionError):
            client.list_keys()


def test_other_services_untouched_and_moto_s3_beside_it():
    from moto import mock_aws

    with mock_aws(), mock_kms() as mock:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket-1")
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        s3.put_object(Bucket="bucket-1", Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
        assert s3.get_object(Bucket="bucket-1", Key="k")["Body"].read() == b"x"
        # the key is ours (moto's KMS never saw it): AWS's MultiRegion member is there
        assert mock.engine.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyId"] == key_id
        assert "MultiRegion" in kms.describe_key(KeyId=key_id)["KeyMetadata"]


def test_nested_mocks_are_independent():
    with mock_kms() as outer:
        client = boto3.client("kms", region_name="us-east-1")
        key_id = client.create_key()["KeyMetadata"]["KeyId"]
        with mock_kms():
            assert client.list_keys()["Keys"] == []
            client.create_key()
            client.create_key()
        assert [k["KeyId"] for k in client.list_keys()["Keys"]] == [key_id]
        assert outer.engine.call("ListKeys", {})["Keys"][0]["KeyId"] == key_id


def test_same_mock_object_reentered():
    mock = mock_kms()
    with mock:
        boto3.client("kms", region_name="us-east-1").create_key()
        with mock:
            assert boto3.client("kms", region_name="us-east-1").list_keys()["Keys"] == []
        assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1
    with pytest.raises(RuntimeError):
        mock.stop()


def test_threads_share_the_active_mock():
    with mock_kms() as mock:
        client = boto3.client("kms", region_name="us-east-1")
        errors: list[BaseException] = []

        def work():
            try:
                for _ in range(10):
                    key_id = client.create_key()["KeyMetadata"]["KeyId"]
                    blob = client.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
                    assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(mock.engine.call("ListKeys", {"Limit": 1000})["Keys"]) == 60


def test_credentials_and_region_only_when_missing(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    with mock_kms(region="eu-central-1"):
        assert os.environ["AWS_DEFAULT_REGION"] == "eu-central-1"
        assert os.environ["AWS_ACCESS_KEY_ID"]
        arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        assert arn.startswith("arn:aws:kms:eu-central-1:")
    assert "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_DEFAULT_REGION" not in os.environ
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mine-secret")
    with mock_kms():
        assert os.environ["AWS_ACCESS_KEY_ID"] == "mine"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "mine"


def test_principal_option_evaluates_policies_and_grants():
    alice = "arn:aws:iam::123456789012:user/alice"
    with mock_kms() as admin:
        client = boto3.client("kms", region_name="us-east-1")
        key_id = client.create_key()["KeyMetadata"]["KeyId"]
        # The account statement acts as an administrator's IAM policy for everyone in the
        # account (docs/policies.md): it names no Decrypt, so only a grant can give alice that.
        admin_actions = ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:CreateGrant", "kms:Encrypt", "kms:DescribeKey"]
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": admin_actions,
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": alice}, "Action": "kms:Encrypt", "Resource": "*"}]}
        client.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
        blob = client.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
        with mock_kms(engine=admin.engine, principal=alice):
            as_alice = boto3.client("kms", region_name="us-east-1")
            as_alice.encrypt(KeyId=key_id, Plaintext=b"p")
            with pytest.raises(ClientError) as err:
                as_alice.decrypt(CiphertextBlob=blob)
            assert err.value.response["Error"]["Code"] == "AccessDeniedException"
        client.create_grant(KeyId=key_id, GranteePrincipal=alice, Operations=["Decrypt"])
        with mock_kms(engine=admin.engine, principal=alice):
            assert boto3.client("kms", region_name="us-east-1").decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


def test_existing_store_option(tmp_path, monkeypatch):
    import base64
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(os.urandom(32)).decode())
    url = f"sqlite:///{tmp_path / 'kms.db'}"
    with mock_kms(store_url=url):
        key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    with mock_kms(store_url=url):  # the same file: the key is still there
        assert boto3.client("kms", region_name="us-east-1").describe_key(KeyId=key_id)


def test_patch_client_routes_a_client_from_an_older_session():
    from kms_core.testing import patch_client
    from kms_core.testing.mock import _route

    session = botocore.session.Session()
    session.unregister("before-send.kms", _route)  # as if made before kms_core.testing was imported
    client = session.create_client("kms", region_name="us-east-1", endpoint_url=DEAD, config=NO_RETRY,
                                   aws_access_key_id="a", aws_secret_access_key="b")
    with mock_kms():
        with pytest.raises(EndpointConnectionError):
            client.list_keys()
        assert patch_client(client).list_keys()["Keys"] == []


@mock_kms
class TestClassWithSetupMethod:
    def setup_method(self, method):
        self.kms = boto3.client("kms", region_name="us-east-1")
        self.key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]

    def teardown_method(self, method):
        assert len(self.kms.list_keys()["Keys"]) == 1  # still inside this test's own mock

    def test_one(self):
        assert self.kms.describe_key(KeyId=self.key_id)["KeyMetadata"]["KeyState"] == "Enabled"

    def test_two(self):
        assert [k["KeyId"] for k in self.kms.list_keys()["Keys"]] == [self.key_id]

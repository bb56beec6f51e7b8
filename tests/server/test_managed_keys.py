"""AWS-managed keys through a real `kms serve` (issue #15.10): a plain access key cannot use
them directly (a stolen blob plus any access key yields nothing, and the attempt is
audited); a service access key (`create-access-key --service s3`) uses its own service's
managed key only; the integrations work one-switch with a service key."""
from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from .conftest import REGION

DENIED = "because no resource-based policy allows the kms:{} action"


def _key(srv, user: str, service: str | None = None) -> dict:
    from kms_core.server.credentials import AccessKeys
    from kms_core.store import Store

    s = srv.settings()
    store = Store(s)
    try:
        return AccessKeys(store, s.account_id).create(user, service)["AccessKey"]
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    import os

    from .conftest import Server

    server = Server(tmp_path_factory.mktemp("managed"), os.urandom(32)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(srv):
    return {"outsider": _key(srv, "outsider"), "s3": _key(srv, "fs-app", "s3"),
            "lambda": _key(srv, "fn-app", "lambda"), "rds": _key(srv, "db-app", "rds")}


def _denied(call, action: str, user: str) -> str:
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDeniedException", err
    assert err["Message"].startswith(f"User: arn:aws:iam::111122223333:user/{user} is not authorized "
                                     f"to perform: kms:{action} on resource: arn:aws:kms:{REGION}:")
    assert err["Message"].endswith(DENIED.format(action))
    return e.value.response["ResponseMetadata"]["RequestId"]


def test_outsider_with_a_stolen_managed_key_blob_is_refused_and_audited(srv, keys):
    s3 = srv.client(keys["s3"])
    dk = s3.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256")
    stolen = dk["CiphertextBlob"]
    assert s3.decrypt(CiphertextBlob=stolen)["Plaintext"] == dk["Plaintext"]

    outsider = srv.client(keys["outsider"])
    rid = _denied(lambda: outsider.decrypt(CiphertextBlob=stolen), "Decrypt", "outsider")
    _denied(lambda: outsider.encrypt(KeyId="alias/aws/s3", Plaintext=b"x"), "Encrypt", "outsider")
    _denied(lambda: outsider.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256"),
            "GenerateDataKey", "outsider")
    # Metadata stays the account's, as AWS's policy says.
    assert outsider.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyManager"] == "AWS"

    from kms_core.audit import AuditReader
    from kms_core.store import Store

    store = Store(srv.settings())
    try:
        deadline = time.monotonic() + 20
        while True:  # the server's writer commits within ~50 ms
            events = [json.loads(b) for _, b in AuditReader(store).events()]
            hit = [e for e in events if e["requestID"] == rid]
            if hit or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        store.dispose()
    assert hit, "the refused Decrypt is not in the audit trail"
    ev = hit[0]
    assert ev["eventName"] == "Decrypt" and ev["errorCode"] == "AccessDeniedException"
    assert ev["userIdentity"]["accessKeyId"] == keys["outsider"]["AccessKeyId"]
    assert "invokedBy" not in ev["userIdentity"]
    made = [e for e in events if e["eventName"] == "GenerateDataKey" and "errorCode" not in e]
    assert made and made[0]["userIdentity"]["invokedBy"] == "s3.amazonaws.com"


def test_service_key_works_for_its_own_service_only(srv, keys):
    s3, fn = srv.client(keys["s3"]), srv.client(keys["lambda"])
    blob = s3.encrypt(KeyId="alias/aws/s3", Plaintext=b"object")["CiphertextBlob"]
    secret = fn.encrypt(KeyId="alias/aws/lambda", Plaintext=b"env")["CiphertextBlob"]
    assert fn.decrypt(CiphertextBlob=secret)["Plaintext"] == b"env"
    _denied(lambda: fn.decrypt(CiphertextBlob=blob), "Decrypt", "fn-app")
    _denied(lambda: s3.decrypt(CiphertextBlob=secret), "Decrypt", "fs-app")
    _denied(lambda: s3.encrypt(KeyId="alias/aws/lambda", Plaintext=b"x"), "Encrypt", "fs-app")
    # A service key is an ordinary user for customer managed keys (default policy).
    key = s3.create_key()["KeyMetadata"]["KeyId"]
    assert s3.decrypt(CiphertextBlob=s3.encrypt(KeyId=key, Plaintext=b"c")["CiphertextBlob"])["Plaintext"] == b"c"


def test_service_key_administers_no_managed_key(srv, keys):
    s3 = srv.client(keys["s3"])
    key = s3.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        s3.disable_key(KeyId=key)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_unknown_service_is_refused(srv):
    from kms_core.errors import KMSError

    with pytest.raises(KMSError) as e:
        _key(srv, "x", "not-a-service")
    assert e.value.code == "ValidationException"


@pytest.fixture
def one_switch(srv, monkeypatch):
    """The integrations' one switch: the endpoint and a (service) key in the environment."""
    import boto3

    def use(key: dict) -> None:
        boto3.DEFAULT_SESSION = None  # botocore's session keeps the credentials it first found
        monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", srv.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    yield use
    boto3.DEFAULT_SESSION = None


def test_encrypted_fs_through_the_server_with_an_s3_service_key(one_switch, keys):
    from integrations.encrypted_fs import EncryptedFileSystem

    one_switch(keys["s3"])
    efs = EncryptedFileSystem(target_protocol="memory", skip_instance_cache=True)  # key: alias/aws/s3
    efs.pipe_file("/managed/a.bin", b"through the s3 service")
    fresh = EncryptedFileSystem(target_protocol="memory", skip_instance_cache=True, cache=False)
    assert fresh.cat_file("/managed/a.bin") == b"through the s3 service"
    one_switch(keys["outsider"])  # the same file with a plain key: refused
    thief = EncryptedFileSystem(target_protocol="memory", skip_instance_cache=True, cache=False)
    with pytest.raises(Exception) as e:
        thief.cat_file("/managed/a.bin")
    assert "AccessDenied" in repr(e.value) or "AccessDenied" in str(e.value)


def test_lambda_env_through_the_server_with_a_lambda_service_key(one_switch, keys):
    from integrations.lambda_env import core
    from integrations.lambda_env.core import decrypt_value, encrypt_value

    one_switch(keys["lambda"])
    core._default = None
    try:
        value = encrypt_value("db-password", function_name="orders-api")
        assert decrypt_value(value, contexts=[{"LambdaFunctionName": "orders-api"}]) == b"db-password"
    finally:
        core._default = None


def test_encrypted_columns_through_the_server_with_an_rds_service_key(one_switch, keys):
    import sqlalchemy as sa

    import integrations.encrypted_columns as ec
    from integrations.encrypted_columns import EncryptedType

    one_switch(keys["rds"])
    ec.configure(kms=None)  # kms_core.client() from the environment on first use
    people = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("ssn", EncryptedType(sa.String(11))))  # key: alias/aws/rds
    db = sa.create_engine("sqlite://")
    people.metadata.create_all(db)
    try:
        with db.begin() as conn:
            conn.execute(sa.insert(people).values(id=1, ssn="123-45-6789"))
        with db.connect() as conn:
            assert conn.execute(sa.select(people.c.ssn)).scalar_one() == "123-45-6789"
    finally:
        ec.configure(kms=None)
        db.dispose()

"""kms_core.client() is called and answers as boto3.client("kms") does.  The
peer is a real boto3 client whose requests reach the same engine over AWS's
wire protocol (mock_kms), so botocore itself parses what the peer sees."""
from __future__ import annotations

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, OperationNotPageableError

import kms_core
from kms_core.testing import mock_kms


@pytest.fixture
def pair():
    with mock_kms() as mock:
        yield kms_core.client("kms", region_name="us-east-1"), boto3.client("kms", region_name="us-east-1"), mock


def test_boto3_call_signature_positional_and_keyword():
    with mock_kms():
        positional = kms_core.client("kms", "eu-west-1", None, True, None, None, "AKID", "SECRET", "TOKEN",
                                     Config(retries={"max_attempts": 2}))
        keyword = kms_core.client(service_name="kms", region_name="eu-west-1", api_version="2014-11-01",
                                  use_ssl=False, verify=False, aws_access_key_id="AKID",
                                  aws_secret_access_key="SECRET", aws_session_token="TOKEN",
                                  config=Config(connect_timeout=3), aws_account_id="123456789012")
        from_config = kms_core.client("kms", config=Config(region_name="eu-west-1"))
        for c in (positional, keyword, from_config):
            assert c.meta.region_name == "eu-west-1"
            assert c.create_key()["KeyMetadata"]["Arn"].startswith("arn:aws:kms:eu-west-1:")


def test_refuses_what_boto3_would_refuse():
    with pytest.raises(ValueError, match="KMS client only"):
        kms_core.client("s3")
    with pytest.raises(ValueError, match="API version"):
        kms_core.client("kms", api_version="2010-01-01")


def test_endpoint_url_gives_boto3_with_every_argument():
    c = kms_core.client("kms", "us-west-2", endpoint_url="http://127.0.0.1:9", aws_access_key_id="a",
                        aws_secret_access_key="b", aws_session_token="c", config=Config(parameter_validation=False))
    assert isinstance(c, BaseClient)
    assert c.meta.endpoint_url == "http://127.0.0.1:9" and c.meta.region_name == "us-west-2"
    creds = c._request_signer._credentials
    assert (creds.access_key, creds.secret_key, creds.token) == ("a", "b", "c")


def _failure(call):
    with pytest.raises(ClientError) as err:
        call()
    return err.value


def _comparable(response: dict) -> dict:
    out = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    meta = response["ResponseMetadata"]
    out["meta"] = (meta["HTTPStatusCode"], sorted(meta), sorted(meta["HTTPHeaders"]), meta["RetryAttempts"])
    return out


def test_errors_have_botocores_shape(pair):
    embedded, real, _ = pair
    key = real.create_key()["KeyMetadata"]
    other = real.create_key()["KeyMetadata"]
    blob = real.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    disabled = real.create_key()["KeyMetadata"]["KeyId"]
    real.disable_key(KeyId=disabled)
    cases = [
        lambda c: c.describe_key(KeyId="alias/none"),                                  # NotFoundException
        lambda c: c.decrypt(CiphertextBlob=blob, KeyId=other["KeyId"]),                # IncorrectKeyException
        lambda c: c.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"}),        # InvalidCiphertext ("")
        lambda c: c.encrypt(KeyId=disabled, Plaintext=b"p"),                           # DisabledException
        lambda c: c.encrypt(KeyId=key["KeyId"], Plaintext=b""),                         # ValidationException
        lambda c: c.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=3),  # ValidationException
        lambda c: c.create_alias(AliasName="alias/aws/x", TargetKeyId=key["KeyId"]),
    ]
    for case in cases:
        a = _failure(lambda case=case: case(embedded))
        b = _failure(lambda case=case: case(real))
        assert _comparable(a.response) == _comparable(b.response)
        assert str(a) == str(b)
        assert a.operation_name == b.operation_name
        code = b.response["Error"]["Code"]
        # modeled codes: botocore's class of that name; the others ClientError (here a subclass named for it)
        assert type(a).__name__ == code and type(b).__name__ in (code, "ClientError")
        assert isinstance(a, embedded.exceptions.from_code(code)) and isinstance(a, ClientError)
        assert ("message" in a.response) == (code != "ValidationException")


def test_successful_responses_have_the_same_members(pair):
    embedded, real, _ = pair
    for c in (embedded, real):
        key_id = c.create_key(Description="d", Tags=[{"TagKey": "k", "TagValue": "v"}])["KeyMetadata"]["KeyId"]
        c.create_alias(AliasName=f"alias/{key_id}", TargetKeyId=key_id)
    key_id = real.list_keys()["Keys"][0]["KeyId"]
    calls = [
        lambda c: c.describe_key(KeyId=key_id),
        lambda c: c.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"a": "b"}),
        lambda c: c.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
        lambda c: c.list_aliases(KeyId=key_id),
        lambda c: c.list_resource_tags(KeyId=key_id),
        lambda c: c.get_key_rotation_status(KeyId=key_id),
        lambda c: c.list_keys(Limit=1),
        lambda c: c.get_key_policy(KeyId=key_id),
    ]
    for call in calls:
        a, b = call(embedded), call(real)
        assert sorted(a) == sorted(b)
        for member, value in b.items():
            assert type(a[member]) is type(value), member


def test_meta_paginators_waiters(pair):
    embedded, real, _ = pair
    for name in ("region_name", "endpoint_url", "partition", "method_to_api_mapping"):
        assert getattr(embedded.meta, name) == getattr(real.meta, name), name
    assert embedded.meta.service_model.service_name == real.meta.service_model.service_name == "kms"
    assert embedded.meta.config.region_name == "us-east-1"
    for method in real.meta.method_to_api_mapping:
        assert embedded.can_paginate(method) == real.can_paginate(method), method
    assert embedded.waiter_names == real.waiter_names == []
    for c in (embedded, real):
        with pytest.raises(ValueError, match="Waiter does not exist: key_deleted"):
            c.get_waiter("key_deleted")
        with pytest.raises(OperationNotPageableError):
            c.get_paginator("encrypt")
    for _ in range(3):
        real.create_key()
    pages = lambda c: [[k["KeyId"] for k in p["Keys"]]  # noqa: E731
                       for p in c.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})]
    assert pages(embedded) == pages(real) and len(pages(real)) == 2


def test_parameter_validation_false_reaches_the_engine(pair):
    checked = kms_core.client("kms", region_name="us-east-1")
    unchecked = kms_core.client("kms", region_name="us-east-1", config=Config(parameter_validation=False))
    real_unchecked = boto3.client("kms", region_name="us-east-1", config=Config(parameter_validation=False))
    from botocore.exceptions import ParamValidationError
    with pytest.raises(ParamValidationError):
        checked.create_key(Description=5)
    with pytest.raises(ParamValidationError):
        boto3.client("kms", region_name="us-east-1").create_key(Description=5)
    # without client-side checks, the server side answers (AWS's code for a wrong JSON type)
    a = _failure(lambda: unchecked.create_key(Description=5))
    b = _failure(lambda: real_unchecked.create_key(Description=5))
    assert a.response["Error"]["Code"] == b.response["Error"]["Code"] == "SerializationException"


def test_every_aws_operation_reaches_the_engine(pair):
    # The mock passes every operation of AWS's model to the engine (it answers
    # UnsupportedOperationException for any it does not serve), as the server does.
    embedded, real, _ = pair
    for call in (lambda c: c.describe_custom_key_stores(), lambda c: c.get_public_key(KeyId="alias/none")):
        try:
            expected = call(embedded)
        except ClientError as err:
            got = _failure(lambda call=call: call(real))
            assert got.response["Error"] == err.response["Error"]
            assert got.response["Error"]["Code"] != "UnknownOperationException"
        else:
            assert sorted(call(real)) == sorted(expected)

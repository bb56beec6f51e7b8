"""What reaches the engine without botocore in front of it (the HTTP server
path, or any raw AWS JSON client): values below a model minimum, missing
members and wrong types must come back as KMSError with AWS's code — never as
another exception — and change nothing."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core.errors import KMSError


@pytest.fixture
def kid(engine):
    return engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]


BELOW_MIN = [
    ("GenerateRandom", {"NumberOfBytes": 0}, "numberOfBytes"),
    ("GenerateDataKey", {"KeyId": "{kid}", "NumberOfBytes": 0}, "numberOfBytes"),
    ("Encrypt", {"KeyId": "{kid}", "Plaintext": b""}, "plaintext"),
    ("Encrypt", {"KeyId": "{kid}"}, "plaintext"),
    ("Decrypt", {"CiphertextBlob": b""}, "ciphertextBlob"),
    ("CreateAlias", {"AliasName": "", "TargetKeyId": "{kid}"}, "aliasName"),
    ("ListKeys", {"Limit": 0}, "limit"),
    ("ListAliases", {"Limit": 0}, "limit"),
    ("EnableKeyRotation", {"KeyId": "{kid}", "RotationPeriodInDays": 89}, "rotationPeriodInDays"),
    ("ScheduleKeyDeletion", {"KeyId": "{kid}", "PendingWindowInDays": 0}, "pendingWindowInDays"),
    ("TagResource", {"KeyId": "{kid}", "Tags": [{"TagKey": "", "TagValue": "v"}]}, "tagKey"),
    ("DescribeKey", {"KeyId": ""}, "keyId"),
    ("DescribeKey", {}, "keyId"),
]


@pytest.mark.parametrize("op,params,field", BELOW_MIN,
                         ids=[f"{o}-{f}-{i}" for i, (o, _, f) in enumerate(BELOW_MIN)])
def test_below_minimum_is_validation_exception(engine, kid, op, params, field):
    params = {k: (v.format(kid=kid) if isinstance(v, str) else v) for k, v in params.items()}
    with pytest.raises(KMSError) as info:
        engine.call(op, params)
    assert info.value.code == "ValidationException"
    assert field in info.value.message
    meta = engine.call("DescribeKey", {"KeyId": kid})["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert engine.call("GetKeyRotationStatus", {"KeyId": kid})["KeyRotationEnabled"] is False
    assert engine.call("ListResourceTags", {"KeyId": kid})["Tags"] == []


def test_unknown_operation(engine):
    with pytest.raises(KMSError) as info:
        engine.call("NoSuchOperation", {})
    assert info.value.code in ("UnsupportedOperationException", "UnknownOperationException")


_values = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=40),
                    st.binary(max_size=40), st.lists(st.text(max_size=5), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
_OPS = ["CreateKey", "DescribeKey", "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext", "GenerateRandom", "CreateAlias", "UpdateAlias",
        "DeleteAlias", "ListAliases", "ListKeys", "TagResource", "UntagResource",
        "ListResourceTags", "EnableKeyRotation", "GetKeyRotationStatus", "ListKeyRotations",
        "ScheduleKeyDeletion", "UpdateKeyDescription"]
_MEMBERS = ["KeyId", "Plaintext", "CiphertextBlob", "EncryptionContext", "NumberOfBytes", "KeySpec",
            "AliasName", "TargetKeyId", "Limit", "Marker", "Tags", "TagKeys", "Description",
            "RotationPeriodInDays", "PendingWindowInDays", "DestinationKeyId", "KeyUsage"]


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(_OPS),
       params=st.dictionaries(st.sampled_from(_MEMBERS), _values, max_size=4))
def test_arbitrary_params_only_ever_give_kms_errors(engine, op, params):
    try:
        resp = engine.call(op, params)
    except KMSError as err:
        assert err.code and err.status in (400, 413)
        return
    assert isinstance(resp, dict)

"""The JSON 1.1 codec agrees with botocore's own serializer and parser."""
from __future__ import annotations

import datetime as dt
import json

import botocore.session
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from kms_core.errors import KMSError
from kms_core.server import wire

MODEL = botocore.session.get_session().get_service_model("kms")
text = st.text(min_size=1, max_size=20)
context = st.dictionaries(text, text, max_size=4)
when = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.just(dt.UTC))
# botocore sends whole epoch seconds; AWS answers with milliseconds.
whole_seconds = when.map(lambda d: d.replace(microsecond=0))
millis = when.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def _botocore_body(op: str, params: dict) -> bytes:
    req = create_serializer("json").serialize_to_request(params, MODEL.operation_model(op))
    return req["body"]


def _botocore_parse(op: str, body: bytes) -> dict:
    parsed = create_parser("json").parse({"body": body, "headers": {}, "status_code": 200},
                                         MODEL.operation_model(op).output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


@settings(max_examples=60, deadline=None)
@given(op_params=st.one_of(
    st.builds(lambda k, p, c: ("Encrypt", {"KeyId": k, "Plaintext": p, "EncryptionContext": c}),
              text, st.binary(min_size=1, max_size=64), context),
    st.builds(lambda b, c, g: ("Decrypt", {"CiphertextBlob": b, "EncryptionContext": c, "GrantTokens": g}),
              st.binary(min_size=1, max_size=64), context, st.lists(text, max_size=3)),
    st.builds(lambda k, n: ("GenerateDataKey", {"KeyId": k, "NumberOfBytes": n}), text, st.integers(1, 1024)),
    st.builds(lambda d, tags, b: ("CreateKey", {"Description": d, "Tags": tags, "BypassPolicyLockoutSafetyCheck": b}),
              st.text(max_size=30), st.lists(st.fixed_dictionaries({"TagKey": text, "TagValue": text}), max_size=3),
              st.booleans()),
    st.builds(lambda k, m, t, v: ("ImportKeyMaterial", {"KeyId": k, "ImportToken": t, "EncryptedKeyMaterial": m,
                                                        "ValidTo": v, "ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
              text, st.binary(min_size=1, max_size=32), st.binary(min_size=1, max_size=32), whole_seconds),
))
def test_decodes_what_botocore_sends(op_params):
    op, params = op_params
    assert wire.decode_request(op, _botocore_body(op, params)) == params


@settings(max_examples=60, deadline=None)
@given(op_result=st.one_of(
    st.builds(lambda b, k: ("Encrypt", {"CiphertextBlob": b, "KeyId": k, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
              st.binary(min_size=1, max_size=64), text),
    st.builds(lambda p, b: ("GenerateDataKey", {"Plaintext": p, "CiphertextBlob": b, "KeyId": "k"}),
              st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64)),
    st.builds(lambda c, d: ("DescribeKey", {"KeyMetadata": {
        "KeyId": "k", "CreationDate": c, "DeletionDate": d, "Enabled": True,
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}}),
              millis, millis),
))
def test_botocore_parses_what_we_send(op_result):
    op, result = op_result
    assert _botocore_parse(op, wire.encode_response(op, result)) == result


def test_empty_results_and_bodies():
    assert wire.encode_response("EnableKey", None) == b"{}"
    assert wire.decode_request("ListKeys", b"") == {}
    assert wire.decode_request("ListKeys", b"  {} ") == {}


@pytest.mark.parametrize("op, body, fragment", [
    ("Encrypt", b"{", "not valid JSON"),
    ("Encrypt", b"\xff\xfe{", "not valid"),
    ("Encrypt", b"[1]", "can not be converted to a Structure"),
    ("Encrypt", b'{"KeyId": 5}', "can not be converted to a String"),
    ("Encrypt", b'{"KeyId": "k", "Plaintext": "***"}', "Base64"),
    ("Encrypt", b'{"KeyId": "k", "Plaintext": 12}', "can not be converted to a Blob"),
    ("GenerateRandom", b'{"NumberOfBytes": "12"}', "can not be converted to an Integer"),
    ("GenerateRandom", b'{"NumberOfBytes": 1.5}', "Integer"),
    ("CreateKey", b'{"MultiRegion": "yes"}', "can not be converted to a Boolean"),
    ("Encrypt", b'{"KeyId": "k", "EncryptionContext": []}', "can not be converted to a Map"),
    ("Encrypt", b'{"KeyId": "k", "Plaintxt": "aGk="}', "Unknown field 'Plaintxt'"),
    ("CreateKey", b'{"Tags": [{"TagKey": "a", "TagValue": "b", "Colour": "red"}]}',
     "Unknown field 'Colour' (at 'Tags[0]')"),
])
def test_malformed_bodies_are_serialization_errors(op, body, fragment):
    with pytest.raises(KMSError) as e:
        wire.decode_request(op, body)
    assert e.value.code == "SerializationException"
    assert fragment in e.value.message


def test_messages_never_echo_blob_values():
    secret = "c2VjcmV0LXBsYWludGV4dA=="[:-1]  # broken base64 of a would-be plaintext
    with pytest.raises(KMSError) as e:
        wire.decode_request("Encrypt", json.dumps({"KeyId": "k", "Plaintext": secret}).encode())
    assert secret not in e.value.message


def test_error_body_shape():
    body = json.loads(wire.encode_error("NotFoundException", "Key 'x' does not exist"))
    assert body == {"__type": "NotFoundException", "message": "Key 'x' does not exist"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(MODEL.operation_names)), data=st.data())
def test_any_json_decodes_or_is_a_serialization_error(op, data):
    members = list(MODEL.operation_model(op).input_shape.members) if MODEL.operation_model(op).input_shape else []
    keys = st.sampled_from(members) if members else st.text(max_size=8)
    body = data.draw(st.one_of(st.dictionaries(keys, json_values, max_size=5), json_values))
    raw = json.dumps(body).encode()
    try:
        params = wire.decode_request(op, raw)
    except KMSError as e:
        assert e.code == "SerializationException"
    else:
        assert isinstance(params, dict)

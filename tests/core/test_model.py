"""The operation table (kms_core.model) against botocore's real KMS model.

botocore is the authority: the shipped JSON must be what tools/gen_model.py
makes from the installed botocore, every shape constraint must be botocore's,
and the wire conversion must round-trip through botocore's own JSON
serializer (requests) and parser (responses).
"""
from __future__ import annotations

import base64
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core import model
from kms_core.errors import KMSError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import gen_model  # noqa: E402

SVC = botocore.session.get_session().get_service_model("kms")


# --- the shipped file is botocore's ----------------------------------------

def test_shipped_json_is_regenerated_from_installed_botocore():
    shipped = (ROOT / "kms_core" / "data" / "kms-model.json").read_text(encoding="utf-8")
    assert shipped == gen_model.render(gen_model.build()), \
        "kms_core/data/kms-model.json is stale: run python tools/gen_model.py"
    assert model.SOURCE["botocore"] == botocore.__version__


def test_all_54_operations_with_boto3_and_cli_names():
    assert set(model.OPERATIONS) == set(SVC.operation_names)
    assert len(model.OPERATIONS) == 54
    client_methods = botocore.session.get_session().create_client(
        "kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).meta.method_to_api_mapping
    for name, op in model.OPERATIONS.items():
        assert op.name == name
        assert client_methods[op.py_name] == name
        assert op.cli_name == xform_name(name, "-")
        assert model.by_py_name(op.py_name) is op
        assert model.by_cli_name(op.cli_name) is op
    assert model.OPERATIONS["GenerateDataKey"].cli_name == "generate-data-key"
    assert model.OPERATIONS["ReEncrypt"].py_name == "re_encrypt"


def _same_shape(ours, theirs, seen):
    if theirs.name in seen:
        return
    seen.add(theirs.name)
    assert ours.name == theirs.name
    assert ours.type == theirs.type_name, theirs.name
    md = theirs.metadata
    assert ours.min == md.get("min") and ours.max == md.get("max"), theirs.name
    assert ours.pattern == md.get("pattern"), theirs.name
    assert list(ours.enum or []) == list(md.get("enum", [])), theirs.name
    assert ours.sensitive == bool(md.get("sensitive")), theirs.name
    if theirs.type_name == "structure":
        assert list(ours.members) == list(theirs.members), theirs.name
        assert list(ours.required) == list(md.get("required", [])), theirs.name
        for n, m in theirs.members.items():
            _same_shape(ours.members[n], m, seen)
    elif theirs.type_name == "list":
        _same_shape(ours.member, theirs.member, seen)
    elif theirs.type_name == "map":
        _same_shape(ours.key, theirs.key, seen)
        _same_shape(ours.value, theirs.value, seen)


@pytest.mark.parametrize("name", sorted(SVC.operation_names))
def test_shapes_match_botocore(name):
    op, theirs = model.OPERATIONS[name], SVC.operation_model(name)
    _same_shape(op.input_shape, theirs.input_shape, set())
    if theirs.output_shape is not None:
        _same_shape(op.output_shape, theirs.output_shape, set())
    else:
        assert op.output_shape.type == "structure" and not op.output_shape.members
    assert set(op.errors) == {e.name for e in theirs.error_shapes}
    blobs = tuple(n for n, s in theirs.input_shape.members.items() if s.type_name == "blob")
    stamps = tuple(n for n, s in theirs.input_shape.members.items() if s.type_name == "timestamp")
    assert op.blob_members == blobs and op.timestamp_members == stamps


def test_every_pattern_compiles_and_means_a_full_match():
    for s in model.SHAPES.values():
        if s.pattern:
            assert s.regex is not None
    assert model.SHAPES["AliasNameType"].regex.fullmatch("alias/ok-1")
    assert not model.SHAPES["AliasNameType"].regex.fullmatch("alias/no space")
    # Java semantics: \w is ASCII, and an unanchored pattern still has to
    # match the whole value (AWS rejects a policy with one non-Latin-1 char).
    assert not model.SHAPES["PolicyNameType"].regex.fullmatch("déf")
    assert model.SHAPES["PolicyType"].regex.fullmatch('{"a": "é"}')
    assert not model.SHAPES["PolicyType"].regex.fullmatch('{"a": "\u201c"}')
    assert not model.SHAPES["AliasNameType"].regex.fullmatch("alias/x\n")


# --- facts added on top of the model ----------------------------------------

ALIAS_OPS = {  # reference kms-api.md §2.1 "Alias acceptance"
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "DescribeKey",
    "GetPublicKey", "Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
}


def test_alias_acceptance_follows_reference_and_model_docs():
    assert {n for n, o in model.OPERATIONS.items() if o.alias_ok} == ALIAS_OPS
    # The model's own KeyId docs list "Alias name:" for the same set, except
    # GenerateMac/VerifyMac whose docs are silent (reference says yes).
    documented = set()
    for name in SVC.operation_names:
        for mname, m in SVC.operation_model(name).input_shape.members.items():
            if m.name == "KeyIdType" and "Alias name:" in re.sub("<[^>]+>", " ", m.documentation):
                documented.add(name)
    assert documented == ALIAS_OPS - {"GenerateMac", "VerifyMac"}
    assert model.OPERATIONS["ReEncrypt"].key_members == ("SourceKeyId", "DestinationKeyId")
    assert model.OPERATIONS["ReEncrypt"].alias_ok
    assert model.OPERATIONS["CreateAlias"].key_members == ("TargetKeyId",)
    assert not model.OPERATIONS["CreateAlias"].alias_ok
    assert model.OPERATIONS["ListKeys"].key_members == ()


def test_permissions():
    assert model.OPERATIONS["ReEncrypt"].permission == ("kms:ReEncryptFrom", "kms:ReEncryptTo")
    for name, op in model.OPERATIONS.items():
        if name != "ReEncrypt":
            assert op.permission == (f"kms:{name}",)


def test_paginated_operations_are_botocores():
    pag = botocore.session.get_session().get_paginator_model("kms")
    expected = {n for n in SVC.operation_names if pag._paginator_config.get(n)}
    assert {n for n, o in model.OPERATIONS.items() if o.paginated} == expected
    assert len(expected) == 8
    for n in expected:
        assert model.OPERATIONS[n].paginator["output_token"] == "NextMarker"


def test_documented_ranges_are_the_ones_aws_documents():
    got = {n: o.documented_ranges for n, o in model.OPERATIONS.items() if o.documented_ranges}
    assert got == {
        "ListAliases": {"Limit": (1, 100)}, "ListGrants": {"Limit": (1, 100)},
        "ListRetirableGrants": {"Limit": (1, 100)}, "ListResourceTags": {"Limit": (1, 50)},
        "ListKeys": {"Limit": (1, 1000)}, "ListKeyRotations": {"Limit": (1, 1000)},
        "ListKeyPolicies": {"Limit": (1, 1000)},
        "ScheduleKeyDeletion": {"PendingWindowInDays": (7, 30)},
    }


def test_key_state_rules():
    rules = model.KEY_STATE_RULES
    assert model.OPERATIONS["Encrypt"].key_state_rule == "usable"
    assert rules["usable"]["Disabled"] == ("DisabledException", "{arn} is disabled.")
    assert rules["usable"]["PendingDeletion"][0] == "KMSInvalidStateException"
    assert "Enabled" not in rules["usable"]
    assert model.OPERATIONS["DescribeKey"].key_state_rule == "any"
    assert model.OPERATIONS["CancelKeyDeletion"].key_state_rule == "pending_deletion_only"
    assert "PendingDeletion" not in rules["pending_deletion_only"]
    assert model.OPERATIONS["ListKeys"].key_state_rule is None
    for op in model.OPERATIONS.values():
        if op.key_members:
            assert op.key_state_rule in rules, op.name


def test_unknown_operation():
    with pytest.raises(KMSError) as e:
        model.operation("Nope")
    assert e.value.code == "UnknownOperationException"


# --- wire conversion agrees with botocore's serializer and parser ----------

def _values(shape, depth=0):
    """Valid Python-form values for ``shape`` (types only; constraints are
    validation's business, the wire layer must carry anything)."""
    t = shape.type
    if t == "string":
        return st.sampled_from(shape.enum) if shape.enum else st.text(max_size=8)
    if t == "blob":
        return st.binary(max_size=32)
    if t in ("integer", "long"):
        return st.integers(-2**31, 2**31 - 1)
    if t == "boolean":
        return st.booleans()
    if t == "timestamp":
        return st.integers(0, 4_000_000_000_000).map(
            lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC))
    if t == "list":
        return st.lists(_values(shape.member, depth + 1), max_size=3)
    if t == "map":
        return st.dictionaries(st.text(max_size=5), _values(shape.value, depth + 1), max_size=3)
    if t == "structure":
        if depth > 4:
            return st.just({})
        return st.fixed_dictionaries({}, optional={
            n: _values(s, depth + 1) for n, s in shape.members.items()})
    raise AssertionError(t)


_SERIALIZER = create_serializer("json", include_validation=False)
_PARSER = create_parser("json")


def _norm(v, stamp=lambda d: round(d.timestamp(), 3)):
    # Our response timestamps carry milliseconds; botocore sends whole seconds.
    if isinstance(v, datetime):
        return stamp(v)
    if isinstance(v, dict):
        return {k: _norm(x, stamp) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x, stamp) for x in v]
    return v


@st.composite
def _op_and_params(draw, which):
    name = draw(st.sampled_from(sorted(model.OPERATIONS)))
    op = model.OPERATIONS[name]
    shape = op.input_shape if which == "input" else op.output_shape
    return name, draw(_values(shape))


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_op_and_params("input"))
def test_from_wire_reads_what_botocore_sends(case):
    name, params = case
    request = _SERIALIZER.serialize_to_request(params, SVC.operation_model(name))
    body = json.loads(request["body"] or b"{}")
    assert request["headers"]["X-Amz-Target"] == f"{model.METADATA['targetPrefix']}.{name}"
    got = model.decode_request(name, body)
    whole = lambda d: int(d.timestamp())  # noqa: E731
    assert _norm(got, whole) == _norm(params, whole)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_op_and_params("output"))
def test_to_wire_is_what_botocore_parses(case):
    name, result = case
    body = json.dumps(model.encode_response(name, result)).encode()
    theirs = SVC.operation_model(name).output_shape
    parsed = _PARSER.parse({"status_code": 200, "headers": {}, "body": body}, theirs)
    parsed.pop("ResponseMetadata", None)
    assert _norm(parsed) == _norm(result)


def test_to_wire_forms():
    out = model.encode_response("Encrypt", {
        "CiphertextBlob": b"\x00\xff", "KeyId": "k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "ResponseMetadata": {"RequestId": "x"}})
    assert out == {"CiphertextBlob": "AP8=", "KeyId": "k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    meta = model.encode_response("DescribeKey", {"KeyMetadata": {
        "KeyId": "k", "CreationDate": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)}})
    assert meta["KeyMetadata"]["CreationDate"] == 1767323045.678
    whole = model.encode_response("DescribeKey", {"KeyMetadata": {
        "KeyId": "k", "CreationDate": datetime(2026, 1, 2, tzinfo=UTC)}})
    assert whole["KeyMetadata"]["CreationDate"] == 1767312000
    assert model.encode_response("CreateAlias", None) == {}


@pytest.mark.parametrize("body,where", [
    ({"KeyId": 5, "Plaintext": "aGk="}, "KeyId"),
    ({"KeyId": "k", "Plaintext": 5}, "Plaintext"),
    ({"KeyId": "k", "Plaintext": ["aGk="]}, "Plaintext"),
    ({"KeyId": "k", "Plaintext": "aGk=", "EncryptionContext": ["a"]}, "EncryptionContext"),
    ({"KeyId": "k", "Plaintext": "aGk=", "EncryptionContext": {"a": 1}}, "EncryptionContext.a"),
    ({"KeyId": "k", "Plaintext": "aGk=", "GrantTokens": "t"}, "GrantTokens"),
    ({"KeyId": "k", "Plaintext": "aGk=", "GrantTokens": [None]}, "GrantTokens[0]"),
    ({"KeyId": "k", "Plaintext": "aGk=", "DryRun": "true"}, "DryRun"),
    ({"KeyId": {"a": 1}, "Plaintext": "aGk="}, "KeyId"),
])
def test_from_wire_rejects_wrong_json_types(body, where):
    with pytest.raises(KMSError) as e:
        model.decode_request("Encrypt", body)
    assert e.value.code == "SerializationException"
    assert f"'{where}'" in e.value.message


@pytest.mark.parametrize("value", [True, "5", 5.5, [5], {"n": 5}, 2**31, -2**31 - 1, 1e300])
def test_from_wire_integer_types(value):
    with pytest.raises(KMSError) as e:
        model.decode_request("GenerateRandom", {"NumberOfBytes": value})
    assert e.value.code == "SerializationException"


def test_from_wire_accepts_integral_floats_and_drops_nulls_and_unknown_fields():
    assert model.decode_request("GenerateRandom", {"NumberOfBytes": 32.0}) == {"NumberOfBytes": 32}
    assert model.decode_request("Encrypt", {"KeyId": "k", "Plaintext": "aGk=", "GrantTokens": None,
                                            "NewField": {"x": 1}}) == {"KeyId": "k", "Plaintext": b"hi"}
    assert model.decode_request("ListKeys", None) == {}
    got = model.decode_request("ImportKeyMaterial", {"KeyId": "k", "ValidTo": 1767312000})
    assert got["ValidTo"] == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["not base64!", "aGk", "aG=k", "a" * 5, "aGk=\n?"])
def test_bad_base64_is_a_serialization_error_that_does_not_echo(bad):
    with pytest.raises(KMSError) as e:
        model.decode_request("Encrypt", {"KeyId": "k", "Plaintext": bad})
    assert e.value.code == "SerializationException"
    assert bad not in e.value.message and "'Plaintext'" in e.value.message


def test_request_body_must_be_an_object():
    with pytest.raises(KMSError) as e:
        model.decode_request("Encrypt", ["x"])
    assert e.value.code == "SerializationException"


def test_to_wire_rejects_wrong_python_types():
    with pytest.raises(KMSError) as e:
        model.encode_response("Encrypt", {"CiphertextBlob": 5})
    assert e.value.code == "SerializationException"


def test_coerce_input_matches_botocore_blob_and_timestamp_handling(tmp_path):
    p = {"KeyId": "k", "Plaintext": b"x"}
    assert model.coerce_input("Encrypt", p) is p
    assert model.coerce_input("Encrypt", {"KeyId": "k", "Plaintext": "hé"})["Plaintext"] == "hé".encode()
    f = tmp_path / "f"
    f.write_bytes(b"\x00file")
    with f.open("rb") as fh:
        assert model.coerce_input("Encrypt", {"KeyId": "k", "Plaintext": fh})["Plaintext"] == b"\x00file"
    assert model.coerce_input("Encrypt", {"KeyId": "k", "Plaintext": bytearray(b"ab")})["Plaintext"] == b"ab"
    got = model.coerce_input("ImportKeyMaterial", {"KeyId": "k", "ValidTo": "2026-01-02"})
    assert got["ValidTo"] == datetime(2026, 1, 2, tzinfo=UTC)
    # botocore serializes these the same way.
    req = _SERIALIZER.serialize_to_request({"KeyId": "k", "Plaintext": "hé"}, SVC.operation_model("Encrypt"))
    assert base64.b64decode(json.loads(req["body"])["Plaintext"]) == "hé".encode()

"""#16.1 on every interface: the inputs that were 500s get AWS's typed error from
the in-process client and the CLI too, and the parsers the server owns (wire
JSON, SigV4 headers, validation) never raise anything but KMSError, whatever
they are given (hypothesis)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core import validation
from kms_core.envelope import encode_context
from kms_core.errors import KMSError
from kms_core.model import OPERATIONS
from kms_core.server import sigv4, wire

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture
def key_id(kms):
    return kms.create_key()["KeyMetadata"]["KeyId"]


def _code(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


@pytest.mark.parametrize("case", ["description", "context", "key id", "tag", "alias", "str blob"])
def test_lone_surrogates_are_serialization_errors(kms, key_id, case):
    calls = {
        "description": lambda: kms.create_key(Description="a\ud800"),
        "context": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"a": "\udc00"}),
        "key id": lambda: kms.describe_key(KeyId="alias/\ud800"),
        "tag": lambda: kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "\ud800", "TagValue": "v"}]),
        "alias": lambda: kms.create_alias(AliasName="alias/\udfff", TargetKeyId=key_id),
        "str blob": lambda: kms.encrypt(KeyId=key_id, Plaintext="\ud800"),
    }
    code, message = _code(calls[case])
    assert code == "SerializationException" and "surrogate" in message
    assert "\ud800" not in message and "\udc00" not in message  # never echoed: it cannot be printed


@pytest.mark.parametrize("case", ["description", "tag key", "key id", "grant constraint"])
def test_nul_characters_are_validation_errors(kms, key_id, case):
    calls = {
        "description": lambda: kms.create_key(Description="a\x00b"),
        "tag key": lambda: kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "a\x00", "TagValue": "v"}]),
        "key id": lambda: kms.describe_key(KeyId=key_id + "\x00"),
        "grant constraint": lambda: kms.create_grant(  # stored with the grant
            KeyId=key_id, GranteePrincipal="arn:aws:iam::111122223333:root", Operations=["Decrypt"],
            Constraints={"EncryptionContextSubset": {"a": "\x00"}}),
    }
    code, message = _code(calls[case])
    assert code == "ValidationException" and "NUL character" in message


def test_nul_is_allowed_in_an_operations_own_encryption_context(kms, key_id):
    """Only bound into the ciphertext, never stored: accepted, as AWS accepts it."""
    ctx = {"a\x00": "\x00b"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"x"
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "\x00b"})


def test_oversized_encryption_context_is_a_validation_error(kms, key_id):
    code, message = _code(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x",
                                               EncryptionContext={"a": "x" * 70_000}))
    assert code == "ValidationException" and "65535 bytes" in message
    # At the limit exactly, it works and round-trips.
    ctx = {"a": "é" * 32767}  # 65,534 bytes
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"x"


def test_encode_context_refuses_what_it_cannot_encode():
    with pytest.raises(ValueError, match="65535"):
        encode_context({"k": "v" * 65536})
    with pytest.raises(ValueError, match="surrogate"):
        encode_context({"k": "\ud800"})
    assert encode_context({"k": "v" * 65535})[:3] == b"\x00\x01\x00"


def test_huge_integers_are_serialization_errors(kms):
    code, _ = _code(lambda: kms.generate_random(NumberOfBytes=10**5000))
    assert code == "SerializationException"
    with pytest.raises(Exception) as e:  # botocore's client-side report, with the number not printed
        kms.generate_random(NumberOfBytes=-10**5000)
    assert "more than 4300 digits" in str(e.value)


def test_an_unexpected_engine_error_is_typed_and_logged(kms, engine, monkeypatch, caplog):
    def broken(*_args):
        raise AttributeError("secret-ish detail")

    monkeypatch.setitem(engine._handlers, "ListKeys", broken)
    caplog.set_level(logging.ERROR, "kms")
    code, message = _code(kms.list_keys)
    assert (code, message) == ("KMSInternalException", "An internal error occurred.")
    assert "AttributeError" in caplog.text and "secret-ish" not in caplog.text


@pytest.mark.parametrize("args, code", [
    (["create-key", "--description", "a\udcffb"], "SerializationException"),  # argv bytes that are not UTF-8
    (["encrypt", "--key-id", "alias/x", "--plaintext", "fileb:///dev/null", "--encryption-context",
      "a=" + "x" * 70_000], "ValidationException"),
])
def test_cli_prints_the_aws_error(kms_home, args, code):
    env = {**os.environ, "KMS_HOME": str(kms_home)}
    argv = [a.encode("utf-8", "surrogateescape") for a in args]
    proc = subprocess.run([sys.executable, "-c", "import sys; from kms_core.cli import main; sys.exit(main())",
                           *argv], capture_output=True, timeout=60, env=env, check=False)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 255, err
    assert f"An error occurred ({code})" in err and "Traceback" not in err


# -- parsers: never anything but KMSError -------------------------------------------

@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_wire_decoding_raises_only_kms_errors(body):
    for op in ("Encrypt", "CreateGrant", "TagResource"):
        try:
            wire.decode_request(op, body)
        except KMSError as e:
            assert e.code == "SerializationException"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12)


@FUZZ
@given(op=st.sampled_from(sorted(OPERATIONS)), data=st.data())
def test_validation_raises_only_kms_errors(op, data):
    members = sorted(OPERATIONS[op].input_shape.members) or ["X"]
    params = data.draw(st.dictionaries(st.sampled_from(members), _json_values | st.binary(max_size=20),
                                       max_size=4))
    try:
        validation.validate(op, params)
    except KMSError as e:
        assert e.code in ("ValidationException", "SerializationException")
        e.message.encode("utf-8")  # printable: no lone surrogate in any message


_header = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=120)


@FUZZ
@given(auth=_header | st.builds(lambda a, b, c: f"AWS4-HMAC-SHA256 Credential={a}, SignedHeaders={b}, "
                                                 f"Signature={c}", _header, _header, _header),
       date=_header, target=_header, body=st.binary(max_size=50))
def test_sigv4_parsing_raises_only_kms_errors(auth, date, target, body):
    headers = {"authorization": auth, "x-amz-date": date, "x-amz-target": target, "host": "h"}
    try:
        sigv4.parse_request("POST", "/", "", headers, body)
    except KMSError as e:
        assert e.code in ("IncompleteSignatureException", "InvalidSignatureException",
                          "UnrecognizedClientException", "MissingAuthenticationTokenException")

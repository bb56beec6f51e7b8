"""Raw HTTP against a real server: every malformed or unauthenticated request
gets the AWS error code, a clear message and changes nothing."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from unittest import mock

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kms_core.server.app import MAX_BODY_BYTES

from .conftest import REGION


def sign(server, key, body: bytes, target="TrentService.ListKeys", *, extra=None, when=None,
         region=REGION, secret=None, token=None) -> dict:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target, **(extra or {})}
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers=headers)
    creds = Credentials(key["AccessKeyId"], secret or key["SecretAccessKey"], token)
    if when is None:
        SigV4Auth(creds, "kms", region).add_auth(req)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
            SigV4Auth(creds, "kms", region).add_auth(req)
    return dict(req.headers.items())


def send(server, body: bytes, headers: dict, method="POST", path="/", chunked=False):
    c = server.connection()
    try:
        if chunked:
            c.putrequest(method, path)
            for k, v in headers.items():
                c.putheader(k, v)
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            step = 64 * 1024
            for i in range(0, len(body), step):
                part = body[i:i + step]
                c.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            c.send(b"0\r\n\r\n")
        else:
            c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else {}), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def call(server, key, body: bytes, target="TrentService.ListKeys", **kw):
    return send(server, body, sign(server, key, body, target, **kw))


def key_count(kms_remote) -> int:
    return len(kms_remote.list_keys()["Keys"])


def test_health(server):
    status, body = server.get("/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_signed_request_succeeds_with_aws_headers(server, access_key):
    status, body, headers = call(server, access_key, b"{}")
    assert status == 200 and "Keys" in body
    assert headers["content-type"] == "application/x-amz-json-1.1"
    uuid.UUID(headers["x-amzn-requestid"])
    _, _, again = call(server, access_key, b"{}")
    assert again["x-amzn-requestid"] != headers["x-amzn-requestid"]


def test_missing_authentication(server):
    status, body, headers = send(server, b"{}", {"Content-Type": "application/x-amz-json-1.1",
                                                 "X-Amz-Target": "TrentService.ListKeys"})
    assert status == 403
    assert body == {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}
    assert "x-amzn-requestid" in headers


def test_unknown_access_key(server):
    fake = {"AccessKeyId": "AKIAZZZZZZZZZZZZZZZZ", "SecretAccessKey": "y" * 40}
    status, body, _ = call(server, fake, b"{}")
    assert (status, body["__type"]) == (400, "UnrecognizedClientException")
    assert body["message"] == "The security token included in the request is invalid."


def test_bad_signature(server, access_key):
    status, body, _ = call(server, access_key, b"{}", secret="z" * 40)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert body["message"].startswith("The request signature we calculated does not match")


def test_body_changed_after_signing(server, access_key, kms_remote):
    before = key_count(kms_remote)
    headers = sign(server, access_key, b'{"Description": "a"}', "TrentService.CreateKey")
    status, body, _ = send(server, b'{"Description": "b"}', headers)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert key_count(kms_remote) == before


@pytest.mark.parametrize("minutes, prefix", [(-6, "Signature expired"), (6, "Signature not yet current")])
def test_outside_the_skew_window(server, access_key, kms_remote, minutes, prefix):
    before = key_count(kms_remote)
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    status, body, _ = call(server, access_key, b"{}", "TrentService.CreateKey", when=when)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert body["message"].startswith(prefix) and "5 min." in body["message"]
    assert key_count(kms_remote) == before


def test_inside_the_skew_window(server, access_key):
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=4)
    status, _, _ = call(server, access_key, b"{}", when=when)
    assert status == 200


def test_malformed_authorization_header(server, access_key):
    headers = sign(server, access_key, b"{}")
    headers["Authorization"] = headers["Authorization"].split(", Signature=")[0]
    status, body, _ = send(server, b"{}", headers)
    assert (status, body["__type"]) == (400, "IncompleteSignatureException")
    assert "requires 'Signature' parameter" in body["message"]


def test_session_token_with_a_long_term_key(server, access_key):
    status, body, _ = call(server, access_key, b"{}", token="session-token")
    assert (status, body["__type"]) == (400, "UnrecognizedClientException")


def test_region_comes_from_the_credential_scope(server, access_key):
    status, body, _ = call(server, access_key, b"{}", "TrentService.CreateKey", region="eu-central-1")
    assert status == 200
    assert body["KeyMetadata"]["Arn"].startswith("arn:aws:kms:eu-central-1:111122223333:key/")


@pytest.mark.parametrize("target, message", [
    ("TrentService.Nope", "Unknown operation 'TrentService.Nope'"),
    ("DynamoDB_20120810.ListTables", "Unknown operation"),
])
def test_unknown_operation(server, access_key, target, message):
    status, body, _ = call(server, access_key, b"{}", target)
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert message in body["message"]


@pytest.mark.parametrize("target, payload, fragment", [
    ("CreateKey", b"{not json", "not valid JSON"),
    ("CreateKey", b'["Description"]', "can not be converted to a Structure"),
    ("CreateKey", b'{"Description": 12}', "can not be converted to a String"),
    ("CreateKey", b'{"Tags": {"TagKey": "a"}}', "can not be converted to a List"),
    ("CreateKey", b'{"MultiRegion": "true"}', "can not be converted to a Boolean"),
    ("CreateKey", b'{"Descripton": "typo"}', "Unknown field 'Descripton'"),
    ("Encrypt", b'{"KeyId": "alias/x", "Plaintext": "not base64!"}', "Base64"),
    ("GenerateRandom", b'{"NumberOfBytes": "16"}', "can not be converted to an Integer"),
])
def test_malformed_bodies(server, access_key, kms_remote, target, payload, fragment):
    before = key_count(kms_remote)
    status, body, _ = call(server, access_key, payload, f"TrentService.{target}")
    assert (status, body["__type"]) == (400, "SerializationException")
    assert fragment in body["message"]
    assert key_count(kms_remote) == before


def test_wrong_content_type(server, access_key):
    status, body, _ = call(server, access_key, b"{}", extra={"Content-Type": "text/plain"})
    assert (status, body["__type"]) == (400, "SerializationException")
    assert "application/x-amz-json-1.1" in body["message"]


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body(server, access_key, kms_remote, chunked):
    before = key_count(kms_remote)
    payload = b'{"Description": "' + b"a" * MAX_BODY_BYTES + b'"}'
    headers = sign(server, access_key, payload, "TrentService.CreateKey")
    if chunked:
        headers.pop("Content-Length", None)
    status, body, _ = send(server, payload, headers, chunked=chunked)
    assert (status, body["__type"]) == (413, "RequestEntityTooLargeException")
    assert str(MAX_BODY_BYTES) in body["message"]
    assert key_count(kms_remote) == before


def test_largest_legal_request_fits_the_limit(server, access_key, kms_remote):
    # A key policy at AWS's 32 KB limit, signed and sent whole.
    key_id = kms_remote.create_key()["KeyMetadata"]["KeyId"]
    policy = json.loads(kms_remote.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    policy["Id"] = "x" * (32768 - len(json.dumps(policy)) - 10)
    text = json.dumps(policy)
    assert 32000 < len(text) <= 32768
    kms_remote.put_key_policy(KeyId=key_id, PolicyName="default", Policy=text)
    assert kms_remote.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == text


@pytest.mark.parametrize("method, path", [("GET", "/"), ("POST", "/other"), ("PUT", "/")])
def test_other_paths_and_methods(server, method, path):
    status, body, _ = send(server, b"", {}, method=method, path=path)
    assert status in (404, 405)
    assert body["__type"] == "UnknownOperationException"


def test_boto3_sees_auth_errors_as_client_errors(server, access_key):
    import botocore.exceptions

    bad = server.client({"AccessKeyId": access_key["AccessKeyId"], "SecretAccessKey": "q" * 40})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.list_keys()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["ResponseMetadata"]["RequestId"]


def _read_response(sock, buf: bytes) -> tuple[int, dict, bytes, bytes]:
    """One HTTP/1.1 response from a raw socket: (status, headers, body, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a full response head"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a full response body"
        rest += chunk
    return status, headers, rest[:size], rest[size:]


def _raw_request(server, key, body: bytes, extra: dict | None = None) -> bytes:
    headers = sign(server, key, body, extra=extra)
    headers["Content-Length"] = str(len(body))
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_raw_keep_alive_pipelining_and_expect_continue(server, access_key):
    """The response head is written together with the body (one write per response):
    a 100 Continue still goes out before the body is read, pipelined responses keep
    their order, and every response is complete."""
    import socket

    body = b"{}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        # Expect: 100-continue: the interim response comes before we send the body.
        s.sendall(_raw_request(server, access_key, body, {"Expect": "100-continue"}))
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 100 Continue\r\n")
        buf = buf.partition(b"\r\n\r\n")[2]
        s.sendall(body)
        status, headers, got, buf = _read_response(s, buf)
        assert status == 200 and "Keys" in json.loads(got)
        first_id = headers["x-amzn-requestid"]
        # Three pipelined requests on the same connection, the middle one refused.
        s.sendall(_raw_request(server, access_key, body) + body + b"POST /nope HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 0\r\n\r\n" + _raw_request(server, access_key, body) + body)
        answers = []
        for _ in range(3):
            status, headers, got, buf = _read_response(s, buf)
            answers.append((status, json.loads(got), headers["x-amzn-requestid"]))
    assert [a[0] for a in answers] == [200, 404, 200]
    assert answers[1][1]["__type"] == "UnknownOperationException"
    assert "Keys" in answers[0][1] and "Keys" in answers[2][1]
    assert len({first_id, *(a[2] for a in answers)}) == 4


def test_raw_head_then_get_on_one_connection(server):
    """A HEAD response has a head and no body: it must still be written at once."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, "connection closed before the HEAD response"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and buf == b""
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body, _ = _read_response(s, buf)
    assert status == 200 and json.loads(body) == {"status": "ok"}

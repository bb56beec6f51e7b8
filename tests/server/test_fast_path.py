"""The protocol's fast path (kms_core/server/protocol.py): a signed ``POST /`` whose
body has arrived is answered on the event loop without an ASGI cycle, and every
request it cannot answer at once takes the ordinary path — with the same answers,
each request audited once."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest
import uvicorn

from kms_core.audit import AuditReader
from kms_core.server.app import KMSApp, ServerConfig
from kms_core.server.credentials import AccessKeys
from kms_core.server.protocol import FAST_BODY, HttpProtocol
from kms_core.store import WouldBlock

from .conftest import free_port
from .test_http import _read_response


class _Served:
    def __init__(self, app: KMSApp, port: int):
        self.app, self.port = app, port


def _signed(port: int, key: dict, target: str, payload: dict, extra: dict | None = None) -> tuple[bytes, bytes]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{target}",
                              **(extra or {})})
    SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "kms", "us-east-1").add_auth(req)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


@pytest.fixture
def served(engine):
    app = KMSApp(ServerConfig(), engine=engine)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=HttpProtocol, lifespan="on",
                            access_log=False, log_level="warning", loop="asyncio",
                            proxy_headers=False)  # as kms serve runs it
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield _Served(app, port)
    server.should_exit = True
    thread.join(20)


@pytest.fixture
def key(engine):
    return AccessKeys(engine.store, engine.settings.account_id).create("alice")["AccessKey"]


@pytest.fixture
def asgi_calls(served, monkeypatch):
    """The requests the ordinary (ASGI) path answered."""
    seen: list[str] = []
    handle = served.app.handle

    async def counting(scope, receive, request_id):
        seen.append(dict(scope["headers"]).get(b"x-amz-target", b"").decode())
        return await handle(scope, receive, request_id)

    monkeypatch.setattr(served.app, "handle", counting)
    return seen


def _exchange(port: int, raw: bytes, pause_after: int | None = None) -> tuple[int, dict, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if pause_after is None:
            s.sendall(raw)
        else:  # the body arrives after the head, in a later segment
            s.sendall(raw[:pause_after])
            time.sleep(0.2)
            s.sendall(raw[pause_after:])
        status, headers, body, _ = _read_response(s, b"")
    return status, headers, json.loads(body)


def _events(served, request_ids: set[str]) -> dict[str, int]:
    served.app.audit_log.flush(10)
    counts: dict[str, int] = {}
    for _, text in AuditReader(served.app.engine.store).events(limit=1000):
        rid = json.loads(text).get("requestID")
        if rid in request_ids:
            counts[rid] = counts.get(rid, 0) + 1
    return counts


def test_signed_requests_are_answered_without_the_asgi_cycle(served, key, asgi_calls):
    port = served.port
    head, body = _signed(port, key, "CreateKey", {})
    status, _, created = _exchange(port, head + body)
    assert status == 200  # the first request loads the access key: the ordinary path
    assert asgi_calls == ["TrentService.CreateKey"]
    key_id = created["KeyMetadata"]["KeyId"]
    _exchange(port, b"".join(_signed(port, key, "Encrypt", {"KeyId": key_id, "Plaintext": "AA=="})))  # caches the key
    asgi_calls.clear()
    ids = set()
    for split in (None, len(head)):  # whole, and the body in a later segment
        head, body = _signed(port, key, "Encrypt", {"KeyId": key_id, "Plaintext": base64.b64encode(b"hi").decode()})
        status, headers, out = _exchange(port, head + body, pause_after=split)
        assert status == 200 and out["KeyId"].endswith(key_id)
        assert headers["content-type"] == "application/x-amz-json-1.1" and "date" in headers
        ids.add(headers["x-amzn-requestid"])
        head, body = _signed(port, key, "Decrypt", {"CiphertextBlob": out["CiphertextBlob"]})
        status, headers, out = _exchange(port, head + body)
        assert status == 200 and base64.b64decode(out["Plaintext"]) == b"hi"
        ids.add(headers["x-amzn-requestid"])
    # An engine refusal is answered on the fast path too.
    head, body = _signed(port, key, "Encrypt", {"KeyId": key_id, "Plaintext": "AA==",
                                                "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
    status, headers, out = _exchange(port, head + body)
    assert status == 400 and out["__type"] == "InvalidKeyUsageException"
    ids.add(headers["x-amzn-requestid"])
    assert asgi_calls == []
    assert _events(served, ids) == dict.fromkeys(ids, 1)


def test_what_the_fast_path_cannot_answer_takes_the_ordinary_path(served, key, asgi_calls, monkeypatch):
    port = served.port
    head, body = _signed(port, key, "CreateKey", {})
    key_id = _exchange(port, head + body)[2]["KeyMetadata"]["KeyId"]
    ids = set()
    # Refused before dispatch (bad signature): answered and audited by the ordinary path.
    bad = dict(key, SecretAccessKey="x" * 40)
    head, body = _signed(port, bad, "ListKeys", {})
    status, headers, out = _exchange(port, head + body)
    assert status == 400 and out["__type"] == "InvalidSignatureException"
    ids.add(headers["x-amzn-requestid"])
    # The engine needs the database (WouldBlock): the request goes to the pool.
    engine = served.app.engine
    real = engine.call_nonblocking
    blocked = []

    def once_blocking(op, params, ctx):
        if not blocked:
            blocked.append(op)
            raise WouldBlock
        return real(op, params, ctx)

    monkeypatch.setattr(engine, "call_nonblocking", once_blocking)
    head, body = _signed(port, key, "Encrypt", {"KeyId": key_id, "Plaintext": base64.b64encode(b"x").decode()})
    status, headers, out = _exchange(port, head + body)
    assert status == 200 and blocked == ["Encrypt"]
    ids.add(headers["x-amzn-requestid"])
    # A body larger than the fast path takes (refused by validation, through the ASGI cycle).
    head, body = _signed(port, key, "Encrypt", {"KeyId": key_id, "Plaintext": "A" * (FAST_BODY + 8)})
    status, headers, out = _exchange(port, head + body)
    assert status == 400 and out["__type"] == "ValidationException"
    ids.add(headers["x-amzn-requestid"])
    assert asgi_calls == ["TrentService.CreateKey", "TrentService.ListKeys", "TrentService.Encrypt",
                          "TrentService.Encrypt"]
    assert _events(served, ids) == dict.fromkeys(ids, 1)


def test_connection_close_is_honoured_on_the_fast_path(served, key, asgi_calls):
    port = served.port
    head, body = _signed(port, key, "CreateKey", {})
    key_id = _exchange(port, head + body)[2]["KeyMetadata"]["KeyId"]  # loads the access key
    encrypt = {"KeyId": key_id, "Plaintext": "AA=="}
    _exchange(port, b"".join(_signed(port, key, "Encrypt", encrypt)))  # caches the key
    asgi_calls.clear()
    head, body = _signed(port, key, "Encrypt", encrypt, extra={"Connection": "close"})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        status, headers, got, rest = _read_response(s, b"")
        assert status == 200 and "CiphertextBlob" in json.loads(got)
        assert headers["connection"] == "close"
        assert rest == b"" and s.recv(10) == b""  # and the server closed the connection
    assert asgi_calls == []


def test_a_smaller_body_limit_still_applies_on_the_fast_path(engine, key):
    """``kms serve --max-body`` below the fast path's size: the limit still refuses the request."""
    import asyncio

    app = KMSApp(ServerConfig(max_body=64), engine=engine)
    try:
        key_id = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        engine.call("Encrypt", {"KeyId": key_id, "Plaintext": b"x"})  # the key is cached
        app.credentials.load(key["AccessKeyId"])  # and so is the access key
        head, body = _signed(1, key, "Encrypt", {"KeyId": key_id, "Plaintext": "QUFB" * 40})
        scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/", "query_string": b"",
                 "client": ("127.0.0.1", 1), "http_version": "1.1",
                 "headers": [(k.strip().lower().encode(), v.strip().encode()) for k, _, v in
                             (line.partition(":") for line in head.decode().split("\r\n")[1:] if line)]}
        app._loop_calls = True  # as on a started server
        assert len(body) > 64 and app.answer_now(scope, body) is None
        inbox = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return inbox.pop(0)

        status, out = asyncio.run(app.handle(scope, receive, "r1"))
        assert status == 413 and b"RequestEntityTooLargeException" in out
    finally:
        if app.audit_log is not None:
            app.audit_log.close()

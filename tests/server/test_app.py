"""The ASGI app driven in-process: what the engine's policy/audit hooks receive."""
from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kms_core.server.app import KMSApp, ServerConfig
from kms_core.server.credentials import AccessKeys

HOST = "kms.test:8080"


def _request(app, key, target, payload, *, secret=None, region="eu-west-2", raw_body=None):
    body = raw_body if raw_body is not None else json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=f"http://{HOST}/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{target}",
                              "User-Agent": "test-agent/1.0"})
    SigV4Auth(Credentials(key["AccessKeyId"], secret or key["SecretAccessKey"]), "kms", region).add_auth(req)
    headers = [(k.lower().encode(), v.encode()) for k, v in req.headers.items()] + [(b"host", HOST.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/", "query_string": b"",
             "headers": headers, "client": ("203.0.113.9", 40000), "http_version": "1.1"}
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    asyncio.run(app(scope, receive, send))
    head = dict(sent[0]["headers"])
    return sent[0]["status"], json.loads(sent[1]["body"]), head[b"x-amzn-requestid"].decode()


def _app(engine):
    key = AccessKeys(engine.store, engine.settings.account_id).create("alice")["AccessKey"]
    # The tests attach their own recorders to the engine's hooks instead of the audit log.
    return KMSApp(ServerConfig(audit=False), engine=engine), key


def test_engine_receives_the_callers_context(engine):
    app, key = _app(engine)
    seen = []
    engine.auditor = lambda ctx, op, params, result, err: seen.append((ctx, op, err))
    status, body, request_id = _request(app, key, "CreateKey", {"Description": "ctx"})
    assert status == 200
    ctx, op, err = seen[-1]
    assert (op, err) == ("CreateKey", None)
    assert ctx.principal == "arn:aws:iam::111122223333:user/alice"
    assert ctx.account_id == "111122223333"
    assert ctx.access_key_id == key["AccessKeyId"]
    assert ctx.region == "eu-west-2" and body["KeyMetadata"]["Arn"].startswith("arn:aws:kms:eu-west-2:")
    assert ctx.source_ip == "203.0.113.9"
    assert ctx.user_agent.startswith("test-agent/1.0")
    assert ctx.request_id == request_id
    assert ctx.authenticated is True


def test_rejected_requests_are_reported(engine):
    app, key = _app(engine)
    rejected = []
    engine.record_rejected = lambda ctx, op, err: rejected.append((ctx, op, err))

    status, body, request_id = _request(app, key, "Encrypt", {"KeyId": "alias/x", "Plaintext": "aGk="},
                                        secret="w" * 40)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    ctx, op, err = rejected[-1]
    assert (op, err.code) == ("Encrypt", "InvalidSignatureException")
    assert ctx.authenticated is False and ctx.principal is None
    assert ctx.access_key_id == key["AccessKeyId"] and ctx.request_id == request_id
    assert ctx.source_ip == "203.0.113.9"

    status, body, _ = _request(app, key, "Encrypt", None, raw_body=b'{"KeyId": ')
    assert (status, body["__type"]) == (400, "SerializationException")
    ctx, op, err = rejected[-1]
    assert (op, err.code, ctx.authenticated) == ("Encrypt", "SerializationException", True)
    assert ctx.principal == "arn:aws:iam::111122223333:user/alice"

    status, body, _ = _request(app, key, "NoSuchThing", {})
    assert body["__type"] == "UnknownOperationException"
    assert rejected[-1][1] == "NoSuchThing"  # what the caller asked for, for the audit trail
    assert len(rejected) == 3


def test_unexpected_failure_is_an_internal_error_without_details(engine, caplog):
    app, key = _app(engine)
    secret_text = "do-not-log-this-plaintext"

    def broken(ctx, op, params, result, err):
        raise RuntimeError(f"bug while handling {params!r}")

    engine.auditor = broken
    with caplog.at_level(logging.DEBUG, logger="kms.server"):
        caplog.set_level(logging.ERROR, logger="kms.server")
        status, body, request_id = _request(
            app, key, "GenerateRandom", {"NumberOfBytes": 8},
        )
        plaintext = base64.b64encode(secret_text.encode()).decode()
        _, body2, _ = _request(app, key, "Encrypt", {"KeyId": "alias/none", "Plaintext": plaintext})
    assert status == 500
    assert body == {"__type": "KMSInternalException", "message": "An internal error occurred."}
    assert request_id in caplog.text and "RuntimeError" in caplog.text
    assert secret_text not in caplog.text and secret_text not in json.dumps(body2)


def test_fuzzed_requests_never_fail_internally(engine):
    """Random JSON bodies for random operations: always an AWS error or a success, never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from kms_core.model import OPERATIONS

    app, key = _app(engine)
    key_id = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    values = st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5000) | st.sampled_from(
            [key_id, "alias/aws/s3", "alias/x", "aGVsbG8=", "SYMMETRIC_DEFAULT", "AES_256", "", "default"]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(op=st.sampled_from(sorted(OPERATIONS)), data=st.data())
    def run(op, data):
        members = sorted(OPERATIONS[op].input_shape.members) or ["X"]
        payload = data.draw(st.dictionaries(st.sampled_from(members), values, max_size=4))
        status, body, _ = _request(app, key, op, payload)
        assert status < 500, (op, payload, body)
        assert set(body) <= {"__type", "message"} or status == 200

    run()


def test_engine_call_modes_answer_alike(engine):
    """'loop' answers from memory on the event loop and retries calls that need the
    database in the pool; 'threads' sends every call to the pool.  Both give the same
    answers, including for calls that must reach the store (writes, a cold cache)."""
    key = AccessKeys(engine.store, engine.settings.account_id).create("alice")["AccessKey"]
    apps = {mode: KMSApp(ServerConfig(audit=False, engine_calls=mode), engine=engine)
            for mode in ("loop", "threads")}
    assert apps["loop"]._loop_calls and not apps["threads"]._loop_calls
    nonblocking = []
    real = engine.call_nonblocking

    def spy(op, params, ctx):
        try:
            out = real(op, params, ctx)
        except Exception as e:
            nonblocking.append((op, type(e).__name__))
            raise
        nonblocking.append((op, "answered"))
        return out

    engine.call_nonblocking = spy
    for mode, app in apps.items():
        status, made, _ = _request(app, key, "CreateKey", {"Description": mode})
        assert status == 200
        key_id = made["KeyMetadata"]["KeyId"]
        engine.invalidate()  # a cold cache: the next Encrypt must read the store
        status, enc, _ = _request(app, key, "Encrypt", {"KeyId": key_id, "Plaintext": "aGk="})
        assert status == 200 and enc["KeyId"].endswith(key_id)
        status, dec, _ = _request(app, key, "Decrypt", {"CiphertextBlob": enc["CiphertextBlob"]})
        assert (status, dec["Plaintext"]) == (200, "aGk=")
        status, err, _ = _request(app, key, "Encrypt", {"KeyId": "alias/none", "Plaintext": "aGk="})
        assert (status, err["__type"]) == (400, "NotFoundException")
    loop_calls = nonblocking[:]
    # 'loop' tried every call on the event loop; the write and the cold read went to the pool.
    assert ("CreateKey", "WouldBlock") in loop_calls and ("Encrypt", "WouldBlock") in loop_calls
    assert ("Decrypt", "answered") in loop_calls
    assert len(loop_calls) == 4  # 'threads' never called call_nonblocking
    for app in apps.values():
        app.pool.shutdown()


def test_request_ids_differ_after_fork():
    import os
    import uuid

    from kms_core.server.app import new_request_id

    new_request_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must not be the parent's next id
        os.write(w, new_request_id().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    mine = new_request_id()
    assert uuid.UUID(child).version == 4 and uuid.UUID(mine).version == 4
    assert child != mine


def test_every_request_is_audited_once_even_when_it_fails_unexpectedly(engine, monkeypatch):
    """#15.5: a bug before dispatch, in the engine (before it audits) or after it audited
    (encoding the answer): each request is still answered with a typed error and recorded once."""
    from collections import Counter

    from kms_core.server import wire

    events = []
    engine.auditor = lambda ctx, op, params, result, err: events.append((ctx.request_id, op, err))
    app, key = _app(engine)  # the app notes what the engine's auditor records

    def boom(*_args):
        raise AttributeError("a bug")

    monkeypatch.setitem(engine._handlers, "ListKeys", boom)
    in_engine = _request(app, key, "ListKeys", {})
    monkeypatch.setattr(wire, "encode_response", boom)
    after_engine = _request(app, key, "GenerateRandom", {"NumberOfBytes": 8})
    monkeypatch.setattr(wire, "decode_request", boom)
    before_engine = _request(app, key, "DescribeKey", {"KeyId": "alias/x"})

    counts = Counter(rid for rid, _, _ in events)
    for status, body, rid in (in_engine, after_engine, before_engine):
        assert (status, body["__type"]) == (500, "KMSInternalException")
        assert counts[rid] == 1
    by_id = {rid: (op, err.code if err else None) for rid, op, err in events}
    assert by_id[in_engine[2]] == ("ListKeys", "KMSInternalException")
    assert by_id[after_engine[2]] == ("GenerateRandom", None)  # the engine's own (success) record
    assert by_id[before_engine[2]] == ("DescribeKey", "KMSInternalException")


def test_extra_asgi_apps_mount_under_a_prefix(engine):
    """Any ASGI app is served under its prefix; POST / and /health stay the server's."""
    app, key = _app(engine)
    seen = []

    async def extra(scope, receive, send):
        seen.append((scope["path"], scope["root_path"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"extra"})

    app.mount("/extra", extra)

    def get(path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [], "client": ("127.0.0.1", 1), "root_path": ""}
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], sent[1]["body"]

    assert get("/extra/keys") == (200, b"extra")
    assert get("/extra") == (200, b"extra")
    assert seen == [("/extra/keys", "/extra"), ("/extra", "/extra")]
    assert get("/extrax")[0] == 404 and get("/health")[0] == 200
    assert _request(app, key, "ListKeys", {})[0] == 200
    for bad in ("/", "/health"):
        with pytest.raises(ValueError):
            app.mount(bad, extra)


def test_the_servers_auditor_still_offers_flush_and_admit(engine, monkeypatch):
    """The server wraps the audit log to note what it recorded; waiting on the log
    (GetKeyLastUsage, the console's audit page) must still wait on the real writer."""
    import time

    from kms_core.audit.writer import AuditLog

    app = KMSApp(ServerConfig(), engine=engine)
    try:
        assert app.engine.auditor.admit == app.audit_log.admit
        slow_append = AuditLog._append

        def append_late(self, events):  # the writer commits 0.3 s after each batch is taken
            time.sleep(0.3)
            slow_append(self, events)

        monkeypatch.setattr(AuditLog, "_append", append_late)
        key_id = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        engine.call("Encrypt", {"KeyId": key_id, "Plaintext": b"x"})
        usage = engine.call("GetKeyLastUsage", {"KeyId": key_id})
        assert usage.get("KeyLastUsage", {}).get("Operation") == "Encrypt", usage
    finally:
        app.audit_log.close()


def test_request_ids_are_version_4_uuids_as_uuid_writes_them(monkeypatch):
    import random
    import uuid

    from kms_core.server import app as app_module

    bits = random.Random(7)
    for n in [0, (1 << 128) - 1] + [bits.getrandbits(128) for _ in range(2000)]:
        monkeypatch.setattr(app_module._ids, "getrandbits", lambda k, n=n: n)
        assert app_module.new_request_id() == str(uuid.UUID(int=n, version=4))


def test_marking_auditor_hands_the_engine_the_audit_logs_admit(engine):
    """The engine reads ``auditor.admit`` on every request: a plain attribute of the
    wrapper (the audit log's own bound method), other attributes forwarded."""
    import threading

    from kms_core.audit import attach
    from kms_core.server.app import _MarkingAuditor

    log = attach(engine)
    wrapped = _MarkingAuditor(log, threading.local())
    assert "admit" in vars(wrapped) and wrapped.admit == log.admit
    assert wrapped.flush == log.flush
    bare = _MarkingAuditor(lambda *a: None, threading.local())
    assert getattr(bare, "admit", None) is None
    log.close()

"""The node's audit writer process (kms_core/audit_relay.py): workers ship
captured requests to it; it appends them to the same chain, and nothing is
lost when it is killed, fed garbage or stopped."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kms_core.audit import AuditReader, _Renderer, attach
from kms_core.audit_relay import (RelayError, _FRAME, decode_batch, encode_batch, start_writer)
from kms_core.engine import RequestContext
from kms_core.errors import KMSError

ACCOUNT = "111122223333"


@pytest.fixture
def writer(engine):
    """A real writer process on the engine's store (its env: KMS_HOME, KMS_ROOT_KEY)."""
    w = start_writer(engine.settings.store_url)
    yield w
    if w.proc.poll() is None:
        w.stop(30)


def _closed_without_ack(sock) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(8) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


def _events(store) -> list[dict]:
    return [json.loads(body) for _, body in AuditReader(store).events()]


# --------------------------------------------------------------- the wire form
texts = st.text(max_size=20)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), texts)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=8)
contexts = st.one_of(st.none(), st.builds(
    RequestContext, region=st.sampled_from([None, "us-east-1", "eu-west-1"]),
    account_id=st.sampled_from([None, ACCOUNT]),
    principal=st.sampled_from([None, f"arn:aws:iam::{ACCOUNT}:user/alice",
                               f"arn:aws:iam::{ACCOUNT}:root"]),
    source_ip=st.sampled_from([None, "127.0.0.1"]), user_agent=st.one_of(st.none(), texts),
    request_id=st.one_of(st.none(), st.uuids().map(str)),
    access_key_id=st.sampled_from([None, "AKIAIOSFODNN7EXAMPLE"]),
    via_service=st.sampled_from([None, "s3.us-east-1.amazonaws.com"]),
    authenticated=st.booleans()))
results = st.one_of(st.none(), st.fixed_dictionaries(
    {"KeyId": st.sampled_from(["1234abcd-12ab-34cd-56ef-1234567890ab", "alias/x"])},
    optional={"KeyMetadata": st.fixed_dictionaries({
        "CreationDate": st.datetimes(timezones=st.just(timezone.utc)), "Enabled": st.booleans(),
        "Description": texts})}))
errors = st.one_of(st.none(), st.builds(KMSError, st.sampled_from(
    ["AccessDeniedException", "NotFoundException"]), texts))
items = st.tuples(st.floats(0, 2e9), contexts,
                  st.sampled_from(["Encrypt", "Decrypt", "CreateKey", "DescribeKey", "ListKeys"]),
                  st.dictionaries(st.sampled_from(["KeyId", "Description", "EncryptionContext",
                                                   "Tags", "Limit"]), values, max_size=4),
                  results, errors)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, min_size=1, max_size=5))
def test_an_event_rendered_by_the_writer_is_the_event_the_worker_would_have_written(batch):
    decoded = decode_batch(encode_batch(batch))
    assert len(decoded) == len(batch)
    for a, b in zip(batch, decoded):
        ra, rb = _Renderer(ACCOUNT, "us-east-1"), _Renderer(ACCOUNT, "us-east-1")
        ea = ra.render(a[1], a[2], a[3], a[4], a[5], a[0], "e" * 36, "r" * 36)
        eb = rb.render(b[1], b[2], b[3], b[4], b[5], b[0], "e" * 36, "r" * 36)
        assert ea == eb


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_payloads_are_a_typed_error(data):
    try:
        out = decode_batch(data)
    except RelayError:
        return
    assert isinstance(out, list)  # the rare bytes that are a valid (empty or tiny) batch


def test_datetimes_travel_as_cloudtrails_text():
    when = datetime(2022, 8, 10, 22, 38, 27, tzinfo=timezone.utc)
    (item,) = decode_batch(encode_batch([(1.0, None, "CreateKey", {}, {"KeyMetadata": {"CreationDate": when}}, None)]))
    assert item[4] == {"KeyMetadata": {"CreationDate": "Aug 10, 2022, 10:38:27 PM"}}


# ------------------------------------------------------------ a real writer
def test_relayed_events_form_one_verified_chain(engine, kms, writer):
    log = attach(engine, relay=writer.path)
    assert log._relay is not None
    key = kms.create_key(Description="relayed")["KeyMetadata"]["KeyId"]
    for i in range(300):
        kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"i": str(i)})
    assert log.flush(30)
    evs = _events(engine.store)  # committed by the other process before flush returned
    assert [e["eventName"] for e in evs] == ["CreateKey"] + ["Encrypt"] * 300
    assert [e["requestParameters"]["encryptionContext"]["i"] for e in evs[1:]] == [str(i) for i in range(300)]
    assert log.appended == 0  # this process appended nothing itself
    log.close()
    assert writer.stop(30) == 0
    rep = AuditReader(engine.store).verify()
    assert rep.ok and rep.checked == 301


def test_killing_the_writer_loses_nothing(engine, kms, writer, caplog):
    log = attach(engine, relay=writer.path, flush_interval=0.01)
    key = kms.create_key(Description="k")["KeyMetadata"]["KeyId"]
    for i in range(200):
        kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"i": str(i)})
    os.kill(writer.proc.pid, signal.SIGKILL)
    writer.proc.wait(10)
    with caplog.at_level(logging.ERROR, logger="kms_core.audit"):
        for i in range(200, 400):
            kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"i": str(i)})
        assert log.flush(30)
    assert log._relay is None and "writer process failed" in caplog.text
    seen = [e["requestParameters"]["encryptionContext"]["i"] for e in _events(engine.store)
            if e["eventName"] == "Encrypt"]
    assert set(seen) == {str(i) for i in range(400)}  # at least once: a batch may repeat
    log.close()
    assert AuditReader(engine.store).verify().ok


def test_a_garbled_connection_is_dropped_and_the_writer_carries_on(engine, kms, writer):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(writer.path)
        junk = b"\x80\x05not a pickle at all"
        s.sendall(_FRAME.pack(len(junk), 1) + junk)
        assert _closed_without_ack(s)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(writer.path)
        s.sendall(struct.pack(">IQ", 2**31, 1))  # an absurd length: refused before reading it
        assert _closed_without_ack(s)
    log = attach(engine, relay=writer.path)
    kms.list_keys()
    assert log.flush(30)
    assert [e["eventName"] for e in _events(engine.store)] == ["ListKeys"]
    log.close()
    assert writer.proc.poll() is None


def test_the_writer_exits_when_its_parent_lets_go(engine, kms, writer):
    log = attach(engine, relay=writer.path)
    kms.list_keys()
    log.close()
    t0 = time.monotonic()
    assert writer.stop(30) == 0 and time.monotonic() - t0 < 30
    assert not os.path.exists(writer.path)  # its private directory is removed
    assert [e["eventName"] for e in _events(engine.store)] == ["ListKeys"]


def test_an_unreachable_writer_means_writing_here(engine, kms, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="kms_core.audit"):
        log = attach(engine, relay=str(tmp_path / "nobody-listens.sock"))
    assert log._relay is None and "unreachable" in caplog.text
    kms.list_keys()
    assert log.flush(30) and log.appended == 1
    log.close()


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root (to act as another user) and a system Python")
def test_another_user_cannot_feed_the_writer(engine, writer):
    # The socket's directory is private (0700); open it up to prove the writer
    # checks the peer's uid as well.
    os.chmod(os.path.dirname(writer.path), 0o755)
    os.chmod(writer.path, 0o777)
    payload = encode_batch([(1.0, None, "ListKeys", {}, None, None)])
    child = (  # "nobody" connects and tries to append an event; exit 0 if refused
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(bytes.fromhex(sys.argv[2])); s.settimeout(10)\n"
        "try:\n    answer = s.recv(8)\nexcept ConnectionResetError:\n    answer = b''\n"
        "sys.exit(0 if answer == b'' else 1)\n")
    frame = _FRAME.pack(len(payload), 1) + payload
    # The system interpreter: "nobody" may not enter the directory of ours.
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", child, writer.path, frame.hex()], cwd="/",
                          user=65534, group=65534, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert writer.stop(30) == 0
    assert _events(engine.store) == []

"""Engine-level guarantees of the writer: every request gets exactly one event (a bug
included), durable mode answers only after the event is committed, and the log
fails closed — requests are refused while events cannot be written, and served
again once they can."""
from __future__ import annotations

import json
import threading

import pytest

from kms_core.audit import AuditReader, attach
from kms_core.audit.writer import AuditUnavailable
from kms_core.errors import KMSError


def _events(log) -> list[dict]:
    return [json.loads(b) for _, b in AuditReader(log.store).events()]


def test_an_unexpected_exception_still_gets_one_event(engine, make_client):
    """A bug inside an operation (not a KMSError) is recorded as the server answers
    it — KMSInternalException — and never with the exception's text."""
    log = attach(engine)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]

    def boom(*args):
        raise RuntimeError("internal detail: SECRET-IN-EXCEPTION-TEXT")

    engine._handlers["Encrypt"] = boom
    with pytest.raises(RuntimeError):
        engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x" * 16})
    assert log.flush(30)
    evs = _events(log)
    assert [e["eventName"] for e in evs] == ["CreateKey", "Encrypt"]
    assert evs[1]["errorCode"] == "KMSInternalException"
    assert evs[1]["errorMessage"] == "An internal error occurred."
    assert "SECRET-IN-EXCEPTION" not in json.dumps(evs)
    log.close()


def test_durable_mode_answers_after_the_event_is_committed(engine, make_client):
    log = attach(engine, durability="durable", flush_interval=30.0)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for i in range(20):
        kms.encrypt(KeyId=key, Plaintext=b"p" * 8)
        # no flush: what the caller has seen answered is already in the database
        assert len(_events(log)) == i + 2
    log.close()


def test_durable_mode_groups_concurrent_requests_into_one_commit(engine, make_client):
    log = attach(engine, durability="durable")
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    commits = []
    real = type(log)._append

    def counting(self, events):
        commits.append(len(events))
        return real(self, events)

    type(log)._append = counting
    try:
        def worker():
            for _ in range(50):
                kms.encrypt(KeyId=key, Plaintext=b"p")
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        type(log)._append = real
    assert sum(commits) == 400 and len(commits) < 400  # group commit, nothing lost
    assert AuditReader(log.store).verify().ok
    log.close()


@pytest.mark.parametrize("durability", ["durable", "buffered"])
def test_refuses_while_the_log_cannot_be_written_and_recovers(engine, make_client, durability):
    log = attach(engine, durability=durability, flush_interval=0.01, commit_timeout=2.0)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert log.flush(30)
    broken = threading.Event()
    broken.set()
    real = type(log)._append

    def full_disk(self, events):
        if broken.is_set():
            raise OSError(28, "No space left on device")
        return real(self, events)

    type(log)._append = full_disk
    try:
        ok_while_broken = 0
        refused = None
        for _ in range(500):  # the first failed append switches the log to refusing
            try:
                kms.encrypt(KeyId=key, Plaintext=b"p")
                ok_while_broken += 1
            except kms.exceptions.DependencyTimeoutException as e:
                refused = e
                break
            log._wake.set()
            threading.Event().wait(0.005)
        assert refused is not None, "requests were still served while the log could not be written"
        assert "audit log" in refused.response["Error"]["Message"]
        assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        if durability == "durable":
            assert ok_while_broken == 0  # nothing answered without its event
        assert not log.healthy
        with pytest.raises(KMSError) as e:  # and before anything is done: CreateKey too
            engine.call("CreateKey", {})
        assert e.value.code == "DependencyTimeoutException"
        broken.clear()  # space is back
        assert log.flush(30)
        assert log.healthy
        kms.encrypt(KeyId=key, Plaintext=b"p")
    finally:
        type(log)._append = real
    assert log.flush(30)
    evs = _events(log)
    # the refused CreateKey (and in buffered mode the refused Encrypt) are recorded too
    assert sum(1 for e in evs if e.get("errorCode") == "DependencyTimeoutException") >= 1
    assert evs[-1]["eventName"] == "Encrypt" and "errorCode" not in evs[-1]
    assert AuditReader(log.store).verify().ok
    log.close()


def test_a_durable_request_is_refused_when_its_event_cannot_be_committed(engine, make_client):
    log = attach(engine, durability="durable", commit_timeout=0.5)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    real = type(log)._append

    def stuck(self, events):
        raise OSError(28, "No space left on device")

    type(log)._append = stuck
    try:
        with pytest.raises(kms.exceptions.DependencyTimeoutException):
            kms.encrypt(KeyId=key, Plaintext=b"p")
    finally:
        type(log)._append = real
    log.close()


def test_close_is_bounded_while_the_log_cannot_be_written(engine, make_client, monkeypatch):
    import time
    log = attach(engine, durability="buffered", flush_interval=0.01)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]

    def full(self, events):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(log), "_append", full)
    kms.encrypt(KeyId=key, Plaintext=b"p")
    t0 = time.monotonic()
    log.close(timeout=30)
    assert time.monotonic() - t0 < 15  # not the 30 s flush, nor forever


def test_admission_error_is_aws_shaped():
    e = AuditUnavailable("x")
    assert e.code == "DependencyTimeoutException" and e.status == 503

"""The audit log's writer process (``writer="process"``, what ``kms serve`` uses):
the same events and chain as the in-process writer, the same failing closed, and
a child that is restarted when it dies and ends when the log closes."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time

import pytest

from kms_core.audit import AuditReader, attach
from kms_core.audit.writer import AuditUnavailable
from kms_core.audit.writer_process import frame
from kms_core.engine.records import RequestContext
from kms_core.errors import KMSError

from .conftest import ALICE, stored

SECRET = b"PLAINTEXT-MUST-NOT-LEAVE-THE-WORKER"


def _drive(kms, key: str, n: int) -> None:
    for _ in range(n):
        kms.encrypt(KeyId=key, Plaintext=SECRET)


def _without_ids(ev: dict, key_id: str) -> dict:
    """The event without what differs between two runs: ids, times, the key's id and
    its material's id."""
    text = json.dumps({k: v for k, v in ev.items() if k not in ("eventID", "requestID", "eventTime")})
    return json.loads(re.sub(r"[0-9a-f]{64}", "<material>", text.replace(key_id, "<key>")))


def test_the_process_writes_the_events_the_thread_writes(make_engine, make_client):
    """Same requests, one engine per writer: the events differ only in their ids and
    times, and both chains verify."""
    logs = {}
    for writer in ("thread", "process"):
        eng = make_engine(store_url=f"sqlite:///{os.environ['KMS_HOME']}/{writer}.db")
        log = attach(eng, writer=writer)
        assert log.writer == writer
        kms = make_client(engine=eng, principal=ALICE)
        key = kms.create_key(Description="same")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/same", TargetKeyId=key)
        _drive(kms, "alias/same", 3)
        with pytest.raises(kms.exceptions.NotFoundException):
            kms.encrypt(KeyId="alias/missing", Plaintext=SECRET)
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        logs[writer] = (log, key)
    (t_log, t_key), (p_log, p_key) = logs["thread"], logs["process"]
    t_evs, p_evs = stored(t_log), stored(p_log)
    assert len(p_evs) == len(t_evs) == 7
    assert [_without_ids(e, p_key) for e in p_evs] == [_without_ids(e, t_key) for e in t_evs]
    assert p_evs[5]["errorCode"] == "NotFoundException"  # errors cross the pipe with code and message
    assert p_evs[5]["errorMessage"] == t_evs[5]["errorMessage"]
    for log in (t_log, p_log):
        report = AuditReader(log.store).verify()
        assert report.ok, report.problems
        assert SECRET.decode() not in json.dumps(stored(log))
        log.close()


def test_a_batch_on_the_pipe_holds_no_secret_and_no_live_object(engine):
    """What crosses the pipe is what the request path captured: secrets already
    dropped, the context as plain values, the error as its code and message."""
    log = attach(engine, writer="process")
    ctx = RequestContext(principal=ALICE, request_id="r-1", source_ip="10.0.0.1")
    items = [log._capture(ctx, "Encrypt", {"KeyId": "k", "Plaintext": SECRET},
                          {"KeyId": "k", "CiphertextBlob": SECRET}, None),
             log._capture(ctx, "GenerateDataKey", {"KeyId": "k"},
                          {"KeyId": "k", "Plaintext": SECRET, "CiphertextBlob": b"c"}, None),
             log._capture(ctx, "Decrypt", {"CiphertextBlob": SECRET}, None,
                          KMSError("InvalidCiphertextException", "bad"))]
    data = frame(items)
    assert SECRET not in data
    back = pickle.loads(data)
    assert back[0][1][2] == ALICE and back[0][1][5] == "r-1"  # the context as plain fields
    assert (back[2][5].code, back[2][5].message) == ("InvalidCiphertextException", "bad")
    log.close()


def test_a_value_that_cannot_be_pickled_still_gets_its_event(engine):
    """An odd parameter cannot cross the pipe: the request keeps an event with its
    operation and outcome, and the rest of the batch is intact."""
    log = attach(engine, writer="process")
    ctx = RequestContext(principal=ALICE)
    log(ctx, "Encrypt", {"KeyId": "alias/a"}, None, KMSError("NotFoundException", "nope"))
    log(ctx, "ListKeys", {"Odd": lambda: None}, {"Keys": []}, None)
    log(ctx, "ListAliases", {}, {"Aliases": []}, None)
    evs = stored(log)
    assert [e["eventName"] for e in evs] == ["Encrypt", "ListKeys", "ListAliases"]
    assert evs[0]["userIdentity"]["arn"] == ALICE and evs[0]["errorCode"] == "NotFoundException"
    assert evs[1]["requestParameters"] is None
    assert AuditReader(log.store).verify().ok
    log.close()


def test_a_killed_writer_process_is_replaced_and_loses_nothing(engine, make_client):
    log = attach(engine, writer="process")
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    _drive(kms, key, 5)
    assert log.flush(30)
    first = log._child.pid
    os.kill(first, signal.SIGKILL)
    _drive(kms, key, 5)  # queued while the child is dead: the next batch finds out
    evs = stored(log)
    assert len(evs) == 11
    assert log._child.pid != first and log._child.starts == 2
    assert log.healthy
    assert AuditReader(log.store).verify().ok
    log.close()


def test_the_log_fails_closed_while_the_writer_process_cannot_append(engine, make_client):
    """A child that cannot open the store (here: the wrong root key) answers with an
    error: requests are refused, as when the thread's append fails, and served again
    (with every event kept) once a child can append."""
    log = attach(engine, writer="process")
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert log.flush(30)
    good = log._child._settings["root_key"]
    log._child._settings["root_key"] = bytes(32)
    os.kill(log._child.pid, signal.SIGKILL)
    _drive(kms, key, 2)  # admitted before the failure is known
    deadline = time.monotonic() + 30
    while log.healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not log.healthy
    with pytest.raises(kms.exceptions.DependencyTimeoutException):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    with pytest.raises(AuditUnavailable):
        log.admit()
    log._child._settings["root_key"] = good
    deadline = time.monotonic() + 30
    while not log.healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.healthy
    _drive(kms, key, 1)
    names = [e["eventName"] for e in stored(log)]
    # CreateKey, the two admitted Encrypts, the refusal, the one after recovery
    assert names == ["CreateKey"] + ["Encrypt"] * 4
    assert AuditReader(log.store).verify().ok
    log.close()


def test_durable_mode_through_the_process(engine, make_client):
    log = attach(engine, writer="process", durability="durable", flush_interval=30.0)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for i in range(5):
        kms.encrypt(KeyId=key, Plaintext=b"p")
        # no flush: what the caller has seen answered is already in the database
        assert len(AuditReader(log.store).events()) == i + 2
    log.close()


def test_the_writer_process_ignores_signals_to_the_group_and_ends_with_the_log(engine, make_client):
    """Ctrl-C or a service manager's SIGTERM reaches the whole process group: the child
    outlives it so that the worker can hand over its last batch, and ends when the
    log closes (end of its input)."""
    log = attach(engine, writer="process")
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert log.flush(30)  # the child is up (its signal handlers set)
    child = log._child._proc
    os.kill(child.pid, signal.SIGTERM)
    os.kill(child.pid, signal.SIGINT)
    _drive(kms, key, 3)
    assert log.flush(30)
    assert child.poll() is None and log._child.starts == 1
    log.close()
    assert child.poll() is not None  # reaped: no zombie left behind
    assert len(AuditReader(log.store).events()) == 4
    assert "root_key" not in repr(log._child) and "pid=" in repr(log._child)


def test_an_in_memory_store_keeps_the_thread_writer(make_engine):
    log = attach(make_engine(store_url="sqlite://"), writer="process")
    assert log.writer == "thread" and log._child is None
    log.close()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_two_workers_writer_processes_extend_one_chain(make_engine, make_client, request, backend):
    """Two logs on one server database, as two workers' writer processes: every event
    is appended once, in one chain that verifies."""
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "mysql_url")
    engines = [make_engine(store_url=url) for _ in range(2)]
    logs = [attach(e, writer="process") for e in engines]
    clients = [make_client(engine=e) for e in engines]
    key = clients[0].create_key()["KeyMetadata"]["KeyId"]
    for _ in range(10):
        for kms in clients:
            kms.encrypt(KeyId=key, Plaintext=SECRET)
    for log in logs:
        assert log.flush(30)
    rows = AuditReader(logs[0].store).events()
    assert len(rows) == 21 and [seq for seq, _ in rows] == list(range(1, 22))
    assert AuditReader(logs[0].store).verify().ok
    for log in logs:
        log.close()


def test_a_log_closed_before_its_writer_process_is_ready_leaves_no_traceback(engine, capfd):
    """Closing at once (a worker stopped during start-up) ends the child quietly."""
    for _ in range(3):
        log = attach(engine, writer="process")
        child = log._child._proc
        log.close()
        assert child.poll() is not None
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err

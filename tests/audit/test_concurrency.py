"""Several writers, one chain: two engines on one PostgreSQL store (as two
nodes), MariaDB, many threads, a full queue, and flushing at interpreter exit."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import kms_core
from kms_core.audit import AuditReader, attach


def _hammer(kms, key: str, n: int, errors: list):
    try:
        for i in range(n):
            blob = kms.encrypt(KeyId=key, Plaintext=b"payload-%06d" % i)["CiphertextBlob"]
            kms.decrypt(CiphertextBlob=blob)
            if i % 10 == 0:
                try:
                    kms.describe_key(KeyId="alias/does-not-exist")
                except kms.exceptions.NotFoundException:
                    pass
    except Exception as e:  # surfaced by the test thread
        errors.append(e)


def _per_thread_calls(n: int) -> int:
    return 2 * n + (n + 9) // 10


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_nodes_append_one_chain(make_engine, request, tmp_path, backend):
    """Two engines (separate stores, connections and writers: two nodes, in
    effect) on one PostgreSQL database, or two processes' worth on one SQLite file."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else \
        f"sqlite:///{tmp_path / 'shared.db'}"
    e1, e2 = make_engine(store_url=url), make_engine(store_url=url)
    # small batches and a short interval so the two writers interleave a lot
    logs = [attach(e, batch_size=25, flush_interval=0.01) for e in (e1, e2)]
    c1, c2 = kms_core.client(engine=e1), kms_core.client(engine=e2)
    key = c1.create_key(Description="shared")["KeyMetadata"]["KeyId"]
    n, errors, threads = 60, [], []
    for c in (c1, c1, c2, c2):
        threads.append(threading.Thread(target=_hammer, args=(c, key, n, errors)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    for log in logs:
        assert log.flush(60)
    total = 1 + 4 * _per_thread_calls(n)
    assert sum(log.appended for log in logs) == total
    assert min(log.appended for log in logs) > 3 * _per_thread_calls(n) // 2
    for reader in (AuditReader(e1.store), AuditReader(e2.store)):
        rep = reader.verify()
        assert rep.ok, rep.problems[:3]
        assert rep.checked == total and rep.head_seq == total
    seqs = [s for s, _ in AuditReader(e1.store).events()]
    assert seqs == list(range(1, total + 1))
    for log in logs:
        log.close()


def test_mariadb_store(make_engine, mysql_url):
    eng = make_engine(store_url=mysql_url)
    log = attach(eng)
    kms = kms_core.client(engine=eng)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"to mariadb 000001", EncryptionContext={"ünïcode": "välue ✓"})
    log.flush()
    reader = AuditReader(eng.store)
    assert reader.verify().ok
    ev = json.loads(reader.events(operation="Encrypt")[0][1])
    assert ev["requestParameters"]["encryptionContext"] == {"ünïcode": "välue ✓"}
    from sqlalchemy import update

    from kms_core.audit import audit_events
    with eng.store.engine.begin() as c:
        c.execute(update(audit_events).where(audit_events.c.seq == 1).values(principal="x"))
    assert [(p.seq, p.kind) for p in reader.verify().problems] == [(1, "index")]
    log.close()


def test_full_queue_blocks_instead_of_dropping(engine, make_client):
    log = attach(engine, max_pending=20, batch_size=5, flush_interval=0.01)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    n, errors = 150, []
    threads = [threading.Thread(target=_hammer, args=(kms, key, n, errors)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert log.flush(60)
    total = 1 + 3 * _per_thread_calls(n)
    rep = AuditReader(engine.store).verify()
    assert rep.ok and rep.checked == total == log.appended
    log.close()


def test_flush_waits_for_exactly_what_came_before(engine, make_client):
    log = attach(engine, flush_interval=60)  # the writer would otherwise sleep a minute
    kms = make_client()
    for _ in range(7):
        kms.list_keys()
    assert log.flush(10)
    assert len(AuditReader(engine.store).events()) == 7
    log.close()


def test_buffered_writer_commits_once_per_interval_under_load(engine, make_client):
    """Events arriving while a commit runs wait for the next interval: the writer does
    not go straight back to commit them in ever smaller batches (each commit would
    also take the GIL from the request thread; docs/server.md)."""
    log = attach(engine, flush_interval=0.2)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert log.flush(10)
    slow, commits = log._append, []

    def append(events):  # a slow disk: each commit takes 20 ms
        commits.append(len(events))
        time.sleep(0.02)
        slow(events)

    log._append = append
    deadline = time.monotonic() + 0.7
    n = 0
    while time.monotonic() < deadline:
        kms.encrypt(KeyId=key, Plaintext=b"x")
        n += 1
        time.sleep(0.001)
    assert log.flush(10)
    assert sum(commits) == n
    # 0.7 s at one commit per 0.2 s interval (+ the final flush): ~5; back to back: ~30
    assert len(commits) <= 7, commits
    log.close()


def test_buffered_writer_goes_on_at_once_with_a_backlog(engine, make_client):
    """A backlog (full batches queued while a commit ran) is committed at once, not
    one batch per flush_interval."""
    log = attach(engine, flush_interval=60, batch_size=10)
    kms = make_client()
    gate, plain = threading.Event(), log._append

    def append(events):  # the first commit waits until the backlog is queued
        gate.wait(10)
        plain(events)

    log._append = append
    for _ in range(35):
        kms.list_keys()
    gate.set()
    deadline = time.monotonic() + 10
    while log.appended < 35 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.appended == 35  # without flush(): the writer would otherwise sleep a minute
    log.close()


_CHILD = r"""
import sys, kms_core
from kms_core.audit import attach
kms = kms_core.client(store_url=sys.argv[1])
attach(kms.engine, flush_interval=60)
key = kms.create_key()["KeyMetadata"]["KeyId"]
for i in range(50):
    kms.encrypt(KeyId=key, Plaintext=b"child-process-%03d" % i)
# no flush, no close: interpreter exit must commit the queue
"""


def test_interpreter_exit_flushes(tmp_path, kms_home, root_key):
    url = f"sqlite:///{tmp_path / 'child.db'}"
    env = dict(os.environ, KMS_ROOT_KEY=base64.b64encode(root_key).decode())
    r = subprocess.run([sys.executable, "-c", _CHILD, url], env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    kms = kms_core.client(store_url=url)
    rep = AuditReader(kms.engine.store).verify()
    assert rep.ok and rep.checked == 51


def test_first_attach_race_on_postgresql_creates_one_chain_key(make_engine, pg_url):
    engines = [make_engine(store_url=pg_url) for _ in range(3)]
    logs, errors = [None] * 3, []

    def go(i):
        try:
            logs[i] = attach(engines[i], flush_interval=0.01)
            engines[i].call("ListKeys", {})
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len({log._key for log in logs}) == 1
    for log in logs:
        log.close()
    rep = AuditReader(engines[0].store).verify()
    assert rep.ok and rep.checked == 3

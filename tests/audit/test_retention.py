"""Export (JSON lines, CloudTrail's {"Records": [...]}) and pruning behind an anchor:
the chain stays verifiable, a tampered anchor is detected, an interrupted prune
leaves a verifiable log and resumes."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from kms_core.audit import AuditReader, attach, audit_events, audit_pruned, retention
from kms_core.audit_cli import main as audit_main


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = audit_main([*argv, "--no-progress"] if argv[0] in ("export", "prune") else list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def aged_log(engine, make_client, clock):
    """20 events on day 1, then 10 on day 2 (the engine's clock)."""
    log = attach(engine)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(19):
        kms.encrypt(KeyId=key, Plaintext=b"old")
    cutoff = clock.timestamp() + 3600
    clock.advance(days=1)
    for _ in range(10):
        kms.encrypt(KeyId=key, Plaintext=b"new")
    assert log.flush(30)
    yield log, kms, key, cutoff
    log.close()


def _url(engine) -> str:
    return engine.settings.store_url


def test_export_jsonl_and_cloudtrail_shape(engine, aged_log, tmp_path):
    log = aged_log[0]
    stored = [body for _, body in AuditReader(log.store).events()]
    rc, _, _ = _cli("export", "--store-url", _url(engine), "--output", str(tmp_path / "a.jsonl"))
    assert rc == 0
    assert (tmp_path / "a.jsonl").read_text().splitlines() == stored  # byte for byte
    assert stat.S_IMODE(os.stat(tmp_path / "a.jsonl").st_mode) == 0o600
    rc, _, _ = _cli("export", "--store-url", _url(engine), "--format", "cloudtrail",
                    "--output", str(tmp_path / "ct.json"))
    assert rc == 0
    doc = json.loads((tmp_path / "ct.json").read_text())
    assert list(doc) == ["Records"] and doc["Records"] == [json.loads(b) for b in stored]
    rc, out, _ = _cli("export", "--store-url", _url(engine), "--end-time", "1")
    assert rc == 0 and out == ""


def test_export_to_an_fsspec_url(engine, aged_log):
    import fsspec
    rc, _, err = _cli("export", "--store-url", _url(engine), "--output", "memory://audit/x.jsonl")
    assert rc == 0, err
    with fsspec.open("memory://audit/x.jsonl", "rb") as f:
        assert len(f.read().splitlines()) == 30


def test_export_then_prune_then_verify(engine, aged_log, tmp_path):
    log, kms, key, cutoff = aged_log
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff))
    rc, out, err = _cli("prune", "--store-url", _url(engine), "--before", before,
                        "--export", str(tmp_path / "old.jsonl"), "--chunk", "7")
    assert rc == 0, err
    assert "pruned 20 records" in out
    exported = [json.loads(line) for line in (tmp_path / "old.jsonl").read_text().splitlines()]
    assert len(exported) == 20 and exported[0]["eventName"] == "CreateKey"
    reader = AuditReader(log.store)
    assert [s for s, _ in reader.events()] == list(range(21, 31))
    rep = reader.verify()
    assert rep.ok and rep.checked == 10 and rep.pruned_seq == 20, rep.problems
    rc, out, _ = _cli("verify", "--store-url", _url(engine))
    assert rc == 0 and "records 1..20 pruned" in out
    kms.encrypt(KeyId=key, Plaintext=b"after prune")  # the chain continues
    assert log.flush(30)
    assert reader.verify().ok
    rc, out, _ = _cli("prune", "--store-url", _url(engine), "--before", before)  # idempotent
    assert rc == 0 and "pruned 0 records" in out


@pytest.mark.parametrize("edit", ["seq", "mac", "event_time", "delete"])
def test_a_tampered_anchor_fails_verify(engine, aged_log, edit):
    log, _, _, cutoff = aged_log
    retention.prune(log.store, cutoff)
    with log.store.engine.begin() as conn:
        t = audit_pruned
        if edit == "seq":
            conn.execute(update(t).values(seq=t.c.seq + 1))
            conn.execute(audit_events.delete().where(audit_events.c.seq == 21))
        elif edit == "mac":
            conn.execute(update(t).values(mac=bytes(32)))
        elif edit == "event_time":
            conn.execute(update(t).values(event_time=t.c.event_time + 86400))
        else:
            conn.execute(t.delete())
    rep = AuditReader(log.store).verify()
    assert not rep.ok
    text = " ".join(p.message for p in rep.problems)
    assert ("pruning anchor" in text) if edit != "delete" else ("records 1..20 are missing" in text)
    rc, out, _ = _cli("verify", "--store-url", _url(engine))
    assert rc == 1 and "TAMPERED" in out


def test_prune_never_hides_a_tampered_record(engine, aged_log):
    log, _, _, cutoff = aged_log
    with log.store.engine.begin() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 5)
                     .values(event=audit_events.c.event + " "))
    with pytest.raises(retention.TamperedLog, match="record 5"):
        retention.prune(log.store, cutoff, chunk=3)
    assert AuditReader(log.store).pruned() == (3, pytest.approx(
        AuditReader(log.store).pruned()[1]), pytest.approx(AuditReader(log.store).pruned()[2]))
    rep = AuditReader(log.store).verify()
    assert [p.seq for p in rep.problems] == [5]  # still there to be found


def test_an_interrupted_prune_leaves_a_verifiable_log_and_resumes(engine, aged_log, monkeypatch):
    log, _, _, cutoff = aged_log
    real = retention._commit_chunk
    calls = {"n": 0}

    def dies_after_two(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if killed between two chunks
        return real(*a, **kw)

    monkeypatch.setattr(retention, "_commit_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        retention.prune(log.store, cutoff, chunk=4)
    rep = AuditReader(log.store).verify()
    assert rep.ok and rep.pruned_seq == 8, rep.problems
    monkeypatch.setattr(retention, "_commit_chunk", real)
    res = retention.prune(log.store, cutoff, chunk=4)
    assert res.pruned_to == 20 and res.removed == 12
    rep = AuditReader(log.store).verify()
    assert rep.ok and rep.pruned_seq == 20 and rep.checked == 10


@pytest.mark.slow
def test_a_killed_prune_process_leaves_a_verifiable_log(engine, make_client, tmp_path):
    log = attach(engine)
    kms = make_client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(1500):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert log.flush(60)
    url = _url(engine)
    cmd = [sys.executable, "-c", "import sys; from kms_core.audit_cli import main; "
           "sys.exit(main(sys.argv[1:]))", "prune", "--store-url", url, "--before",
           str(time.time() + 86400), "--chunk", "5", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = AuditReader(log.store)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with log.store.reading() as conn:
                seq = conn.execute(select(audit_pruned.c.seq)).scalar()
            if seq:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    rep = reader.verify()
    assert rep.ok, rep.problems
    assert rep.pruned_seq + rep.checked == 1501
    rc, out, _ = _cli("prune", "--store-url", url, "--before", str(time.time() + 86400))
    assert rc == 0, out
    rep = reader.verify()
    assert rep.ok and rep.pruned_seq == 1501 and rep.checked == 0


# ------------------------------------------------------------------ the anchor's format
def _doc_vectors() -> dict:
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit-log.md").read_text()
    return json.loads(re.search(r"```json audit-vectors\n(.*?)\n```", doc, re.S).group(1))


def test_pruned_anchor_known_answer():
    import hashlib
    import hmac
    import struct

    from kms_core.audit import pruned_mac
    v = _doc_vectors()
    key, p = bytes.fromhex(v["key"]), v["pruned"]
    assert pruned_mac(key, p["seq"], bytes.fromhex(p["mac"]), p["event_time"]).hex() == p["anchor"]
    # the page's formula, with an independent HMAC implementation
    msg = (b"kms-audit/v1/pruned" + struct.pack(">Q", p["seq"]) + bytes.fromhex(p["mac"])
           + struct.pack(">Q", p["event_time"]))
    assert hmac.new(key, msg, hashlib.sha256).hexdigest() == p["anchor"]


def _vector_store_with_record_1_pruned(engine):
    from kms_core.audit import _KEY_AAD, audit_head
    v = _doc_vectors()
    key, p, rec = bytes.fromhex(v["key"]), v["pruned"], v["records"][1]
    store = engine.store
    AuditReader(store)  # creates the tables
    with store.engine.begin() as conn:
        conn.execute(audit_head.insert().values(
            id=1, format=1, sealed_key=store.seal(key, _KEY_AAD), seq=v["head"]["seq"],
            mac=bytes.fromhex(v["head"]["mac"]), anchor=bytes.fromhex(v["head"]["anchor"])))
        ev = json.loads(rec["event"])
        conn.execute(audit_events.insert().values(
            seq=2, format=1, event=rec["event"], mac=bytes.fromhex(rec["mac"]),
            event_time=p["event_time"] + 1, event_name=ev["eventName"],
            principal=ev["userIdentity"]["arn"], error_code=ev["errorCode"],
            key_ids=" " + ev["resources"][0]["ARN"].rsplit("/", 1)[-1] + " "))
        conn.execute(audit_pruned.insert().values(
            id=1, format=1, seq=p["seq"], mac=bytes.fromhex(p["mac"]), event_time=p["event_time"],
            pruned_at=p["event_time"] + 86400, anchor=bytes.fromhex(p["anchor"])))
    return store


def test_pruned_vector_verifies_in_a_store(engine):
    store = _vector_store_with_record_1_pruned(engine)
    rep = AuditReader(store).verify()
    assert rep.ok and rep.checked == 1 and rep.pruned_seq == 1, rep.problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["seq", "mac", "event_time", "anchor", "format"]), data=st.data())
def test_any_edit_of_the_anchor_row_fails_verify(engine, field, data):
    store = engine.store
    with store.engine.begin() as conn:  # fresh vector state for each example
        for t in (audit_pruned, audit_events):
            conn.execute(t.delete())
        from kms_core.audit import audit_head
        conn.execute(audit_head.delete())
    _vector_store_with_record_1_pruned(engine)
    if field == "mac":
        new = data.draw(st.binary(min_size=32, max_size=32).filter(
            lambda b: b != bytes.fromhex(_doc_vectors()["pruned"]["mac"])))
    elif field == "anchor":
        new = data.draw(st.binary(min_size=32, max_size=32).filter(
            lambda b: b != bytes.fromhex(_doc_vectors()["pruned"]["anchor"])))
    elif field == "seq":
        new = data.draw(st.integers(0, 2**40).filter(lambda n: n != 1))
    elif field == "event_time":
        new = data.draw(st.floats(0, 4e9).filter(lambda x: int(x) != 1767268800))
    else:
        new = data.draw(st.integers(0, 100).filter(lambda n: n != 1))
    with store.engine.begin() as conn:
        conn.execute(update(audit_pruned).values(**{field: new}))
    assert not AuditReader(store).verify().ok

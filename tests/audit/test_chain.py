"""Tamper evidence: known-answer vectors from docs/audit-log.md, the tamper
matrix (each kind of tampering is detected and the record named), fuzzing."""
from __future__ import annotations

import hashlib
import hmac as std_hmac
import json
import os
import re
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, update

from kms_core import audit as A
from kms_core.audit import AuditReader
from kms_core.audit import audit_events as T
from kms_core.audit import audit_head as H
from kms_core.engine import RequestContext
from kms_core.errors import KMSError

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"


# ------------------------------------------------------------------ vectors
def _vectors() -> dict:
    m = re.search(r"```json audit-vectors\n(.*?)\n```", DOC.read_text(), re.S)
    assert m, "docs/audit-log.md lost its vector block"
    return json.loads(m.group(1))


def _std(key: bytes, *parts: bytes) -> bytes:
    return std_hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def test_known_answer_vectors_render_and_chain():
    v = _vectors()
    key = bytes.fromhex(v["key"])
    assert A.genesis_mac(key).hex() == v["genesis_mac"]
    assert _std(key, b"kms-audit/v1/genesis").hex() == v["genesis_mac"]
    r = A._Renderer("111122223333", "us-east-1")
    prev = bytes.fromhex(v["genesis_mac"])
    for rec in v["records"]:
        inp = rec["input"]
        params = {k: (os.urandom(64) if k == "Plaintext" else val) for k, val in inp["params"].items()}
        err = KMSError(inp["error"]["code"], inp["error"]["message"]) if inp["error"] else None
        when = datetime.strptime(inp["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        body, _ = r.render(RequestContext(**inp["context"]), inp["operation"], A._strip(params),
                           inp["result"], err, when.timestamp(), inp["eventID"])
        assert body == rec["event"]
        mac = A.event_mac(key, rec["seq"], prev, rec["event"])
        assert mac.hex() == rec["mac"]
        # the page's formula, with an independent HMAC implementation
        assert _std(key, b"kms-audit/v1/event", struct.pack(">Q", rec["seq"]), prev,
                    rec["event"].encode()).hex() == rec["mac"]
        prev = mac
    head = v["head"]
    assert A.head_mac(key, head["seq"], bytes.fromhex(head["mac"])).hex() == head["anchor"]
    assert _std(key, b"kms-audit/v1/head", struct.pack(">Q", head["seq"]),
                bytes.fromhex(head["mac"])).hex() == head["anchor"]


def test_known_answer_vectors_verify_in_a_store(engine):
    """The vector records, stored with the vector key, pass verify; one byte off fails."""
    v = _vectors()
    key = bytes.fromhex(v["key"])
    store = engine.store
    AuditReader(store)  # creates the tables
    with store.engine.begin() as conn:
        conn.execute(insert(H).values(id=1, format=1, sealed_key=store.seal(key, A._KEY_AAD),
                                      seq=v["head"]["seq"], mac=bytes.fromhex(v["head"]["mac"]),
                                      anchor=bytes.fromhex(v["head"]["anchor"])))
        for rec in v["records"]:
            ev = json.loads(rec["event"])
            when = datetime.strptime(ev["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            conn.execute(insert(T).values(seq=rec["seq"], format=1, event=rec["event"],
                                          mac=bytes.fromhex(rec["mac"]),
                                          **A._index_columns(ev, when)))
    rep = AuditReader(store).verify()
    assert rep.ok, rep.problems
    assert rep.checked == 2 and rep.anchor == f"2:{v['head']['mac']}"
    with store.engine.begin() as conn:
        conn.execute(update(T).where(T.c.seq == 2).values(
            event=v["records"][1]["event"].replace("bob", "bom")))
    assert [p.seq for p in AuditReader(store).verify().problems] == [2]


# ------------------------------------------------------------------ tamper matrix
N = 10


@pytest.fixture
def log10(engine, audit, akms):
    """An audited store holding exactly N records."""
    key = akms.create_key()["KeyMetadata"]["KeyId"]
    for i in range(N - 1):
        akms.encrypt(KeyId=key, Plaintext=b"record %d......" % i)
    audit.flush()
    rep = AuditReader(engine.store).verify()
    assert rep.ok and rep.checked == N
    return engine.store


def _rows(store):
    with store.reading() as conn:
        return {r.seq: r for r in conn.execute(select(T))}


def _edit_event(store):
    r = _rows(store)[4]
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(event=r.event.replace('"readOnly":true', '"readOnly":false')))


def _edit_context(store):
    r = _rows(store)[4]
    ev = json.loads(r.event)
    ev["sourceIPAddress"] = "10.9.9.9"
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(event=json.dumps(ev, separators=(",", ":"))))


def _edit_mac(store):
    r = _rows(store)[4]
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(mac=bytes([r.mac[0] ^ 1]) + bytes(r.mac[1:])))


def _edit_filter_column(store):
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(event_name="ListKeys"))


def _hide_key(store):
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(key_ids=None))


def _delete(*seqs):
    def f(store):
        with store.engine.begin() as c:
            c.execute(delete(T).where(T.c.seq.in_(seqs)))
    return f


def _insert_at_end(store):
    r = _rows(store)[N]
    with store.engine.begin() as c:
        c.execute(insert(T).values(seq=N + 1, format=1, event=r.event.replace("record", "forged"),
                                   mac=os.urandom(32), event_time=r.event_time, event_name=r.event_name,
                                   principal=r.principal, key_ids=r.key_ids, error_code=None))


def _insert_in_middle(store):
    rows = _rows(store)
    with store.engine.begin() as c:
        for seq in range(N, 4, -1):  # renumber 5..N up by one, then slip a copy in at 5
            c.execute(update(T).where(T.c.seq == seq).values(seq=seq + 1))
        r = rows[3]
        c.execute(insert(T).values(seq=5, format=1, event=r.event, mac=r.mac, event_time=r.event_time,
                                   event_name=r.event_name, principal=r.principal,
                                   key_ids=r.key_ids, error_code=r.error_code))


def _swap(a, b):
    def f(store):
        rows = _rows(store)
        with store.engine.begin() as c:
            for x, y in ((a, b), (b, a)):
                r = rows[y]
                c.execute(update(T).where(T.c.seq == x).values(event=r.event, mac=r.mac))
    return f


def _replay(store):
    r = _rows(store)[2]
    with store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 7).values(event=r.event, mac=r.mac))


def _edit_head(store):
    with store.engine.begin() as c:
        c.execute(update(H).values(seq=N - 2))


def _truncate_and_fix_head(store):
    """Delete the last two records and point the head's seq/mac at record N-2
    (the anchor MAC cannot be recomputed without the key)."""
    r = _rows(store)[N - 2]
    with store.engine.begin() as c:
        c.execute(delete(T).where(T.c.seq > N - 2))
        c.execute(update(H).values(seq=N - 2, mac=r.mac))


def _delete_head(store):
    with store.engine.begin() as c:
        c.execute(delete(H))


def _replace_key(store):
    with store.engine.begin() as c:
        c.execute(update(H).values(sealed_key=store.seal(os.urandom(32), A._KEY_AAD)))


def _corrupt_sealed_key(store):
    with store.engine.begin() as c:
        sealed = c.execute(select(H.c.sealed_key)).scalar()
        c.execute(update(H).values(sealed_key=sealed[:-1] + bytes([sealed[-1] ^ 1])))


MATRIX = [
    # name, tamper, expected (record, kind) pairs that must be among the problems
    ("edit event", _edit_event, [(4, "altered")]),
    ("edit field (source IP)", _edit_context, [(4, "altered")]),
    ("edit MAC", _edit_mac, [(4, "altered")]),
    ("edit filter column", _edit_filter_column, [(4, "index")]),
    ("hide from key filter", _hide_key, [(4, "index")]),
    ("delete first", _delete(1), [(2, "missing"), (2, "altered")]),
    ("delete middle", _delete(5), [(6, "missing"), (6, "altered")]),
    ("delete several", _delete(3, 4, 5), [(6, "missing")]),
    ("delete last", _delete(N), [(N, "truncated")]),
    ("delete last three", _delete(N - 2, N - 1, N), [(N - 2, "truncated")]),
    ("delete all", _delete(*range(1, N + 1)), [(1, "truncated")]),
    ("insert at end", _insert_at_end, [(N + 1, "altered")]),
    # renumbering moves every later record, and each moved record fails
    ("insert in middle", _insert_in_middle, [(s, "altered") for s in range(5, N + 2)]),
    ("swap two", _swap(3, 6), [(3, "altered"), (6, "altered")]),
    ("reorder neighbours", _swap(8, 9), [(8, "altered"), (9, "altered")]),
    ("replay a record", _replay, [(7, "altered")]),
    ("edit head", _edit_head, [(None, "anchor")]),
    ("truncate and move head", _truncate_and_fix_head, [(None, "anchor")]),
    ("delete head", _delete_head, [(None, "anchor")]),
    # (re-sealing needs the root key; even then, no old record verifies)
    ("replace chain key", _replace_key, [(None, "anchor")] + [(s, "altered") for s in range(1, N + 1)]),
    ("corrupt sealed key", _corrupt_sealed_key, [(None, "key")]),
]


@pytest.mark.parametrize("name,tamper,expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_tampering_is_detected_and_located(log10, name, tamper, expected):
    tamper(log10)
    rep = AuditReader(log10).verify()
    assert not rep.ok
    found = {(p.seq, p.kind) for p in rep.problems}
    for want in expected:
        assert want in found, (name, rep.problems)
    # nothing is blamed on records that were not touched
    touched = {seq for seq, _ in expected if seq is not None}
    if touched:
        assert {p.seq for p in rep.problems} <= touched | {s + 1 for s in touched} | {None}


def test_rollback_to_an_older_copy_is_caught_by_an_external_anchor(engine, audit, akms):
    key = akms.create_key()["KeyMetadata"]["KeyId"]
    audit.flush()
    store = engine.store
    with store.reading() as conn:
        old_head = conn.execute(select(H)).one()
    for _ in range(5):
        akms.encrypt(KeyId=key, Plaintext=b"later event data")
    audit.flush()
    anchor = AuditReader(store).current_anchor()
    assert AuditReader(store).verify(anchor=anchor).ok
    # An attacker restores the old state: later rows gone, head row as it was.
    with store.engine.begin() as c:
        c.execute(delete(T).where(T.c.seq > old_head.seq))
        c.execute(update(H).values(seq=old_head.seq, mac=old_head.mac, anchor=old_head.anchor))
    assert AuditReader(store).verify().ok  # internally consistent: only an outside anchor helps
    rep = AuditReader(store).verify(anchor=anchor)
    assert not rep.ok and rep.problems[0].kind == "truncated"
    assert rep.problems[0].seq == int(anchor.split(":")[0])


def test_a_replaced_log_fails_an_external_anchor(engine, audit, akms):
    akms.list_keys()
    audit.flush()
    anchor = AuditReader(engine.store).current_anchor()
    with engine.store.engine.begin() as c:
        c.execute(update(T).where(T.c.seq == 1).values(mac=os.urandom(32)))
    rep = AuditReader(engine.store).verify(anchor=anchor)
    assert {p.kind for p in rep.problems} >= {"altered", "anchor"}


def test_appending_continues_the_chain_after_reopen(make_engine, kms_home):
    from kms_core.audit import attach
    e1 = make_engine()
    log = attach(e1)
    e1.call("ListKeys", {})
    log.close()
    e2 = make_engine()  # a new process, in effect: same store, fresh engine
    log2 = attach(e2)
    e2.call("ListKeys", {})
    e2.call("ListAliases", {})
    log2.close()
    rep = AuditReader(e2.store).verify()
    assert rep.ok and rep.checked == 3



def test_a_batch_larger_than_one_sqlite_insert_is_appended_whole_and_in_order(engine):
    """SQLite gets multi-row INSERTs of up to SQLITE_ROWS rows: a batch of 150 is
    three statements (64 + 64 + 22 rows), the chain and its index columns intact."""
    from kms_core.audit import attach
    from kms_core.audit.chain import SQLITE_ROWS
    log = attach(engine, batch_size=1000, flush_interval=60)
    statements = []
    plain = log._appender._insert_sql

    def counting(conn, rows=1):
        statements.append(rows)
        return plain(conn, rows)

    log._appender._insert_sql = counting
    for i in range(150):
        engine.call("ListKeys", {"Limit": 1 + i % 50})
    assert log.flush(30)
    assert statements == [SQLITE_ROWS, SQLITE_ROWS, 150 - 2 * SQLITE_ROWS]
    reader = AuditReader(engine.store)
    rep = reader.verify()
    assert rep.ok and rep.checked == 150 and rep.head_seq == 150
    events = reader.events()
    assert [seq for seq, _ in events] == list(range(1, 151))
    assert [json.loads(body)["requestParameters"]["limit"] for _, body in events] == \
        [1 + i % 50 for i in range(150)]
    log.close()

# ------------------------------------------------------------------ fuzzing
_mutation = st.one_of(
    st.tuples(st.just("flip_event"), st.integers(1, N), st.integers(0, 10_000)),
    st.tuples(st.just("flip_mac"), st.integers(1, N), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(1, N), st.integers(0, 0)),
    st.tuples(st.just("swap"), st.integers(1, N), st.integers(1, N)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(muts=st.lists(_mutation, min_size=1, max_size=3))
def test_fuzzed_tampering_never_verifies(log10, muts):
    store = log10
    with store.engine.begin() as c:
        saved = c.execute(select(T)).all()
        head = c.execute(select(H)).one()
    changed = False
    try:
        for kind, a, b in muts:
            rows = _rows(store)
            with store.engine.begin() as c:
                if kind == "flip_event" and a in rows:
                    ev = rows[a].event
                    i = b % len(ev)
                    ch = "x" if ev[i] != "x" else "y"
                    c.execute(update(T).where(T.c.seq == a).values(event=ev[:i] + ch + ev[i + 1:]))
                    changed = True
                elif kind == "flip_mac" and a in rows:
                    m = bytes(rows[a].mac)
                    c.execute(update(T).where(T.c.seq == a).values(
                        mac=m[:b % 32] + bytes([m[b % 32] ^ 0x80]) + m[b % 32 + 1:]))
                    changed = True
                elif kind == "delete" and a in rows:
                    c.execute(delete(T).where(T.c.seq == a))
                    changed = True
                elif kind == "swap" and a in rows and b in rows and a != b \
                        and rows[a].event != rows[b].event:
                    for x, y in ((a, b), (b, a)):
                        c.execute(update(T).where(T.c.seq == x).values(event=rows[y].event, mac=rows[y].mac))
                    changed = True
        # (two mutations can cancel out: compare with what was there)
        now = {(r.seq, r.event, bytes(r.mac)) for r in _rows(store).values()}
        changed = now != {(r.seq, r.event, bytes(r.mac)) for r in saved}
        rep = AuditReader(store).verify()
        assert rep.ok is (not changed), (muts, rep.problems)
    finally:  # restore the log for the next example
        with store.engine.begin() as c:
            c.execute(delete(T))
            c.execute(insert(T), [dict(r._mapping) for r in saved])
            c.execute(update(H).values(seq=head.seq, mac=head.mac, anchor=head.anchor))

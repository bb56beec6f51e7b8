"""The audit log's chain: the tables, the MAC key, and the HMAC formulas
(docs/audit-log.md, "Chain").

Every record carries ``HMAC-SHA256(K, "kms-audit/v1/event" || seq || previous
MAC || event JSON)``; a head row carries an HMAC over the last sequence number
and MAC, so an edited, inserted, reordered or deleted record — the last ones
included — is detected.  K is random, stored sealed under the store's root key:
database access alone cannot re-forge the chain.  A pruned prefix is replaced by
one HMAC'd anchor row carrying the chain state at the last pruned record.
"""
from __future__ import annotations

import itertools
import os
import struct

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import StoreError
from ..store import Store, metadata

FORMAT_VERSION = 1
EVENT_VERSION = "1.11"           # CloudTrail's current KMS event version
_KEY_AAD = b"audit-mac-key|v1"   # associated data for the sealed MAC key
_D_GENESIS = b"kms-audit/v1/genesis"
_D_EVENT = b"kms-audit/v1/event"
_D_HEAD = b"kms-audit/v1/head"
_U64 = struct.Struct(">Q")
_D_PRUNED = b"kms-audit/v1/pruned"

audit_events = Table(
    "kms_audit_events", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("format", SmallInteger, nullable=False),
    # Copies of event fields for filtering; verify checks them against the event.
    Column("event_time", Double, nullable=False, index=True),  # DOUBLE: MySQL FLOAT is 4 bytes
    Column("event_name", String(128), nullable=False),
    Column("principal", String(512)),
    Column("key_ids", String(1024)),      # " <key id> <key id> " for LIKE matching
    Column("error_code", String(128)),
    Column("event", Text, nullable=False),        # the event's JSON, exactly what the MAC covers
    Column("mac", LargeBinary(32), nullable=False),
)

audit_head = Table(
    "kms_audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("format", SmallInteger, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("mac", LargeBinary(32), nullable=False),
    Column("anchor", LargeBinary(32), nullable=False),
)


# The pruned prefix: one row, replaced (never added to) by each prune step.
audit_pruned = Table(
    "kms_audit_pruned", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("format", SmallInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),         # the last pruned record
    Column("mac", LargeBinary(32), nullable=False),    # its MAC: the chain state
    Column("event_time", Double, nullable=False),      # its time
    Column("pruned_at", Double, nullable=False),
    Column("anchor", LargeBinary(32), nullable=False), # pruned_mac(K, seq, mac, event_time)
)


def _mac(key: bytes, *parts: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    for p in parts:
        h.update(p)
    return h.finalize()


def genesis_mac(key: bytes) -> bytes:
    """The "previous MAC" of record 1: binds the chain's start to its key."""
    return _mac(key, _D_GENESIS)


def event_mac(key: bytes, seq: int, prev: bytes, event_json: str) -> bytes:
    return _mac(key, _D_EVENT, _U64.pack(seq), prev, event_json.encode("utf-8"))


def head_mac(key: bytes, seq: int, last: bytes) -> bytes:
    return _mac(key, _D_HEAD, _U64.pack(seq), last)


def same(a: bytes, b: bytes) -> bool:
    return constant_time.bytes_eq(bytes(a or b""), bytes(b or b""))


def pruned_mac(key: bytes, seq: int, last: bytes, event_time: float) -> bytes:
    """The anchor of a pruned prefix: binds its last record number, MAC and time to K."""
    return _mac(key, _D_PRUNED, _U64.pack(seq), last, _U64.pack(int(event_time)))


def ensure_tables(store: Store) -> None:
    store.ensure_tables(audit_events, audit_head, audit_pruned)


def load_key(store: Store, *, create: bool) -> bytes | None:
    """The chain's MAC key (created with the head row on first use)."""
    with store.reading() as conn:
        row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    if row is None:
        if not create:
            return None
        key = os.urandom(32)
        genesis = genesis_mac(key)
        try:
            with store.engine.begin() as conn:
                conn.execute(insert(audit_head).values(
                    id=1, format=FORMAT_VERSION, sealed_key=store.seal(key, _KEY_AAD), seq=0,
                    mac=genesis, anchor=head_mac(key, 0, genesis)))
            return key
        except IntegrityError:  # another process created it first
            with store.reading() as conn:
                row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            if row is None:
                raise StoreError("the audit log's head row could not be created") from None
    if row.format != FORMAT_VERSION:
        raise StoreError(f"the audit log has format {row.format}; this version understands "
                         f"{FORMAT_VERSION}")
    try:
        return store.unseal(row.sealed_key, _KEY_AAD)
    except StoreError:
        raise StoreError("the audit log's MAC key cannot be unsealed: it was altered, or the "
                         "store's root key is not the one the log was created with") from None



# Rows per INSERT statement on SQLite: 9 parameters a row, 576 a statement, below the
# 999 that SQLite builds before 3.32 accept.
SQLITE_ROWS = 64


class ChainAppender:
    """Appends rendered events to the chain, one transaction per batch, on one
    kept connection (opening one per batch — SQLite's NullPool, its PRAGMAs —
    would cost more than appending 100 events)."""

    COLUMNS = ("seq", "format", "event_time", "event_name", "principal", "key_ids",
               "error_code", "event", "mac")

    def __init__(self, store: Store, key: bytes):
        self.store = store
        self._key = key
        self._mac_base = hmac.HMAC(key, hashes.SHA256())
        self._mac_base.update(_D_EVENT)
        self._sql: dict[int, str] = {}  # INSERT statements by their number of rows
        self._conn: Connection | None = None

    def append(self, events: list[tuple[str, dict]]) -> None:
        conn = self._connection()
        try:
            self._append_on(conn, events)
        except BaseException:
            # A lost connection is replaced for the retry.  One that is merely refused
            # (SQLite: disk full) is kept: while it stays open SQLite keeps its -wal and
            # -shm files, so the store stays readable on a full disk.
            if conn.invalidated or conn.closed or conn.in_transaction():
                self.drop_connection()
            raise

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.store.engine.connect()
        return self._conn

    def drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass

    def _append_on(self, conn: Connection, events: list[tuple[str, dict]]) -> None:
        base = self._mac_base
        with conn.begin():
            # The row lock serialises appenders across processes and nodes
            # (SQLite: the store's BEGIN IMMEDIATE already holds the write lock).
            head = conn.execute(select(audit_head.c.seq, audit_head.c.mac)
                                .where(audit_head.c.id == 1).with_for_update()).one()
            seq, prev = head.seq, bytes(head.mac)
            rows = []
            for body, cols in events:
                seq += 1
                h = base.copy()
                h.update(_U64.pack(seq) + prev + body.encode())
                prev = h.finalize()
                rows.append((seq, FORMAT_VERSION, cols["event_time"], cols["event_name"],
                             cols["principal"], cols["key_ids"], cols["error_code"], body, prev))
            self._insert_rows(conn, rows)
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(
                seq=seq, mac=prev, anchor=head_mac(self._key, seq, prev)))

    def _insert_rows(self, conn: Connection, rows: list[tuple]) -> None:
        # Straight to the driver: SQLAlchemy's per-row parameter processing would
        # cost more than the rest of the append.  PostgreSQL (psycopg) gets COPY,
        # whose rows are encoded in C; SQLite multi-row INSERTs (below); the others
        # a plain executemany (PyMySQL folds it into one multi-row INSERT).
        dialect = conn.dialect
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            q = dialect.identifier_preparer.quote
            sql = (f"COPY {q(audit_events.name)} ({', '.join(q(c) for c in self.COLUMNS)}) "
                   "FROM STDIN")
            driver = conn.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        if dialect.name == "sqlite":
            # sqlite3's executemany releases and retakes the GIL twice per row (step and
            # reset): with a request thread running, nearly every row hands the GIL over
            # and back.  One INSERT of up to SQLITE_ROWS rows steps once per chunk.
            for i in range(0, len(rows), SQLITE_ROWS):
                chunk = rows[i:i + SQLITE_ROWS]
                conn.exec_driver_sql(self._insert_sql(conn, len(chunk)),
                                     tuple(itertools.chain.from_iterable(chunk)))
            return
        conn.exec_driver_sql(self._insert_sql(conn), rows)

    def _insert_sql(self, conn: Connection, rows: int = 1) -> str:
        """``INSERT … VALUES (…)`` with ``rows`` rows of parameters (cached per count)."""
        sql = self._sql.get(rows)
        if sql is None:
            mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
            if mark is None:  # pragma: no cover - no such driver in use
                raise StoreError(f"unsupported DB-API paramstyle {conn.dialect.paramstyle}")
            q = conn.dialect.identifier_preparer.quote
            cols = self.COLUMNS
            values = f"({', '.join([mark] * len(cols))})"
            sql = self._sql[rows] = (f"INSERT INTO {q(audit_events.name)} ({', '.join(q(c) for c in cols)}) "
                                     f"VALUES {', '.join([values] * rows)}")
        return sql

"""The in-memory store's SQLAlchemy engine (``KMS_STORE_URL=sqlite://``).

An SQLite in-memory database lives as long as its one connection, so every
thread must share that connection; a lock around each checkout keeps two
threads from interleaving their transactions on it.  Nothing touches a file.

Creating the schema costs ~7 ms (SQLAlchemy's DDL), so it is built once per
process, in a template database, and each new store starts as a copy of it
(SQLite's backup API, ~0.1 ms).  Every in-memory store of the process is
sealed with one random root key that exists only in this process's memory:
the root key protects stored material at rest, and these stores never rest.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.pool import StaticPool

from kms_core.settings import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Settings

ROOT_KEY = os.urandom(32)

_template_lock = threading.RLock()


class _Shared:
    """What all in-memory stores of the process share (built on first use)."""
    template: sqlite3.Connection | None = None
    base: SAEngine | None = None


class SharedConnectionPool(StaticPool):
    """StaticPool whose single connection is lent to one thread at a time."""

    def __init__(self, creator: Any, **kw: Any):
        super().__init__(creator, **kw)
        # Re-entrant: a thread that holds the connection may check it out again.
        self._lender = threading.RLock()

    def _do_get(self) -> Any:
        self._lender.acquire()
        try:
            return super()._do_get()
        except BaseException:
            self._lender.release()
            raise

    def _do_return_conn(self, record: Any) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            self._lender.release()


def _new_connection() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False)


def _build_template() -> sqlite3.Connection:
    """A store created the ordinary way (schema, root-key canary), copied out."""
    from kms_core.store import Store  # noqa: PLC0415 - import cycle (store imports this module)

    store = Store(Settings(home=Path(os.devnull), store_url="sqlite://", region=DEFAULT_REGION,
                           account_id=DEFAULT_ACCOUNT_ID))
    try:
        template = _new_connection()
        raw = store.engine.raw_connection()
        try:
            raw.driver_connection.backup(template)  # type: ignore[union-attr]
        finally:
            raw.close()
        return template
    finally:
        store.dispose()


def _fresh_connection() -> sqlite3.Connection:
    with _template_lock:
        if _Shared.template is None:
            if getattr(_building, "on", False):
                return _new_connection()  # the template's own store: built from scratch
            _building.on = True
            try:
                _Shared.template = _build_template()
            finally:
                _building.on = False
        conn = _new_connection()
        _Shared.template.backup(conn)
        return conn


_building = threading.local()


def _begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")  # the pool's lock already serialises writers


def _connect(dbapi_conn: Any, _rec: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, as for file stores


def memory_engine(url: str) -> SAEngine:
    """A new SQLAlchemy engine on a new in-memory database.

    All of them share one dialect and one compiled-statement cache: compiling
    the store's statements anew for every store would cost ~5 ms on its first
    calls, more than everything else a fresh store needs.
    """
    with _template_lock:
        if _Shared.base is None:
            base = create_engine("sqlite://", poolclass=SharedConnectionPool, creator=_fresh_connection)
            event.listen(base, "connect", _connect)
            _Shared.base = base
        base = _Shared.base
    pool = base.pool.recreate()  # same creator and listeners, its own (fresh) connection
    eng = SAEngine(pool, base.dialect, base.url, query_cache_size=0)
    eng._compiled_cache = base._compiled_cache
    event.listen(eng, "begin", _begin)
    return eng

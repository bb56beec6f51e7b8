"""Data keys: KMS-wrapped in a key table next to the data, cached unwrapped.

Like MongoDB's key vault: each stored value names its data key by an 8-byte
id; the key table holds the wrapped key once.  Randomized columns sharing a
KMS key share one data key per process (one GenerateDataKey per process and
``max_age``); a deterministic column has one persistent active data key (its
``scope`` row), so equal values encrypt equally in every process.

Key-table reads and writes run on the connection that is executing the
statement (tracked by a ``before_execute`` listener), inside its transaction:
no second connection to deadlock on SQLite, and a rolled-back transaction
takes its new key rows with it.  Keys created inside a transaction are only
shared with other connections after it commits.
"""
from __future__ import annotations

import contextvars
import datetime as _dt
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, Engine, LargeBinary, MetaData, String, Table, event, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from kms_core.envelope import CachedKey, DataKeyCache

from . import format as fmt
from .errors import EncryptedColumnError, KeyTableMissingError, UnknownDataKeyError

KEY_TABLE = "encrypted_column_keys"
PURPOSE = "encrypted-column"
DEFAULT_KEY = "alias/aws/rds"
DEFAULT_DOCUMENT_KEY = "alias/aws/dynamodb"


def key_table(metadata: MetaData) -> Table:
    """The key table in ``metadata`` (added once; created by ``create_all`` and Alembic)."""
    if KEY_TABLE in metadata.tables:
        return metadata.tables[KEY_TABLE]
    return Table(
        KEY_TABLE, metadata,
        Column("id", String(16), primary_key=True),  # hex of the 8-byte id in values
        Column("kms_key_id", String(2048), nullable=False),  # KeyId (ARN) that wraps it
        Column("wrapped", LargeBinary, nullable=False),  # KMS CiphertextBlob
        # "table.column" for a deterministic column's active key; NULL otherwise.
        Column("scope", String(255), nullable=True, unique=True),
        Column("created", DateTime(timezone=True), nullable=False),
    )


_TABLE = key_table(MetaData())


def data_key_context(key_id: bytes) -> dict[str, str]:
    # Binds a wrapped key to its row: swapping wrapped keys between rows fails in KMS.
    return {"purpose": PURPOSE, "data_key_id": key_id.hex()}


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    kms: Any = None
    write_max_age: float = 3600.0  # seconds a process encrypts under one data key
    write_max_uses: int = 2**30  # random 96-bit nonces: stay far below 2**32 per key
    read_max_age: float = 3600.0
    max_entries: int = 1000


class Keyring:
    def __init__(self):
        self.settings = Settings()
        self.kms_calls = 0  # GenerateDataKey + Decrypt made by this keyring
        # Bumped whenever cached keys may have become invalid (rollback of a
        # transaction that made keys, configure(), rotation): the types' per-
        # statement fast paths check it.
        self.generation = 0
        self._lock = threading.Lock()
        self._reset_caches()

    def _reset_caches(self):
        s = self.settings
        self.write = DataKeyCache(max_age=s.write_max_age, max_uses=s.write_max_uses,
                                  max_entries=s.max_entries)
        self.read = DataKeyCache(max_age=s.read_max_age, max_entries=s.max_entries)

    # -- configuration ----------------------------------------------------
    def configure(self, kms: Any = ..., **bounds) -> None:
        with self._lock:
            if kms is not ...:
                self.settings.kms = kms  # None: kms_core.client() on next use
            for name, value in bounds.items():
                if not hasattr(self.settings, name) or name == "kms":
                    raise TypeError(f"unknown setting {name!r}")
                setattr(self.settings, name, value)
            self._reset_caches()
            self.generation += 1

    @property
    def kms(self):
        if self.settings.kms is None:
            with self._lock:
                if self.settings.kms is None:
                    import kms_core  # noqa: PLC0415 - importing the types loads no KMS engine
                    self.settings.kms = kms_core.client()
        return self.settings.kms

    # -- KMS side (no database) --------------------------------------------
    def generate(self, kms_key: str) -> tuple[fmt.DataKey, dict]:
        key_id = os.urandom(fmt.KEY_ID_LEN)
        self.kms_calls += 1
        try:
            resp = _off_loop(self.kms.generate_data_key, KeyId=kms_key, KeySpec="AES_256",
                             EncryptionContext=data_key_context(key_id))
        except Exception as err:
            raise _kms_error("GenerateDataKey", kms_key, err) from err
        dk = fmt.DataKey(key_id, resp["Plaintext"])
        row = {"id": key_id.hex(), "kms_key_id": resp["KeyId"], "wrapped": resp["CiphertextBlob"],
               "created": _dt.datetime.now(_dt.UTC)}
        return dk, row

    def unwrap(self, row) -> fmt.DataKey:
        key_id = bytes.fromhex(row.id)
        self.kms_calls += 1
        try:
            resp = _off_loop(self.kms.decrypt, CiphertextBlob=bytes(row.wrapped),
                             KeyId=row.kms_key_id, EncryptionContext=data_key_context(key_id))
        except Exception as err:
            raise _kms_error("Decrypt", row.kms_key_id, err) from err
        return fmt.DataKey(key_id, resp["Plaintext"])

    # -- lookups used by the types ---------------------------------------
    def write_key(self, dialect, kms_key: str, mode: int, scope: str | None) -> fmt.DataKey:
        forced = FORCED_KEY.get()
        if forced is not None:  # a rotation tool writing under its target key
            return forced
        return self.write_entry(dialect, kms_key, mode, scope).extra

    def write_entry(self, dialect, kms_key: str, mode: int, scope: str | None) -> CachedKey:
        """The cache entry of the current write key, one use counted."""
        conn = _connection_for(dialect)
        token = _vault_token(conn.engine)
        ck = (token, kms_key, mode, scope)
        pending = _pending(conn)
        for cache in (pending, self.write):
            entry = cache.get(ck)
            if entry is not None and entry.uses < self.settings.write_max_uses:
                entry.uses += 1
                return entry
        if mode == fmt.DETERMINISTIC:
            if scope is None:
                raise EncryptedColumnError("a deterministic column's key needs its scope")
            dk, fresh = self._scoped_key(conn, kms_key, scope)
        else:
            dk, row = self.generate(kms_key)
            _insert_key(conn, row)
            fresh = True
        entry = CachedKey(b"", b"", kms_key, extra=dk)
        entry.uses = 1
        self._remember(conn, ck, entry, fresh)
        return entry

    def scoped_key(self, conn: Connection, kms_key: str, scope: str) -> fmt.DataKey:
        """The data key named by ``scope`` in the key table, made if missing:
        a deterministic column's key (``table.column``), which never changes
        once made, or a randomized re-encryption job's target key."""
        return self._scoped_key(conn, kms_key, scope)[0]

    def forget_write_keys(self, kms_key: str) -> None:
        """Stop writing with this process's cached keys for ``kms_key``."""
        _drop(self.write, lambda ck: ck[1] == kms_key)
        self.generation += 1

    def _scoped_key(self, conn: Connection, kms_key: str, scope: str):
        row = _select_scope(conn, scope)
        if row is not None:
            return self._read_row(conn, row), False
        dk, row = self.generate(kms_key)
        row["scope"] = scope
        try:
            with conn.begin_nested():  # a concurrent writer may win the unique scope
                _insert_key(conn, row)
        except sa_exc.IntegrityError:
            row = _select_scope(conn, scope, locking=True)
            if row is None:
                raise
            return self._read_row(conn, row), False
        self._remember_read(conn, dk)
        return dk, True

    def _remember(self, conn: Connection, ck, entry: CachedKey, fresh: bool) -> None:
        if fresh and conn.in_transaction():
            pend = conn.info.setdefault("_enc_cols_pending", {})
            pend[ck] = entry
        else:
            self.write.put(ck, entry)
        self._remember_read(conn, entry.extra)

    def _remember_read(self, conn: Connection, dk: fmt.DataKey) -> None:
        token = _vault_token(conn.engine)
        self.read.put((token, dk.key_id), CachedKey(b"", b"", "", extra=dk))
        if conn.in_transaction():
            conn.info.setdefault("_enc_cols_new_ids", set()).add((token, dk.key_id))

    def read_key(self, dialect, key_id: bytes) -> fmt.DataKey:
        return self.read_entry(dialect, key_id).extra

    def read_entry(self, dialect, key_id: bytes) -> CachedKey:
        conn = _connection_for(dialect, reading=True)
        token = _vault_token(conn.engine if isinstance(conn, Connection) else conn)
        entry = self.read.get((token, key_id))
        if entry is not None:
            return entry
        if isinstance(conn, Connection):
            row = _select_id(conn, key_id)
        else:  # no live connection (result read after close): a short one of our own
            with conn.connect() as own:
                row = _select_id(own, key_id)
        if row is None:
            raise UnknownDataKeyError(f"data key {key_id.hex()} is not in the key table")
        entry = CachedKey(b"", b"", row.kms_key_id, extra=self.unwrap(row))
        self.read.put((token, key_id), entry)
        return entry

    def _read_row(self, conn: Connection, row) -> fmt.DataKey:
        token = _vault_token(conn.engine)
        entry = self.read.get((token, bytes.fromhex(row.id)))
        if entry is not None:
            return entry.extra
        dk = self.unwrap(row)
        self.read.put((token, dk.key_id), CachedKey(b"", b"", row.kms_key_id, extra=dk))
        return dk

    # -- transaction outcome ----------------------------------------------
    def _on_commit(self, conn: Connection) -> None:
        pend = conn.info.pop("_enc_cols_pending", None)
        conn.info.pop("_enc_cols_new_ids", None)
        if pend:
            for ck, entry in pend.items():
                self.write.put(ck, entry)

    def _on_rollback(self, conn: Connection) -> None:
        if conn.info.pop("_enc_cols_pending", None):
            self.generation += 1
        new_ids = conn.info.pop("_enc_cols_new_ids", ())
        if new_ids:
            _drop(self.read, new_ids.__contains__)

    # -- warm-up ----------------------------------------------------------
    def warm_up_sync(self, conn: Connection, columns: Iterable, load_all: bool = True) -> int:
        """Create the key table if missing, unwrap stored keys, make write keys.

        Returns the number of KMS calls made.  Runs on ``conn`` (the caller commits).
        """
        _TABLE.create(conn, checkfirst=True)
        token = _vault_token(conn.engine)
        start = self.kms_calls
        if load_all:
            rows = conn.execute(select(_TABLE).order_by(_TABLE.c.created.desc())
                                .limit(self.settings.max_entries)).all()
            for row in rows:
                if self.read.get((token, bytes.fromhex(row.id))) is None:
                    self._read_row(conn, row)
        for col in columns:
            t = col.type
            scope = t.key_scope() if t.deterministic else None
            self.write_key(conn.dialect, t.key_id, t._mode, scope)
        return self.kms_calls - start


KEYRING = Keyring()


def _drop(cache: DataKeyCache, doomed) -> None:
    # kms_core.envelope.DataKeyCache offers no selective removal (only clear(),
    # which would cost every other KMS key a GenerateDataKey): drop entries
    # under its own lock.  tests/db/test_db_tools.py covers both callers.
    with cache._lock:
        for ck in [ck for ck in cache._entries if doomed(ck)]:
            del cache._entries[ck]


def _after_fork_in_child() -> None:
    # A child must never reuse its parent's randomized write keys (nonce
    # counters would repeat): forget every cached key.
    KEYRING._reset_caches()
    KEYRING.generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _off_loop(fn, **kwargs):
    """Call KMS; inside SQLAlchemy's asyncio greenlet, in a worker thread so
    the event loop keeps running while KMS answers.  (sqlalchemy.util.concurrency
    is how SQLAlchemy's own asyncio layer bridges sync code to the loop; it has
    no other public spelling.  tests/db/test_db_async.py covers this path.)"""
    try:
        from sqlalchemy.util.concurrency import await_, in_greenlet  # noqa: PLC0415 - needs greenlet (optional)
        async_ctx = in_greenlet()
    except ImportError:  # greenlet not installed: no asyncio use possible
        async_ctx = False
    if async_ctx:
        import asyncio  # noqa: PLC0415 - only under SQLAlchemy's asyncio
        return await_(asyncio.to_thread(fn, **kwargs))
    return fn(**kwargs)


def _kms_error(op: str, kms_key: str, err: Exception) -> EncryptedColumnError:
    code = getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__
    return EncryptedColumnError(f"KMS {op} with key {kms_key!r} failed ({code})", code=code)


# ---------------------------------------------------------------- connections
FORCED_KEY: contextvars.ContextVar = contextvars.ContextVar("encrypted_columns_forced",
                                                          default=None)
_current: contextvars.ContextVar = contextvars.ContextVar("encrypted_columns_conn", default=None)
_tokens: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_engines: weakref.WeakKeyDictionary[Any, weakref.ref] = weakref.WeakKeyDictionary()
_installed = threading.Event()  # set once the listeners are in place
_install_lock = threading.Lock()


def install_listeners() -> None:
    """Register the engine-wide listeners once (no I/O)."""
    if _installed.is_set():
        return
    with _install_lock:
        if _installed.is_set():
            return
        event.listen(Engine, "before_execute", _before_execute)
        event.listen(Engine, "commit", KEYRING._on_commit)
        event.listen(Engine, "rollback", KEYRING._on_rollback)
        event.listen(Engine, "handle_error", _unwrap_our_errors)
        _installed.set()


class _Execution:
    """The connection executing now; a new object per execution, so the types'
    processors notice a new statement by identity and revalidate their keys."""

    __slots__ = ("_ref",)

    def __init__(self, conn):
        self._ref = weakref.ref(conn)

    def __call__(self):
        return self._ref()


def _before_execute(conn, clauseelement, multiparams, params, execution_options):
    _current.set(_Execution(conn))
    if conn.dialect not in _engines:
        _engines[conn.dialect] = weakref.ref(conn.engine)


def _unwrap_our_errors(ctx):
    # SQLAlchemy wraps errors raised while binding in a StatementError whose
    # text lists the statement's parameters, i.e. the plaintext.  Raise ours as is.
    if isinstance(ctx.original_exception, EncryptedColumnError):
        return ctx.original_exception
    return None


def _vault_token(engine: Engine) -> str:
    # Keys live in one database: never reuse a cached key id across engines.
    token = _tokens.get(engine)
    if token is None:
        token = _tokens.setdefault(engine, os.urandom(8).hex())
    return token


def _connection_for(dialect, reading: bool = False):
    ref = _current.get()
    conn = ref() if ref is not None else None
    if conn is not None and conn.dialect is dialect and not conn.closed and not conn.invalidated:
        return conn
    eref = _engines.get(dialect)
    engine = eref() if eref is not None else None
    if engine is None:
        raise EncryptedColumnError("encrypted values can only be processed while a statement "
                                   "executes on a SQLAlchemy engine")
    if reading:
        return engine
    raise EncryptedColumnError("no active connection to store a new data key on")


def _pending(conn: Connection) -> dict:
    return conn.info.get("_enc_cols_pending") or {}


def _insert_key(conn: Connection, row: dict) -> None:
    try:
        conn.execute(insert(_TABLE), [row])
    except (sa_exc.ProgrammingError, sa_exc.OperationalError) as err:
        _raise_if_missing(err)
        raise


def _raise_if_missing(err: Exception) -> None:
    if KEY_TABLE in str(getattr(err, "orig", err)):
        raise KeyTableMissingError(
            f"the key table {KEY_TABLE!r} does not exist: run metadata.create_all(), "
            "the Alembic migration, or warm_up()") from None


def _select_id(conn: Connection, key_id: bytes):
    try:
        return conn.execute(select(_TABLE).where(_TABLE.c.id == key_id.hex())).first()
    except (sa_exc.ProgrammingError, sa_exc.OperationalError) as err:
        _raise_if_missing(err)
        raise


def _select_scope(conn: Connection, scope: str, locking: bool = False):
    stmt = select(_TABLE).where(_TABLE.c.scope == scope)
    if locking and conn.dialect.name in ("mysql", "mariadb"):
        stmt = stmt.with_for_update(read=True)  # see rows committed after our snapshot
    try:
        return conn.execute(stmt).first()
    except (sa_exc.ProgrammingError, sa_exc.OperationalError) as err:
        _raise_if_missing(err)
        raise

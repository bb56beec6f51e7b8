"""The sealed key store, on SQLAlchemy Core.

Key material is sealed with the root key (AES-256-GCM; associated data names
the key id and material version, so sealed rows cannot be swapped).  A sealed
canary proves the root key before anything is written.  Every write
transaction first bumps ``kms_state.generation``: that row lock serialises
writers on PostgreSQL (SQLite takes ``BEGIN IMMEDIATE``), and other processes
watch the counter to drop their caches.
"""
from __future__ import annotations

import base64
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from .changes import ChangeSignal, Listener, libpq_dsn, store_identity
from .errors import StoreError
from .settings import Settings, decode_root_key

log = logging.getLogger("kms_core.store")

SCHEMA_VERSION = 2
_CANARY = b"kms-local root key check v1"
_CANARY_AAD = b"kms-local/root-check/v1"
_SEAL_VERSION = 1

metadata = MetaData()

kms_state = Table(
    "kms_state", metadata,
    Column("id", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("root_check", LargeBinary, nullable=False),
)

keys = Table(
    "kms_keys", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("creation_date", Double, nullable=False),
    Column("key_state", String(32), nullable=False),
    Column("key_manager", String(16), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("key_spec", String(32), nullable=False),
    Column("key_usage", String(32), nullable=False),
    Column("deletion_date", Double),
    Column("pending_window_days", Integer),
    Column("rotation_enabled", Boolean, nullable=False, default=False),
    Column("rotation_period_days", Integer),
    Column("next_rotation_date", Double),
    Column("on_demand_rotations", Integer, nullable=False, default=0),
    Column("current_version", Integer, nullable=False, default=0),
    Column("policy", Text),
    Column("managed_alias", String(256)),
    Column("valid_to", Double),
    Column("expiration_model", String(32)),
    Column("import_fingerprint", String(64)),
    # Multi-Region keys (schema 2; docs/key-types.md "Multi-Region keys").  Every Region's key
    # has its own row: ``key_id`` is then the row id ``mrk-<hex>/<region>`` (engine.repository.row_id),
    # ``mrk_id`` the shared key id that owns the material rows, ``primary_region`` the Region of
    # the primary.  Both are NULL for single-Region keys (row id = key id).
    Column("mrk_id", String(64), index=True),
    Column("primary_region", String(32)),
)

key_materials = Table(
    "kms_key_materials", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("material_id", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created", Double, nullable=False),
    Column("rotation_type", String(16)),
    Column("import_state", String(16)),
    Column("description", Text),
)

aliases = Table(
    "kms_aliases", metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("alias_name", String(256), primary_key=True),
    Column("target_key_id", String(64), nullable=False),
    Column("creation_date", Double, nullable=False),
    Column("last_updated", Double, nullable=False),
)

tags = Table(
    "kms_tags", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("tag_key", String(128), primary_key=True),
    Column("tag_value", String(256), nullable=False),
)

grants = Table(
    "kms_grants", metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, index=True),
    Column("name", String(256)),
    Column("grantee_principal", String(256), nullable=False),
    Column("retiring_principal", String(256)),
    Column("operations", Text, nullable=False),      # JSON list
    Column("constraints", Text),                      # JSON object or NULL
    Column("issuing_account", String(12), nullable=False),
    Column("creation_date", Double, nullable=False),
)

# BYOK: RSA wrapping keys handed out by GetParametersForImport (private key sealed).
import_parameters = Table(
    "kms_import_parameters", metadata,
    Column("token_id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, index=True),
    Column("wrapping_algorithm", String(32), nullable=False),
    Column("wrapping_key_spec", String(16), nullable=False),
    Column("private_key_sealed", LargeBinary, nullable=False),
    Column("valid_to", Double, nullable=False),
)

# Durability of a commit on SQLite.  WAL with synchronous=NORMAL may roll back the last commits
# after an OS crash or power loss (SQLite's documentation), and a key created or rotated —
# and already used to encrypt data — would be gone with them.  FULL fsyncs the WAL at every
# commit, so a write is on disk when the call returns (cost: benchmarks/store_durability.py).
# PostgreSQL (synchronous_commit=on) and InnoDB (flush_log_at_trx_commit=1) are durable by
# default.
SQLITE_SYNCHRONOUS = "FULL"

# The in-memory store (tests): kms_core/memory_store.py, docs/testing.md.
IN_MEMORY_URLS = ("sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://", "sqlite+pysqlite:///:memory:")


class WouldBlock(Exception):
    """Raised inside ``Store.no_io()`` instead of touching the database."""


_NO_IO = threading.local()


@contextlib.contextmanager
def no_io() -> Iterator[None]:
    """Within this block (this thread), any store access raises WouldBlock.

    The server runs requests on its event loop this way and retries only the
    ones that need the database in a thread pool.
    """
    _NO_IO.on = True
    try:
        yield
    finally:
        _NO_IO.on = False


def _check_io() -> None:
    if getattr(_NO_IO, "on", False):
        raise WouldBlock()


# Epoch-second timestamps are Double: MySQL's FLOAT is 4 bytes and would lose ~1 hour.

# Migrations from version N to N+1, run in one transaction each.  Each step is idempotent: on
# MariaDB a DDL statement commits implicitly, so a process stopped half-way leaves some of a
# step done with the version not yet moved (the next open finishes it).
def _v1_to_v2(conn: Connection) -> None:
    """Multi-Region keys: two nullable columns on kms_keys (existing keys are single-Region,
    both NULL) and the index on ``mrk_id``.  Plain ADD COLUMN works on SQLite, PostgreSQL and
    MariaDB alike; no existing row changes."""
    found = inspect(conn)
    columns = {c["name"] for c in found.get_columns("kms_keys")}
    if "mrk_id" not in columns:
        conn.exec_driver_sql("ALTER TABLE kms_keys ADD COLUMN mrk_id VARCHAR(64)")
    if "primary_region" not in columns:
        conn.exec_driver_sql("ALTER TABLE kms_keys ADD COLUMN primary_region VARCHAR(32)")
    if "ix_kms_keys_mrk_id" not in {i["name"] for i in found.get_indexes("kms_keys")}:
        conn.exec_driver_sql("CREATE INDEX ix_kms_keys_mrk_id ON kms_keys (mrk_id)")


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


def create_tables(engine: SAEngine, tables: list[Table] | None = None) -> None:
    """Create ``tables`` (default: every table of the store) that do not exist yet, safely when
    several processes open a new schema at once (``kms serve --workers 2``, two nodes).  The
    existence check and the CREATE are separate statements, so the loser of a race gets a
    duplicate-table error (PostgreSQL: a unique violation on ``pg_type``; MariaDB: 1050)
    although the table now exists: it checks again.  A real failure repeats and is raised."""
    for attempt in range(4):
        try:
            metadata.create_all(engine, tables=tables, checkfirst=True)
            return
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == 3:
                raise
            time.sleep(0.02 * (attempt + 1))


class Store:
    """An open store: SQLAlchemy engine plus the root key.  Thread-safe."""

    def __init__(self, settings: Settings, *, listen: bool = True):
        """``listen=False``: no LISTEN connection for other processes' changes (a process
        that caches nothing, such as the audit log's writer process)."""
        self.settings = settings
        self.url = settings.store_url
        self._is_sqlite = self.url.startswith("sqlite")
        self.in_memory = self.url in IN_MEMORY_URLS
        if self._is_sqlite:
            path = self.url.split("///", 1)[-1] if "///" in self.url else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = self._make_engine()
        self._aead: AESGCM | None = None
        self._lock = threading.Lock()
        # "The store changed", to every process using it (kms_core/changes.py).
        self.changes = ChangeSignal(store_identity(self.url))
        self._notify = f"NOTIFY {self.changes.channel}" if self.engine.dialect.name == "postgresql" else None
        self._listener: Listener | None = None
        self._open()
        dsn = libpq_dsn(self.url) if self._notify and listen else None
        if dsn is not None:
            self._listener = Listener(dsn, self.changes)

    # -- engine -----------------------------------------------------------------
    def _make_engine(self) -> SAEngine:
        if not self._is_sqlite:
            return create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        if self.in_memory:  # one shared connection: each new one would open a new, empty database
            from .memory_store import memory_engine  # noqa: PLC0415 - in-memory (test) stores only
            return memory_engine(self.url)
        # NullPool: SQLite connections are cheap and this avoids sharing one
        # across threads; the hot path never touches the store anyway.
        eng = create_engine(self.url, poolclass=NullPool,
                            connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _connect(dbapi_conn, _rec):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            try:
                cur.execute("PRAGMA journal_mode = WAL")
            except Exception:  # read-only media: keep the default journal
                pass
            cur.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn):
            # Writers take the write lock up front (IMMEDIATE), so two processes
            # never both read-then-write (that would deadlock or lose an update).
            # Readers (``Store.reading``) stay deferred: in WAL mode they never
            # wait behind a writer.
            if conn.get_execution_options().get("kms_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return eng

    # -- opening ----------------------------------------------------------------
    def _read_state(self):
        try:
            with self.reading() as conn:
                return conn.execute(select(kms_state).where(kms_state.c.id == 1)).first()
        except (OperationalError, ProgrammingError):
            return None  # no schema yet

    def _open(self) -> None:
        state = self._read_state()
        root = self._root_key(new_store=state is None)
        aead = AESGCM(root)
        if state is None:
            state = self._create(aead)
        self._check_root(aead, state.root_check)
        if state.schema_version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.display_url} has schema version {state.schema_version}; "
                f"this version of kms-local understands up to {SCHEMA_VERSION} — upgrade kms-local")
        self._aead = aead
        if state.schema_version < SCHEMA_VERSION:
            self._migrate(state.schema_version)
        # Tables added by later parts of the same schema version (created if missing).
        create_tables(self.engine)

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _check_root(self, aead: AESGCM, sealed: bytes) -> None:
        try:
            ok = aead.decrypt(sealed[1:13], sealed[13:], _CANARY_AAD) == _CANARY
        except InvalidTag:
            ok = False
        if not ok:
            raise StoreError(
                f"the root key does not open the store at {self.display_url} "
                "(check KMS_ROOT_KEY / KMS_ROOT_KEY_FILE); nothing was changed")

    def _create(self, aead: AESGCM):
        nonce = os.urandom(12)
        canary = bytes([_SEAL_VERSION]) + nonce + aead.encrypt(nonce, _CANARY, _CANARY_AAD)
        create_tables(self.engine)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(kms_state).values(
                    id=1, schema_version=SCHEMA_VERSION, generation=1, root_check=canary))
        except IntegrityError:
            pass  # another process created it first; we re-read below
        state = self._read_state()
        if state is None:
            raise StoreError(f"could not initialise the store at {self.display_url}")
        return state

    def _root_key(self, *, new_store: bool) -> bytes:
        s = self.settings
        if self.in_memory:  # nothing outlives the process: the key never leaves memory, no file, no message
            from .memory_store import ROOT_KEY  # noqa: PLC0415 - in-memory (test) stores only
            return ROOT_KEY
        if s.root_key is not None:
            return s.root_key
        path = s.root_key_file
        if path is not None and path.exists():
            return self._read_root_file(path)
        if not new_store:
            raise StoreError(
                f"the store at {self.display_url} is sealed and no root key was found: set "
                f"KMS_ROOT_KEY or KMS_ROOT_KEY_FILE (looked for {path})")
        if path is None:
            raise StoreError("no root key: set KMS_ROOT_KEY or KMS_ROOT_KEY_FILE")
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race
            return self._read_root_file(path)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
        print(f"kms: created a new root key at {path} (mode 0600). Keep it safe: "
              "without it this key store cannot be opened.", file=sys.stderr)
        return key

    @staticmethod
    def _read_root_file(path: Path) -> bytes:
        try:
            text = path.read_text()
        except OSError as e:
            raise StoreError(f"cannot read the root key file {path}: {e.strerror}") from None
        return decode_root_key(text, f"root key file {path}")

    def _migrate(self, from_version: int) -> None:
        with self._migration_lock():
            v = from_version
            while v < SCHEMA_VERSION:
                step = MIGRATIONS[v]
                with self.transaction() as conn:
                    # Another process may have migrated while this one waited for the write lock.
                    now_at = conn.execute(select(kms_state.c.schema_version)
                                          .where(kms_state.c.id == 1)).scalar_one()
                    if now_at == v:
                        step(conn)
                        conn.execute(update(kms_state).where(kms_state.c.id == 1)
                                     .values(schema_version=v + 1))
                v += 1

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Serialise migrations between processes.  SQLite and PostgreSQL need nothing more
        than the write transaction (their DDL is transactional); on MariaDB the first ALTER
        commits and so releases the ``kms_state`` row lock, so a named lock (per database)
        keeps a second process from starting the same step meanwhile (named after the
        database, hashed: lock names are limited to 64 characters)."""
        if self.engine.dialect.name not in ("mysql", "mariadb"):
            yield
            return
        with self.engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT GET_LOCK(CONCAT('kms_local_migrate.', MD5(DATABASE())), 120)").scalar()
            if got != 1:
                raise StoreError(f"timed out waiting for another process to migrate {self.display_url}")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT RELEASE_LOCK(CONCAT('kms_local_migrate.', MD5(DATABASE())))")

    # -- use ----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: all or nothing, serialised with other writers."""
        _check_io()
        try:
            with self.engine.begin() as conn:
                conn.execute(update(kms_state).where(kms_state.c.id == 1)
                             .values(generation=kms_state.c.generation + 1))
                yield conn
                if self._notify:
                    conn.exec_driver_sql(self._notify)  # delivered to other hosts at commit
        except SQLAlchemyError as e:
            log.error("store write failed: %s", type(e).__name__)
            raise StoreError(f"the key store could not complete the write ({type(e).__name__})") from e
        # Committed: every process on this host sees it from now on (before the call returns).
        self.changes.bump()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection (never waits behind writers on SQLite)."""
        _check_io()
        with self.engine.connect() as conn:
            conn.execution_options(kms_read_only=True)
            yield conn

    def generation(self) -> int:
        with self.reading() as conn:
            return conn.execute(select(kms_state.c.generation).where(kms_state.c.id == 1)).scalar_one()

    def ensure_tables(self, *tables: Table) -> None:
        create_tables(self.engine, list(tables))

    def _root(self) -> AESGCM:
        if self._aead is None:  # pragma: no cover - set by __init__ before any use
            raise StoreError("the store is not open")
        return self._aead

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return bytes([_SEAL_VERSION]) + nonce + self._root().encrypt(nonce, data, b"kms-local/seal/v1|" + aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if not sealed or sealed[0] != _SEAL_VERSION:
            raise StoreError("a sealed value in the store has an unknown format")
        try:
            return self._root().decrypt(sealed[1:13], sealed[13:], b"kms-local/seal/v1|" + aad)
        except InvalidTag:
            raise StoreError("a sealed value in the store failed authentication "
                             "(tampered with, or moved between rows)") from None

    @staticmethod
    def material_aad(key_id: str, version: int) -> bytes:
        return f"material|{key_id}|{version}".encode()

    def wait_listening(self, timeout: float) -> bool:
        """For tests and start-up: whether this process hears other hosts' changes (PostgreSQL)."""
        return self._listener is None or self._listener.ready.wait(timeout)

    def dispose(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self.engine.dispose()
        self.changes.close()

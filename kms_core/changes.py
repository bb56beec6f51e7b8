"""Telling every process that uses a store that it changed, before the writer's call returns.

Engines cache keys, aliases, grants and access keys.  A write (disable a key, retire or revoke
a grant, delete an access key…) must take effect in every process at once, not when a cache
expires.  Two channels carry "the store changed":

* **This host**: a 64-bit counter in a shared memory file (``/dev/shm``, mode 0600) named after
  the store.  ``Store.transaction`` bumps it after its commit and before returning; every
  engine compares it with the value it last saw on each call (an 8-byte read, ~0.2 µs) and
  refreshes when it moved.  So the workers of one ``kms serve``, the ``kms`` CLI and in-process
  clients on the same host see a change when the call that made it returns.
* **Other hosts** (PostgreSQL): the writing transaction sends ``NOTIFY kms_changes_<store>`` (delivered
  at commit); each process keeps one listening connection and counts notifications in
  ``remote``.  Latency is PostgreSQL's notification delivery (measured in
  ``tests/server/test_changes.py``); the engine's periodic generation check (``cache_ttl``)
  remains the bound if a notification is ever lost (the listener reconnects).

``value()`` is the sum of both; callers only compare it for equality.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("kms_core.changes")

CHANNEL_PREFIX = "kms_changes_"
_COUNTER = struct.Struct("<Q")
_SIZE = 4096  # one page


def signal_dir() -> Path:
    configured = os.environ.get("KMS_CHANGE_SIGNAL_DIR")
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def store_identity(url: str) -> str | None:
    """What names one store on this host: a SQLite file's real path, or the database URL
    without its password.  None for a private in-memory database."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        path = path.split("?", 1)[0]
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            return None
        return "sqlite:" + os.path.realpath(os.path.expanduser(path))
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for server databases

    return make_url(url).render_as_string(hide_password=True)


class ChangeSignal:
    """The counter for one store (see the module's docstring)."""

    def __init__(self, identity: str | None):
        digest = hashlib.sha256((identity or "").encode()).hexdigest()[:24]
        # NOTIFY channels are per database: name it after the store (schemas share a database).
        self.channel = CHANNEL_PREFIX + digest[:16]
        self.remote = 0  # notifications from other hosts (PostgreSQL LISTEN)
        self._local = 0  # a private store: nobody else to tell
        self._mm: mmap.mmap | None = None
        self._fd = -1
        self.path: Path | None = None
        if identity is None:
            return
        self.path = signal_dir() / f"kms-local-{os.getuid()}-{digest}"
        old = os.umask(0o077)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        finally:
            os.umask(old)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._mm = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def value(self) -> int:
        mm = self._mm
        if mm is None:
            return self._local + self.remote
        return _COUNTER.unpack_from(mm, 0)[0] + self.remote

    def bump(self) -> None:
        """Called after a write committed, before the call that made it returns."""
        mm = self._mm
        if mm is None:
            self._local += 1
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # writers only; readers never take it
        try:
            _COUNTER.pack_into(mm, 0, _COUNTER.unpack_from(mm, 0)[0] + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            with contextlib.suppress(BufferError):
                mm.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Listener:
    """One LISTEN connection per process on a PostgreSQL store; counts notifications into
    ``signal.remote``.  A daemon thread; reconnects after errors (with a pause)."""

    def __init__(self, dsn: str, signal: ChangeSignal):
        self._dsn = dsn
        self._signal = signal
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kms-change-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - only PostgreSQL stores listen

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self._signal.channel}")
                    self.ready.set()
                    # Anything missed while (re)connecting: count it as a change.
                    self._signal.remote += 1
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._signal.remote += 1
            except Exception as e:  # the database went away: retry, the poll covers the gap
                log.warning("change listener: %s; reconnecting", type(e).__name__)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()


def libpq_dsn(url: str) -> str | None:
    """The psycopg connection string for a ``postgresql+psycopg://`` SQLAlchemy URL."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for server databases

    u = make_url(url)
    if u.get_backend_name() != "postgresql" or u.get_driver_name() not in ("psycopg", "psycopg2", ""):
        return None
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


__all__ = ["CHANNEL_PREFIX", "ChangeSignal", "Listener", "libpq_dsn", "signal_dir", "store_identity"]

"""The threads that seal and open chunks of encrypted files beside the caller's.

pyca/cryptography 50 releases the GIL inside ``AESGCM.encrypt_into`` and
``decrypt_into`` (and ``os.preadv``/``os.write`` always have), so chunks of one
file can be sealed or opened on several cores at once, or while its I/O runs.
Three shapes, each for the calls it measured faster on:

* bulk calls (``run_in_order``): a read or write of several MiB is cut into
  jobs of about 1 MiB for a process-wide pool, at most ``window()`` in flight,
  each with buffers of its own, so memory stays bounded whatever the size;
* ``WriteBehind``: a writer's own thread writes full batches while the writer
  seals the next ones;
* ``ReadAhead``: a reader's own thread reads ciphertext ahead of sequential
  reads while the reader opens what came before.

Small and ranged reads never hand off to a thread (their latency is the point).
``KMS_FS_THREADS`` sets the number of workers (default: the usable CPUs, at
most 4; 0 or 1 turns all of this off).
"""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_WORKERS = 4
_local = threading.local()


class _Shared:
    """The process's one pool, created on first use."""

    lock = threading.Lock()
    pool: ThreadPoolExecutor | None = None


def workers() -> int:
    """Worker threads for bulk transfers (1: everything on the caller's thread)."""
    env = os.environ.get("KMS_FS_THREADS", "").strip()
    if env:
        try:
            return max(1, min(64, int(env)))
        except ValueError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, cpus))


def window() -> int:
    """Jobs in flight at once (each holds one job's buffers)."""
    return 2 * workers()


def _get_pool() -> ThreadPoolExecutor:
    with _Shared.lock:
        if _Shared.pool is None:
            _Shared.pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="kms-fs")
        return _Shared.pool


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads.
    _Shared.pool = None
    _Shared.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def scratch(size: int) -> bytearray:
    """A buffer of at least ``size`` bytes owned by the calling thread (reused)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(size)
    return buf


def _run_here(job: Callable[[], T]) -> tuple[bool, Any]:
    try:
        return True, job()
    except BaseException as exc:  # re-raised in job order by run_in_order
        return False, exc


def run_in_order(jobs: Iterable[Callable[[], T]],
                 consume: Callable[[T], None] | None = None) -> None:
    """Run ``jobs`` on the workers, at most ``window()`` at a time, and hand
    their results to ``consume`` on this thread in job order.  Rather than
    wait, this thread runs jobs that no worker has started yet (the next one
    due first): it would otherwise sit idle, and on a busy machine a worker
    may wait long for a core.

    The first failure in job order is raised, after every job already started
    has finished (jobs write into the caller's buffers: none may still be
    running when this returns); jobs not yet started are dropped.  ``jobs`` is
    advanced only after a result is consumed, so it may recycle buffers."""
    pool = _get_pool()
    it = iter(jobs)
    # [future, job, (ok, result or exception) if it ran on this thread]
    pending: deque[list[Any]] = deque()

    def submit() -> None:
        job = next(it, None)
        if job is not None:
            pending.append([pool.submit(job), job, None])

    def steal() -> bool:
        for entry in pending:
            if entry[2] is None and entry[0].cancel():
                entry[2] = _run_here(entry[1])
                return True
        return False
    try:
        for _ in range(window()):
            submit()
        while pending:
            fut, _job, here = pending[0]
            if here is None and not fut.done() and steal():
                continue
            pending.popleft()
            if here is None:
                result = fut.result()
            elif here[0]:
                result = here[1]
            else:
                raise here[1]
            if consume is not None:
                consume(result)
            submit()
    finally:
        if pending:
            for entry in pending:
                entry[0].cancel()
            wait([entry[0] for entry in pending])


class WriteBehind:
    """A thread of one writer's own that hands full batches to ``write`` in
    order while the writer seals the next ones into other buffers.

    The shared pool's per-job hand-off (a future, then a wake-up and the GIL
    for each batch) measured no faster than sealing and writing on one thread;
    a thread that drains a queue of ``buffers`` batches of ``size`` bytes
    keeps writing while the caller seals (benchmarks/fs_throughput.py).  The
    first failure of ``write`` is raised by the next ``buffer``, ``drain`` or
    ``close``; the batches queued after it are dropped."""

    def __init__(self, write: Callable[[memoryview], Any], buffers: int, size: int):
        self._write = write
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(memoryview(bytearray(size)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kms-fs-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            buf, n = item
            if self._error is None:
                try:
                    self._write(buf[:n])
                except BaseException as exc:  # raised on the writer's thread by _check
                    self._error = exc
            self._free.put(buf)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def buffer(self) -> memoryview:
        """An empty batch buffer (waits while every buffer is queued)."""
        self._check()
        return self._free.get()

    def put(self, buf: memoryview, n: int) -> None:
        """Queue ``buf[:n]`` for writing; ``buf`` came from ``buffer``."""
        self._full.put((buf, n))

    def drain(self) -> None:
        """Wait until everything queued is written."""
        done = threading.Event()
        self._full.put(done)
        done.wait()
        self._check()

    def close(self) -> None:
        """Write what is queued, end the thread; raise the first failure."""
        self._full.put(None)
        self._thread.join()
        self._check()

    def abandon(self) -> None:
        """End the thread once its current write returns, dropping what is queued."""
        if self._error is None:
            self._error = RuntimeError("abandoned")
        self._full.put(None)
        self._thread.join()


class ReadAhead:
    """A thread of one reader's own that reads bytes [start, end) of a file
    descriptor in order, into ``buffers`` buffers of ``size`` bytes, while the
    reader opens what it read before (``os.preadv`` and AES-GCM both release
    the GIL).  Nothing read here is used unauthenticated: ``take`` only hands
    ciphertext to the reader, which opens it as any other.  A short read (the
    file shrank) or an OS error ends the read-ahead: ``take`` then returns
    fewer bytes, or raises that error."""

    def __init__(self, fd: int, start: int, end: int, buffers: int, size: int):
        self.pos = start  # the next byte ``take`` returns
        self._end = end
        self._free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(memoryview(bytearray(size)))
        self._cur: memoryview | None = None
        self._at = self._have = 0
        self._ended = False
        self._thread = threading.Thread(target=self._run, args=(fd, start), name="kms-fs-reader", daemon=True)
        self._thread.start()

    def _run(self, fd: int, pos: int) -> None:
        try:
            while pos < self._end:
                buf = self._free.get()
                if buf is None:
                    return
                want = min(len(buf), self._end - pos)
                got = 0
                while got < want:
                    n = os.preadv(fd, [buf[got:want]], pos + got)
                    if not n:
                        break
                    got += n
                self._full.put((buf, got))
                pos += got
                if got < want:
                    break
        except BaseException as exc:  # raised on the reader's thread by take()
            self._full.put(exc)
        finally:
            self._full.put(None)

    def take(self, n: int) -> memoryview:
        """Up to ``n`` next bytes (empty at the end), valid until the next call."""
        if self._cur is not None and self._at == self._have:
            self._free.put(self._cur)
            self._cur = None
        if self._cur is None:
            if self._ended:
                return memoryview(b"")
            item = self._full.get()
            if item is None:
                self._ended = True
                return memoryview(b"")
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            self._cur, self._have = item
            self._at = 0
        assert self._cur is not None
        k = min(n, self._have - self._at)
        view = self._cur[self._at:self._at + k]
        self._at += k
        self.pos += k
        return view

    def close(self) -> None:
        """Stop reading ahead (once the read in progress returns)."""
        self._end = 0
        self._free.put(None)
        self._thread.join()

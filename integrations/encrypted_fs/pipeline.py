"""The worker threads that seal and open chunks of large reads and writes.

pyca/cryptography 50 releases the GIL inside ``AESGCM.encrypt_into`` and
``decrypt_into`` (and ``os.preadv`` always has), so chunks of one file can be
sealed or opened on several cores at once.  Only bulk transfers come here:
a read or write is cut into jobs of about 1 MiB, at most ``window()`` of them
in flight, each with buffers of its own, so memory stays bounded whatever the
size.  Small and ranged reads never hand off to a thread (their latency is
the point).

``KMS_FS_THREADS`` sets the number of workers (default: the usable CPUs, at
most 4; 0 or 1 turns threading off).
"""
from __future__ import annotations

import os
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

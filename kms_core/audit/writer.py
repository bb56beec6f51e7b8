"""The audit log's writer: the engine's auditor hook and its background appender.

The request path does no database work: it copies what the event needs (secrets
already dropped) onto an in-memory queue; a background thread renders queued
requests into events and appends them in batches (group commit).

Two durability modes (docs/audit-log.md, "Durability"):

* ``durable`` — the auditor returns only once the request's event is committed,
  so no response precedes its event.  Callers waiting together share one commit.
  On an event loop (the server's ``call_nonblocking``) the auditor cannot block:
  it leaves a ticket that the server awaits with :meth:`AuditLog.committed`.
* ``buffered`` — the auditor returns at once; an event may be up to
  ``flush_interval`` old before it is committed (lost if the process is killed).

Either way the log fails closed: while events cannot be committed (a full disk,
a database that is down), :meth:`AuditLog.admit` refuses new requests with
``DependencyTimeoutException`` before they run, and nothing ever waits without
a bound.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import sys
import threading
import time
import weakref
from time import time as _time
from typing import Any

from ..clock import SystemClock
from ..errors import KMSError
from ..store import _NO_IO, Store, _check_io
from .chain import ChainAppender, ensure_tables, load_key
from .events import _NULL_RESPONSE, SECRET_MEMBERS, _read_only, _Renderer, _strip
from .writer_process import SUPPORTED as PROCESS_SUPPORTED
from .writer_process import WriterProcess, WriterProcessError, frame, portable, render_batch

log = logging.getLogger("kms_core.audit")

DURABLE, BUFFERED = "durable", "buffered"
THREAD, PROCESS = "thread", "process"
DURABILITY_ENV = "KMS_AUDIT_DURABILITY"


class AuditUnavailable(KMSError):
    """The audit log cannot record requests now: the request is refused (fail closed).

    ``DependencyTimeoutException`` (HTTP 503), not ``KMSInternalException`` (500):
    the failure is in a dependency (the audit store), it is transient and the
    request is safe to retry — every AWS SDK retries 503 — and 500 stays reserved
    for bugs.  botocore models it for the service, so ``client.exceptions.
    DependencyTimeoutException`` catches it on every operation."""

    def __init__(self, why: str):
        super().__init__("DependencyTimeoutException",
                         f"The request was not performed: the audit log cannot record it ({why}). "
                         "Retry later.")


_INTERNAL = "An internal error occurred."


def _default_durability() -> str:
    # Buffered by default: durable costs too much to impose (docs/audit-log.md, "Cost").
    mode = (os.environ.get(DURABILITY_ENV) or BUFFERED).strip().lower()
    if mode not in (DURABLE, BUFFERED):
        raise ValueError(f"{DURABILITY_ENV} must be {DURABLE!r} or {BUFFERED!r}")
    return mode


class AuditLog:
    """Chained appender for one store.  The instance is the auditor callable."""

    def __init__(self, store: Store, *, account_id: str, region: str, clock=None,
                 durability: str | None = None, max_pending: int = 50_000,
                 batch_size: int = 1_000, flush_interval: float = 0.05,
                 commit_timeout: float = 5.0, writer: str = THREAD):
        self.store = store
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self.durability = durability or _default_durability()
        if self.durability not in (DURABLE, BUFFERED):
            raise ValueError(f"durability must be {DURABLE!r} or {BUFFERED!r}")
        self._durable = self.durability == DURABLE
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._interval = flush_interval
        self._commit_timeout = commit_timeout
        ensure_tables(store)
        key = load_key(store, create=True)
        assert key is not None  # create=True
        self._key = key
        if writer not in (THREAD, PROCESS):
            raise ValueError(f"writer must be {THREAD!r} or {PROCESS!r}")
        if writer == PROCESS and (store.in_memory or not sys.executable or not PROCESS_SUPPORTED):
            # another process cannot open this process's in-memory database (nor start
            # at all where the interpreter cannot be run again, e.g. embedded; nor talk
            # over POSIX pipes on Windows)
            writer = THREAD
        self.writer = writer
        # THREAD: the writer thread renders and appends.  PROCESS: it hands each batch
        # to a child that does (writer_process.py); everything else stays here.
        self._appender = ChainAppender(store, key)
        self._renderer = _Renderer(account_id, region)
        self._child: WriterProcess | None = None
        if writer == PROCESS:
            self._child = WriterProcess(store.settings, account_id, region)
            self._child.start()
        self._system_clock = clock is None or type(clock) is SystemClock
        self._give_up = threading.Event()
        self._unwritten = 0
        self._pending: collections.deque = collections.deque()
        self._wake = threading.Event()
        # Durable mode: requests are numbered as they are queued; the writer
        # counts the ones it has committed and wakes whoever waits for them.
        self._queue_lock = threading.Lock()
        self._queued = 0
        self._committed = 0   # requests settled so far (in queue order)
        self._lost: list[tuple[int, int]] = []  # (first, last) numbers settled without a commit
        self._done = threading.Condition()
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._ticket = threading.local()
        self._failing: str | None = None   # why appends fail, while they do
        self._closed = False
        self._stop = False
        self.appended = 0          # events this instance has committed
        self.failures = 0          # failed batch appends (retried)
        self.refusals_unrecorded = 0  # refusals beyond the queue bound while failing
        self._engine_ref: weakref.ReferenceType | None = None
        self._thread = threading.Thread(target=self._run, name="kms-audit-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def __repr__(self) -> str:
        return (f"<AuditLog store={self.store.display_url!r} {self.durability} "
                f"writer={self.writer} appended={self.appended}>")

    @property
    def healthy(self) -> bool:
        """False while events cannot be committed (requests are being refused)."""
        return self._failing is None

    # -- request path ----------------------------------------------------------------
    def admit(self) -> None:
        """Called by the engine before it performs a request: refuse it (raise
        :class:`AuditUnavailable`) while its event could not be committed."""
        if self._failing is not None and not self._closed:
            raise AuditUnavailable(f"appending to the audit store fails: {self._failing}")
        if len(self._pending) >= self._max_pending and not self._closed:
            _check_io()  # on an event loop: WouldBlock, the caller retries off the loop
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        self._wake.set()
        deadline = time.monotonic() + self._commit_timeout
        with self._done:
            while len(self._pending) >= self._max_pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise AuditUnavailable("the audit store is not keeping up")
                self._done.wait(min(left, 0.1))

    def __call__(self, ctx, operation, params, result, error) -> None:
        """Record one request (the engine's ``auditor`` hook).  Buffered: never
        raises.  Durable: returns once the event is committed, or raises
        :class:`AuditUnavailable` when it could not be within ``commit_timeout``."""
        if self._closed:
            return
        if error is not None and not isinstance(error, KMSError):
            # An unexpected exception (a bug): recorded as the server reports it, and
            # never with its text, which might quote anything.
            error = KMSError("KMSInternalException", _INTERNAL)
        item = self._capture(ctx, operation, params, result, error)
        refusal = isinstance(error, AuditUnavailable)
        if refusal and len(self._pending) >= self._max_pending:
            # Refused while the log cannot be written: the request had no effect and
            # memory must stay bounded, so past the bound it is only counted.
            self.refusals_unrecorded += 1
            return
        if not self._durable:
            pending = self._pending
            pending.append(item)
            # Wake the writer only for a full batch: waking it per event would make
            # it commit tiny batches and fight the request thread for the GIL.
            if len(pending) >= self._batch_size and not self._wake.is_set():
                self._wake.set()
            return
        with self._queue_lock:
            self._pending.append(item)
            self._queued += 1
            n = self._queued
        if not self._wake.is_set():
            self._wake.set()
        if refusal:
            return  # an error answer that changed nothing: no need to wait for it
        if getattr(_NO_IO, "on", False):
            self._ticket.n = n  # on an event loop: the caller awaits committed()
            return
        self._wait_committed(n)

    def _capture(self, ctx, operation, params, result, error) -> tuple:
        try:
            # epoch seconds; the engine's clock unless it is the system clock (cheaper)
            when = _time() if self._system_clock else self.clock.now().timestamp()
            if result is not None:
                result = _result_snapshot(operation, result)
            item = (when, ctx, operation, _strip(params), result, error)
            return item if self._child is None else portable(item)
        except Exception as e:  # odd input must not fail the request nor lose the event
            log.error("audit: could not capture a %s request (%s)", operation, type(e).__name__)
            item = (_time(), ctx, operation, {}, None, error)
            if self._child is None:
                return item
            try:
                return portable(item)
            except Exception:  # the context itself is what failed: the event keeps the rest
                return portable((item[0], None, *item[2:]))

    def _wait_committed(self, n: int) -> None:
        if self._committed >= n:
            return
        deadline = time.monotonic() + self._commit_timeout
        with self._done:
            while self._committed < n:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop:
                    raise AuditUnavailable(self._why_late())
                self._done.wait(left)
        self._check_lost(n)

    def _check_lost(self, n: int) -> None:
        if self._lost and any(a <= n <= b for a, b in self._lost):
            raise AuditUnavailable("the event could not be written")

    def _why_late(self) -> str:
        if self._failing is not None:
            return f"appending to the audit store fails: {self._failing}"
        return f"the event was not committed within {self._commit_timeout:g} s"

    async def committed(self) -> None:
        """On an event loop, after an engine call: wait until the event that call
        recorded (if any, in durable mode) is committed; raise
        :class:`AuditUnavailable` if it is not within ``commit_timeout``."""
        n = self._ticket.__dict__.pop("n", None)
        if n is None or self._committed >= n:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._done:
            if self._committed >= n:
                return
            self._async_waiters.append((n, loop, fut))
        try:
            async with asyncio.timeout(self._commit_timeout):
                await fut
        except TimeoutError:
            raise AuditUnavailable(self._why_late()) from None
        self._check_lost(n)

    # -- control ---------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every event recorded before this call is committed."""
        if not self._thread.is_alive():
            return not self._pending
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        return done.wait(timeout)

    def _flush_bounded(self, timeout: float) -> bool:
        """``flush(timeout)``, cut to 2 s once appends are seen failing."""
        if not self._thread.is_alive():
            return not self._pending
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        deadline = time.monotonic() + timeout
        failing_deadline = None
        while not done.wait(0.05):
            now = time.monotonic()
            if self._failing is not None and failing_deadline is None:
                failing_deadline = now + 2.0
            if now >= min(deadline, failing_deadline or deadline):
                return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the writer and detach from the engine (idempotent).  While
        the store cannot be written, waits at most a couple of seconds: a process
        being stopped must stop (the events still queued are reported as lost)."""
        if self._closed:
            return
        eng = self._engine_ref() if self._engine_ref is not None else None
        if eng is not None and getattr(eng, "auditor", None) is self:
            eng.auditor = None
        self._closed = True
        self._flush_bounded(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout if self._failing is None else 0.5)
        if self._thread.is_alive():  # the database stayed unreachable: stop retrying
            self._give_up.set()
            if self._child is not None:
                self._child.kill()  # an append blocked in the child ends with it
            self._thread.join(5.0)
        with self._done:
            self._done.notify_all()
        lost = self._unwritten + sum(1 for i in self._pending if type(i) is tuple)
        if lost or self.refusals_unrecorded:
            log.error("audit: %d events could not be written before close (and %d refusals "
                      "were not recorded)", lost, self.refusals_unrecorded)
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        pending = self._pending
        more = False  # the last round stopped at a full batch or a flush marker
        while True:
            # Buffered: one commit per flush_interval unless there is more to do at once
            # (a full batch, flush(), close(), a full queue).  Going straight back to the
            # events that arrived during the last commit would, under load, commit ever
            # smaller batches back to back, and the writer would contend with the request
            # thread for the GIL all the time instead of once per interval (docs/server.md,
            # "The audit log's cost on the event loop").  Durable: requests wait for their
            # commit, so go on at once.
            if not pending or not (more or self._durable or self._stop
                                   or len(pending) >= self._batch_size):
                self._wake.wait(self._interval)
                self._wake.clear()
            raw: list[tuple] = []
            markers: list[threading.Event] = []
            while pending and len(raw) < self._batch_size:
                item = pending.popleft()
                if type(item) is not tuple:
                    markers.append(item)
                    break  # commit what precedes the flush marker, then release it
                raw.append(item)
            more = bool(markers) or len(raw) >= self._batch_size
            if raw:
                self._write(raw)
            for m in markers:
                m.set()
            if self._stop and not pending:
                self._appender.drop_connection()
                if self._child is not None:
                    self._child.close()
                return

    def _write(self, raw: list[tuple]) -> None:
        events: list | bytes
        try:
            # In this process: the rendered events; for the writer process: the batch.
            events = self._render(raw) if self._child is None else frame(raw)
        except Exception as e:  # a bug: say so loudly, keep the writer alive
            log.error("audit: %d events could not be built (%s)", len(raw), type(e).__name__)
            self._unwritten += len(raw)
            events = []
        backoff = 0.05
        committed = False
        while events:
            try:
                self._append(events)
                self.appended += len(raw)
                committed = True
                if self._failing is not None:
                    log.warning("audit: appending works again; accepting requests")
                    self._failing = None
                break
            except Exception as e:  # the database is down, busy or full: keep the events
                self.failures += 1
                why = e.reason if isinstance(e, WriterProcessError) else type(e).__name__
                if self._failing is None:
                    log.error("audit: appending %d events failed (%s); refusing requests "
                              "until it works again", len(raw), why)
                self._failing = why
                if self._stop and self._give_up.is_set():
                    self._unwritten += len(raw)
                    break
                self._give_up.wait(backoff)
                backoff = min(backoff * 2, 1.0)
        self._release(len(raw), committed)

    def _release(self, count: int, committed: bool) -> None:
        """``count`` more queued requests are settled: wake whoever waits for them."""
        with self._done:
            if not committed:
                self._lost.append((self._committed + 1, self._committed + count))
            self._committed += count
            done = self._committed
            self._done.notify_all()
            if not self._async_waiters:
                return
            ready = [w for w in self._async_waiters if w[0] <= done]
            self._async_waiters = [w for w in self._async_waiters if w[0] > done]
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for _, loop, fut in ready:
            by_loop.setdefault(loop, []).append(fut)
        for loop, futs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)  # one wake-up per loop and batch
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _append(self, events: list[tuple[str, dict]] | bytes) -> None:
        """Commit one batch (rendered events, or the writer process's frame); raises
        when it was not committed."""
        if self._child is None:
            assert type(events) is list
            self._appender.append(events)
            return
        assert type(events) is bytes
        _, dropped = self._child.append(events)
        if dropped:  # events that could not be built at all (a bug, logged by the child)
            self.appended -= dropped
            self._unwritten += dropped

    def _render(self, raw: list) -> list[tuple[str, dict]]:
        """Events for a batch of captured requests (outside any transaction)."""
        events, dropped = render_batch(self._renderer, raw)
        if dropped:
            raise ValueError(f"{dropped} events could not be built")
        return events


def _resolve(futs: list[asyncio.Future]) -> None:
    for f in futs:
        if not f.done():  # a waiter that timed out cancelled its future
            f.set_result(None)


def _result_snapshot(operation, result: dict) -> dict:
    """What the event needs of a result, copied (the caller may mutate it later)."""
    if operation in _NULL_RESPONSE:  # only which key was used matters
        if operation != "ReEncrypt":
            return {"KeyId": result.get("KeyId")}
        return {"KeyId": result.get("KeyId"), "SourceKeyId": result.get("SourceKeyId")}
    if _read_only(operation):  # responseElements null: keep the key only
        md = result.get("KeyMetadata")
        out: dict[str, Any] = {"KeyId": result.get("KeyId")}
        if type(md) is dict:
            out["KeyMetadata"] = {"Arn": md.get("Arn"), "KeyId": md.get("KeyId")}
        return out
    return _snapshot(result)


def _snapshot(value: Any, depth: int = 0) -> Any:
    # Management results are small; copy them so later mutation by the caller
    # (e.g. ResponseMetadata) cannot change the record.
    if depth > 20:
        return None
    if isinstance(value, dict):
        return {k: _snapshot(v, depth + 1) for k, v in value.items()
                if k not in SECRET_MEMBERS}
    if isinstance(value, list):
        return [_snapshot(v, depth + 1) for v in value]
    return value


_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for a in list(_LIVE):
        try:
            a.close(timeout=10.0)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def attach(engine, **options) -> AuditLog:
    """Audit every request ``engine`` serves; returns the :class:`AuditLog`.

    Options: ``durability`` (``"buffered"``, the default, or ``"durable"``; the
    environment variable ``KMS_AUDIT_DURABILITY`` sets the default),
    ``max_pending`` (queue bound, default 50 000 events: beyond it requests wait,
    at most ``commit_timeout``, then are refused), ``batch_size`` (the most
    events appended per transaction, default 1 000), ``flush_interval``
    (buffered mode: seconds between appends, default 0.05 — the longest an event
    waits before it is committed), ``commit_timeout`` (durable mode: the longest
    a request waits for its event, default 5 s), ``writer`` (``"thread"``, the
    default: events are rendered and appended by a thread of this process;
    ``"process"``: by a child process, out of this process's GIL — what
    ``kms serve`` uses).  Attaching twice returns the log already attached.
    """
    current = getattr(engine, "auditor", None)
    if isinstance(current, AuditLog) and not current._closed:
        return current
    audit = AuditLog(engine.store, account_id=engine.settings.account_id,
                     region=engine.settings.region, clock=engine.clock, **options)
    audit._engine_ref = weakref.ref(engine)
    engine.auditor = audit
    return audit

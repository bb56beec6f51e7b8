"""The audit log's writer process: renders and appends batches outside the server's GIL.

``kms serve`` runs one per worker (``AuditLog(..., writer="process")``,
docs/audit-log.md, "Writer process").  The worker's writer thread keeps
everything that decides *when* and *whether* a request may go on — the queue,
batching, durable waits, failing closed, retries — and hands each batch of
captured requests to this process, which renders the events, extends the
chain and commits, then answers.  Rendering and the append are most of the
log's per-request work; done in the worker's writer thread they hold the GIL
the event loop needs, which costs the loop more than the work itself
(docs/server.md, "The audit log's cost on the event loop").

Protocol on the child's stdin/stdout: frames of a 4-byte big-endian length and
a pickle (parent and child are the same program; nothing else writes to the
pipes).  The first frame carries the store's settings; the child answers
``("ready",)`` once the store is open and the chain's key unsealed.  Then
each batch frame is answered ``("ok", appended, dropped)`` after its commit
or ``("error", reason)`` when the append failed (the batch was rolled back:
the parent retries it).  End of input — the worker closing the pipe or dying
— ends the child.
"""
from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: AuditLog keeps the thread writer there (SUPPORTED)
    fcntl = None  # type: ignore[assignment]

from ..engine.records import RequestContext
from ..errors import StoreError
from .events import _Renderer, _uuid

log = logging.getLogger("kms_core.audit")

# POSIX pipes, os.readv: elsewhere the audit log keeps its thread writer.
SUPPORTED = os.name == "posix"
_CHILD = "import sys; from kms_core.audit.writer_process import main; sys.exit(main())"
_LEN = struct.Struct(">I")
_PIPE_SIZE = 1 << 20
_MAX_FRAME = 1 << 30   # a batch of at most batch_size captured requests is far smaller
# A request context travels as its fields' values, in RequestContext's order.
_CTX_FIELDS = tuple((f.name, f.default) for f in RequestContext.__dataclass_fields__.values())


class SentError:
    """What the event needs of a request's error: its code and message (KMSError
    does not survive pickling: its constructor takes the code first)."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message

    def __reduce__(self):
        return (SentError, (self.code, self.message))


def render_batch(renderer: _Renderer, raw: list) -> tuple[list[tuple[str, dict]], int]:
    """Events for a batch of captured requests, and how many could not be built at all."""
    ids = os.urandom(32 * len(raw))
    out = []
    dropped = 0
    render = renderer.render
    for i, (when, ctx, op, params, result, error) in enumerate(raw):
        eid = _uuid(ids[32 * i:32 * i + 16])
        rid = getattr(ctx, "request_id", None) or _uuid(ids[32 * i + 16:32 * i + 32])
        try:
            out.append(render(ctx, op, params, result, error, when, eid, rid))
        except Exception as e:  # still one event per request, without the odd parts
            log.error("audit: building a %s event failed (%s)", op, type(e).__name__)
            try:
                out.append(render(None, op, None, None, error, when, eid, rid))
            except Exception:  # a bug: counted and reported by the writer
                dropped += 1
    return out, dropped


def portable(item: tuple) -> tuple:
    """A captured request as it crosses the pipe: the context as its fields' values,
    the error as a :class:`SentError`.  Done when the request is captured, while its
    objects are still in the cache, not later by the writer thread."""
    when, ctx, op, params, result, error = item
    if ctx is not None:
        ctx = tuple([getattr(ctx, name, default) for name, default in _CTX_FIELDS])
    if error is not None:
        error = SentError(str(getattr(error, "code", None) or type(error).__name__),
                          str(getattr(error, "message", "") or ""))
    return (when, ctx, op, params, result, error)


def frame(items: list) -> bytes:
    """A batch of :func:`portable` requests as one frame's pickle.  An item that cannot
    be pickled (an odd parameter value) keeps only its time, operation and error: the
    event still says who did what and how it ended, the rest of the batch is intact."""
    try:
        return pickle.dumps(items, protocol=5)
    except Exception:
        kept = []
        for when, ctx, op, params, result, error in items:
            try:
                pickle.dumps((ctx, params, result), protocol=5)
            except Exception:
                ctx, params, result = None, {}, None
            kept.append((when, ctx, op if type(op) is str else None, params, result, error))
        return pickle.dumps(kept, protocol=5)


def _context(fields: tuple | None) -> RequestContext | None:
    return None if fields is None else RequestContext(*fields)


class WriterProcessError(Exception):
    """The writer process could not append a batch (``reason``: why), or is gone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WriterProcess:
    """The worker's end: starts the child, sends it batches, returns its answers."""

    def __init__(self, settings, account_id: str, region: str):
        self._settings = {
            "home": str(settings.home), "store_url": settings.store_url, "region": settings.region,
            "account_id": settings.account_id, "root_key": settings.root_key,
            "root_key_file": str(settings.root_key_file) if settings.root_key_file else None,
            "cache_ttl": settings.cache_ttl, "log_account": account_id, "log_region": region,
        }
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._ready = False
        self.starts = 0

    def __repr__(self) -> str:  # never the settings: they hold the root key
        return f"<WriterProcess pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child now (its imports overlap the worker's start-up)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # where kms_core is imported from
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      close_fds=True, bufsize=0)
        assert self._proc.stdin is not None
        _widen(self._proc.stdin.fileno())
        self._ready = False
        self.starts += 1
        try:
            _send(self._proc.stdin.fileno(), pickle.dumps(self._settings, protocol=5))
        except OSError:
            pass  # it died at once: the first answer reports it

    def append(self, batch: bytes) -> tuple[int, int]:
        """Send one batch (:func:`frame`); ``(appended, dropped)`` once it is
        committed.  Raises :class:`WriterProcessError` when it was not."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            try:
                if not self._ready:
                    answer = _receive(proc.stdout.fileno())
                    if answer[0] != "ready":
                        raise WriterProcessError(str(answer[1]))
                    self._ready = True
                _send(proc.stdin.fileno(), batch)
                answer = _receive(proc.stdout.fileno())
            except (OSError, EOFError, pickle.UnpicklingError, struct.error):
                self._stop(kill=True)
                raise WriterProcessError("WriterProcessExited") from None
            except WriterProcessError:
                self._stop(kill=True)
                raise
        if answer[0] == "ok":
            return answer[1], answer[2]
        raise WriterProcessError(str(answer[1]))

    def close(self, timeout: float = 10.0) -> None:
        """End of input: the child finishes and exits (killed after ``timeout``)."""
        with self._lock:
            self._stop(kill=False, timeout=timeout)

    def kill(self) -> None:
        """Stop the child at once (a worker giving up on a store that hangs)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _stop(self, *, kill: bool, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        for f in (proc.stdin, proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _widen(fd: int) -> None:
    """A pipe that holds a whole batch (Linux; 64 KiB by default): the worker's write
    completes in one system call instead of waiting for the child to read."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (AttributeError, OSError):  # another OS, or above /proc/sys/fs/pipe-max-size
        pass


def _send(fd: int, payload: bytes) -> None:
    data = memoryview(_LEN.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise EOFError
        got += k
    return buf


def _receive(fd: int) -> Any:
    (n,) = _LEN.unpack(_read_exactly(fd, _LEN.size))
    if n > _MAX_FRAME:
        raise EOFError
    return pickle.loads(_read_exactly(fd, n))


# -- the child --------------------------------------------------------------------------

def main() -> int:
    # The worker ends us by closing our input, after its last batch: a signal to the
    # whole process group (Ctrl-C, a service manager's SIGTERM) must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s kms-audit-writer: %(message)s")
    inp = sys.stdin.fileno()
    out = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt a frame
    _widen(out)
    try:
        return _serve(inp, out)
    except (EOFError, BrokenPipeError):  # the worker closed or died: nothing left to answer
        return 0
    except Exception as e:  # a bug: the worker sees the pipe close and starts another child
        log.error("the audit writer process stopped: %s", type(e).__name__)
        return 1


def _serve(inp: int, out: int) -> int:
    s = _receive(inp)
    try:
        appender, renderer = _open(s)
    except Exception as e:  # a store that cannot be opened: the worker reports and retries
        log.error("cannot open the audit log: %s", type(e).__name__)
        _send(out, pickle.dumps(("error", type(e).__name__)))
        return 1
    _send(out, pickle.dumps(("ready",)))
    # A batch is thousands of small containers that live until it is committed: with
    # the default thresholds the cyclic collector ran over them (and everything the
    # imports left) several times a batch: unpickling a batch cost 3-5 us an event
    # instead of ~0.5, the whole loop 21-26 us instead of 17-22 (3 alternating runs of
    # 12,000 events).  They are freed by reference counting; cycles are still collected.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        while True:
            raw = _receive(inp)
            events, dropped = render_batch(renderer, [
                (when, _context(ctx), op, params, result, error)
                for when, ctx, op, params, result, error in raw])
            try:
                if events:
                    appender.append(events)
            except Exception as e:  # rolled back: the worker retries the batch
                answer: tuple = ("error", type(e).__name__)
            else:
                answer = ("ok", len(events), dropped)
            _send(out, pickle.dumps(answer))
    finally:
        appender.drop_connection()


def _open(s: dict):
    from ..settings import Settings  # noqa: PLC0415 - the child only
    from ..store import Store  # noqa: PLC0415 - the child only
    from .chain import ChainAppender, load_key  # noqa: PLC0415 - the child only

    settings = Settings(Path(s["home"]), s["store_url"], s["region"], s["account_id"],
                        root_key=s["root_key"],
                        root_key_file=Path(s["root_key_file"]) if s["root_key_file"] else None,
                        cache_ttl=s["cache_ttl"])
    store = Store(settings, listen=False)
    key = load_key(store, create=False)
    if key is None:
        raise StoreError("the audit log's head row is missing")
    return ChainAppender(store, key), _Renderer(s["log_account"], s["log_region"])


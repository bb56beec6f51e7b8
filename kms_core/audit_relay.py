"""One audit writer process per node, fed by the server's workers.

Rendering, MACing and inserting an event is pure Python work (~15 µs).  Done
by a thread inside a server worker, it holds the GIL in bursts that the event
loop must wait out (up to the 5 ms switch interval), which is what the audit
log cost the server's tail latency.  ``kms serve`` therefore starts this
process (:func:`start_writer`); each worker's :class:`~kms_core.audit.AuditLog`
runs in *relay* mode: its thread only converts captured requests to plain
tuples and ships them here over a Unix socket, and the process appends them to
the store's chain with an ordinary (local) ``AuditLog``.

Wire (both directions on one stream socket, private to the server's user):
a worker sends frames ``u32 length | u64 batch id | pickle(list of events)``;
the writer answers ``u64 batch id`` once every event of that batch is
committed.  Workers keep each batch until it is acknowledged; if the writer
goes away they append the unacknowledged batches themselves, so nothing is
lost (a batch committed just before the writer died can then appear twice —
at least once, never zero times).

The socket lives in a directory only the server's user can open, and the
writer also checks the peer's uid.  Batches are plain data (tuples, lists,
dicts, strings, numbers): the unpickler refuses every class lookup, so a
payload cannot instantiate anything.
"""
from __future__ import annotations

import argparse
import io
import logging
import pickle
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

from .errors import KMSError

log = logging.getLogger("kms_core.audit")

_FRAME = struct.Struct(">IQ")
_ACK = struct.Struct(">Q")
MAX_FRAME = 64 * 1024 * 1024
# RequestContext fields an event reads, in wire order.
CTX_FIELDS = ("region", "account_id", "principal", "source_ip", "user_agent", "request_id",
              "access_key_id", "via_service", "authenticated")


class RelayError(Exception):
    """The writer process is unreachable or broke the protocol."""


# ===================================================================== conversion
class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    # Called only for objects beyond pickle's core types (containers, str,
    # numbers, bytes, None): those go the slow path through _plain.
    def reducer_override(self, obj):
        raise _NotPlain


class _PlainUnpickler(pickle.Unpickler):
    # Plain data only: no class is ever looked up, so nothing can be instantiated.
    def find_class(self, module, name):
        raise pickle.UnpicklingError("only plain data is accepted")


_DROP = object()


def _plain(value):
    """Management results can hold datetimes: the event records them as
    CloudTrail's text anyway, so convert them here; drop what the event would
    drop (objects it cannot render)."""
    from .audit import _cloudtrail_time

    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    if isinstance(value, datetime):
        return _cloudtrail_time(value)
    if isinstance(value, dict):
        out = {k: _plain(v) for k, v in value.items() if type(k) is str}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        return [v for v in map(_plain, value) if v is not _DROP]
    return _DROP


def _ctx_tuple(ctx):
    if ctx is None:
        return None
    g = getattr
    return (g(ctx, "region", None), g(ctx, "account_id", None), g(ctx, "principal", None),
            g(ctx, "source_ip", None), g(ctx, "user_agent", None), g(ctx, "request_id", None),
            g(ctx, "access_key_id", None), g(ctx, "via_service", None), g(ctx, "authenticated", True))


def _dumps(obj) -> bytes:
    buf = io.BytesIO()
    _PlainPickler(buf, protocol=5).dump(obj)
    return buf.getvalue()


def encode_batch(items: list[tuple]) -> bytes:
    """Captured requests ``(when, ctx, operation, params, result, error)`` as one payload."""
    out = [(when, _ctx_tuple(ctx), op, params, result,
            None if error is None else (str(getattr(error, "code", None) or type(error).__name__),
                                        str(getattr(error, "message", "") or "")))
           for when, ctx, op, params, result, error in items]
    try:
        return _dumps(out)
    except _NotPlain:  # a datetime (or an odd value) somewhere: the slow, safe path
        return _dumps([(w, c, o, _plain(p), _plain(r), e) for w, c, o, p, r, e in out])


class _Ctx:
    __slots__ = CTX_FIELDS

    def __init__(self, fields):
        for name, value in zip(CTX_FIELDS, fields):
            setattr(self, name, value)


def decode_batch(payload: bytes) -> list[tuple]:
    """The inverse of :func:`encode_batch`; raises RelayError on anything malformed."""
    try:
        items = _PlainUnpickler(io.BytesIO(payload)).load()
        out = []
        for when, ctx, op, params, result, error in items:
            if ctx is not None and (type(ctx) is not tuple or len(ctx) != len(CTX_FIELDS)):
                raise ValueError("context")
            out.append((float(when), None if ctx is None else _Ctx(ctx), op,
                        params if type(params) is dict else {},
                        result if type(result) is dict else None,
                        None if error is None else KMSError(str(error[0]), str(error[1]))))
        return out
    except Exception as e:  # whatever the bytes were, a typed refusal

        raise RelayError(f"malformed audit batch ({type(e).__name__})") from None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None at a clean end of stream before the first byte."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                raise RelayError("the stream ended inside a frame")
            return None
        buf += chunk
    return bytes(buf)


# ================================================================== worker side
class RelayClient:
    """A worker's connection to the writer process; used by one thread only
    (the AuditLog's writer thread)."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise
        # Blocking from here on: a socket with a timeout polls before every
        # recv, which would turn the MSG_DONTWAIT ack check into a wait.
        # sendall blocking while the writer catches up is the backpressure.
        self._sock.settimeout(None)
        self._next = 0
        self._unacked: dict[int, list] = {}   # batch id -> captured items (insertion-ordered)
        self._unacked_events = 0
        self._partial = b""

    def send(self, items: list[tuple], max_unacked: int) -> None:
        """Ship one batch; keeps it until the writer acknowledges it.  Blocks
        (GIL released) while more than ``max_unacked`` events await acks."""
        payload = encode_batch(items)
        if len(payload) > MAX_FRAME:
            raise RelayError("audit batch too large for the relay")
        self._next += 1
        self._unacked[self._next] = items
        self._unacked_events += len(items)
        self._sock.sendall(_FRAME.pack(len(payload), self._next) + payload)
        self._read_acks(block=False)
        if self._unacked_events > max_unacked:
            deadline = time.monotonic() + 60.0
            while self._unacked_events > max_unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RelayError("the audit writer did not acknowledge in time")
                self._read_acks(block=True, timeout=left)

    def wait_acked(self, timeout: float) -> None:
        """Return once every batch sent so far is committed by the writer."""
        deadline = time.monotonic() + timeout
        while self._unacked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError("the audit writer did not acknowledge in time")
            self._read_acks(block=True, timeout=left)

    def _read_acks(self, block: bool, timeout: float | None = None) -> None:
        if block:
            r, _, _ = select.select([self._sock], [], [], timeout)
            if not r:
                return
        try:
            data = self._sock.recv(65536, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise RelayError("the audit writer closed the connection")
        data = self._partial + data
        end = len(data) - len(data) % _ACK.size
        for (bid,) in _ACK.iter_unpack(data[:end]):
            items = self._unacked.pop(bid, None)
            if items is None:
                raise RelayError("the audit writer acknowledged an unknown batch")
            self._unacked_events -= len(items)
        self._partial = data[end:]

    def take_unacked(self) -> list[tuple]:
        """Everything not acknowledged (oldest first), forgetting it."""
        out = [i for items in self._unacked.values() for i in items]
        self._unacked.clear()
        self._unacked_events = 0
        return out

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - already gone
            pass


# ================================================================== writer side
class _Ack:
    """A flush marker for the local AuditLog: set() after the batch's commit."""

    __slots__ = ("sock", "batch")

    def __init__(self, sock, batch):
        self.sock, self.batch = sock, batch

    def set(self):
        try:
            self.sock.sendall(_ACK.pack(self.batch))
        except OSError:  # the worker is gone; its events are committed anyway
            pass


def _peer_is_us(conn: socket.socket) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):  # pragma: no cover - Linux has it
        return True
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    struct.calcsize("3i")))
    return uid == os.getuid()


def _serve_connection(conn: socket.socket, audit) -> None:
    try:
        if not _peer_is_us(conn):
            log.error("audit writer: refused a connection from another user")
            return
        while True:
            head = _recv_exact(conn, _FRAME.size)
            if head is None:
                return
            size, batch = _FRAME.unpack(head)
            if size > MAX_FRAME:
                raise RelayError("frame too large")
            payload = _recv_exact(conn, size) if size else b""
            if payload is None:
                raise RelayError("the stream ended inside a frame")
            audit.submit(decode_batch(payload), _Ack(conn, batch))
    except (RelayError, OSError) as e:
        # A broken worker loses only its unacknowledged batches' acks: it
        # re-appends them itself.  Never a traceback, never event data.
        log.error("audit writer: dropped a worker connection: %s", e if isinstance(e, RelayError)
                  else type(e).__name__)
    finally:
        conn.close()


def run_writer(store_url: str | None, path: str, parent_fd: int | None, ready=None) -> int:
    """The writer process's body: serve ``path`` until the parent goes away
    (``parent_fd`` reaches end of file) or SIGTERM, then commit and exit."""
    from .audit import AuditLog
    from .settings import Settings
    from .store import Store

    settings = Settings.from_env(store_url=store_url)
    store = Store(settings)
    audit = AuditLog(store, account_id=settings.account_id, region=settings.region)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    stop_r, stop_w = os.pipe()
    signal.signal(signal.SIGTERM, lambda *_: os.write(stop_w, b"x"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if ready is not None:
        ready()
    threads: list[threading.Thread] = []
    watch = [listener, stop_r] + ([parent_fd] if parent_fd is not None else [])
    try:
        while True:
            r, _, _ = select.select(watch, [], [])
            if stop_r in r or (parent_fd is not None and parent_fd in r
                               and not os.read(parent_fd, 1)):
                break
            if listener in r:
                conn, _ = listener.accept()
                t = threading.Thread(target=_serve_connection, args=(conn, audit),
                                     name="kms-audit-relay", daemon=True)
                t.start()
                threads = [x for x in threads if x.is_alive()] + [t]
    finally:
        listener.close()
        # Workers stop before the parent stops us; give any straggler a moment.
        deadline = time.monotonic() + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        audit.close()
        store.dispose()
    return 0


class WriterProcess:
    """Handle on a started writer process (see :func:`start_writer`)."""

    def __init__(self, proc: subprocess.Popen, path: str, parent_w: int, tmpdir: str):
        self.proc, self.path, self._parent_w, self._tmpdir = proc, path, parent_w, tmpdir

    def stop(self, timeout: float = 60.0) -> int | None:
        """Let the writer commit everything it was sent, then wait for it."""
        if self._parent_w is not None:
            os.close(self._parent_w)  # end of file: the writer's cue to finish
            self._parent_w = None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the audit writer did not finish in %.0f s; killing it", timeout)
            self.proc.kill()
            code = self.proc.wait()
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return code


def start_writer(store_url: str | None, timeout: float = 60.0) -> WriterProcess:
    """Start the node's audit writer and wait until it accepts connections."""
    tmpdir = tempfile.mkdtemp(prefix="kms-audit-")  # mode 0700: only our user can connect
    path = os.path.join(tmpdir, "writer.sock")
    parent_r, parent_w = os.pipe()
    ready_r, ready_w = os.pipe()
    cmd = [sys.executable, "-m", "kms_core.audit_relay", "--socket", path,
           "--parent-fd", str(parent_r), "--ready-fd", str(ready_w)]
    if store_url:
        cmd += ["--store-url", store_url]
    try:
        # Own session: a Ctrl-C meant for the server must not stop the writer
        # before the workers have handed over their last events.
        proc = subprocess.Popen(cmd, pass_fds=(parent_r, ready_w), start_new_session=True)
    except BaseException:
        for fd in (parent_r, parent_w, ready_r, ready_w):
            os.close(fd)
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    os.close(parent_r)
    os.close(ready_w)
    try:
        r, _, _ = select.select([ready_r], [], [], timeout)
        ok = bool(r) and os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
    handle = WriterProcess(proc, path, parent_w, tmpdir)
    if not ok:
        handle.stop(5.0)
        raise RelayError("the audit writer process did not start (see its error above)")
    return handle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kms_core.audit_relay",
                                description="The audit writer process `kms serve` starts.")
    p.add_argument("--socket", required=True)
    p.add_argument("--store-url", default=None)
    p.add_argument("--parent-fd", type=int, default=None)
    p.add_argument("--ready-fd", type=int, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        os.nice(5)  # the workers' latency comes first; backpressure bounds the backlog
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass

    def ready():
        if a.ready_fd is not None:
            os.write(a.ready_fd, b"1")
            os.close(a.ready_fd)
    try:
        return run_writer(a.store_url, a.socket, a.parent_fd, ready)
    except Exception as e:  # e.g. the store cannot be opened: say why, no traceback
        log.error("audit writer: %s: %s", type(e).__name__, e)
        return 1


if __name__ == "__main__":
    sys.exit(main())

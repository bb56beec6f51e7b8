"""uvicorn's httptools protocol with two changes for ``kms serve``.

* **One write per response.**  uvicorn writes a response's head (status line
  and headers) when the app sends ``http.response.start`` and the body on
  ``http.response.body``: two ``send()`` system calls and, on a keep-alive
  connection with TCP_NODELAY, two segments that each wake the client.  Every
  KMS response is small and sent at once, so the head is held and written
  together with the body.  Any other write (a ``100 Continue``, a close, an
  error path) writes the held head first, so order is kept and nothing is
  lost.
* **Shutdown does not wait on idle TLS clients.**  On SIGTERM uvicorn closes
  idle keep-alive connections.  Closing a TLS transport gracefully waits for
  the client's close_notify, which an idle client (e.g. a boto3 connection
  pool) only sends when it next uses the connection; the server would then
  hang for the whole graceful-shutdown timeout.  An idle connection carries no
  request, so aborting it loses nothing; connections with a request in flight
  still finish it.
* **Signed ``POST /`` answered without an ASGI cycle.**  When a KMS request's
  body (at most ``FAST_BODY`` bytes, declared by Content-Length) has arrived,
  the app's ``answer_now`` answers it right here, on the event loop: no task,
  no receive/send coroutines, no message dicts; the response is written in one
  piece.  A request that must wait for something (an access key to load, the
  database, a durable audit commit) or is refused before dispatch falls back
  to the ordinary ASGI cycle, which answers it as before.  Measured: ~30 µs
  less server CPU per signed Encrypt (docs/server.md).  ``KMS_SERVE_FAST_PATH=0``
  turns it off (benchmarks/server_throughput.py compares both in one run).
* **Limits, before any authentication** (docs/server.md, "Limits"): the
  request head (request line and headers) may be at most
  ``max_header_bytes`` and must arrive within ``header_timeout`` of its
  first byte; the body within ``body_timeout`` of the head; a connection
  that sends nothing is closed after the keep-alive timeout, as an idle
  keep-alive one is.  A worker holds at most ``max_connections``; a new one
  beyond that closes the oldest connection that has no request being
  answered (an idle or slow client), so idle or half-sent connections can
  never lock legitimate clients out.  Refusals are AWS-shaped JSON errors.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("kms.server")

_HEAD, _BODY = 1, 2
# Set in a request's scope when its body timed out (kms_core.server.app reads it).
BODY_TIMEOUT = "kms.body_timeout"
# Largest body answered on the fast path: below uvicorn's read high-water mark
# (64 KiB), so reading never pauses for an app that has not started yet.
FAST_BODY = 60 * 1024
_JSON_HEAD = b"content-type: application/x-amz-json-1.1\r\ncontent-length: "


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024


_limits: Limits | None = None


def limits() -> Limits:
    """This worker's limits, from ``kms serve``'s configuration (read once)."""
    global _limits  # noqa: PLW0603 - one per process, set on first connection
    if _limits is None:
        from .app import ServerConfig  # noqa: PLC0415 - app imports the engine; loaded by now anyway

        c = ServerConfig.from_env()
        _limits = Limits(c.max_header_bytes, c.header_timeout, c.body_timeout, c.max_connections)
    return _limits


def set_limits(value: Limits | None) -> None:
    """For tests and embedders: override (or forget) the configured limits."""
    global _limits  # noqa: PLW0603 - see limits()
    _limits = value


# Connections without a request being answered, oldest first: the ones a new
# connection may push out when the worker is full.
_evictable: dict[HttpProtocol, None] = {}


_evictions = [0, 0.0]  # closed since the last log line, when that line was written


def _note_eviction(limit: int) -> None:
    """Log evictions at most every 10 s: under a flood, one line per connection
    would itself be a denial of service on the log."""
    _evictions[0] += 1
    now = time.monotonic()
    if now - _evictions[1] >= 10.0:
        log.warning("connection limit (%d per worker) reached: closed %d idle or slow connection(s) "
                    "to make room", limit, _evictions[0])
        _evictions[0], _evictions[1] = 0, now


def error_response(status: int, code: str, message: str) -> bytes:
    """A complete AWS-shaped error response that closes the connection."""
    body = json.dumps({"__type": code, "message": message}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/x-amz-json-1.1\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-amzn-requestid: {uuid.uuid4()}\r\n"
            "connection: close\r\n\r\n")
    return head.encode("ascii") + body


class _Coalescing:
    """A transport that can hold one write and put it in front of the next."""

    __slots__ = ("_held", "holding", "transport")

    def __init__(self, transport):
        self.transport = transport
        self.holding = False
        self._held = None

    def write(self, data) -> None:
        if self.holding:
            self._held = data if self._held is None else self._held + data
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self.transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            self.holding = False
            self.write(b"")

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def __getattr__(self, name):  # everything else is the real transport's
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits()
        self._phase = 0  # _HEAD while a request head is arriving, _BODY while its body is
        self._timer: asyncio.TimerHandle | None = None
        self._timer_phase = 0
        self._head_bytes = 0
        # The fast path's app (one with answer_now), unless the access log is on (it logs cycles).
        app = self.app
        self._fast_app = (app if getattr(app, "answer_now", None) is not None and not self.access_log
                          and os.environ.get("KMS_SERVE_FAST_PATH", "1") != "0" else None)
        self._in_headers = False
        self._deferred = None  # the request cycle waiting for its body to be answered on the fast path

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._coalescer = _Coalescing(self.transport)
        self.transport = cast(asyncio.Transport, self._coalescer)
        if len(self.connections) > self._limits.max_connections and not self._evict_one():
            self.reject(503, "ServiceUnavailableException",
                        "The server has too many connections with requests in progress; retry later.")
            return
        _evictable[self] = None
        # A connection that never sends a byte is closed like an idle keep-alive one.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def _evict_one(self) -> bool:
        for victim in _evictable:
            if victim is not self:
                _note_eviction(self._limits.max_connections)
                victim.reject(503, "ServiceUnavailableException",
                              "The server has too many connections; this idle one was closed.")
                return True
        return False

    def connection_lost(self, exc) -> None:
        _evictable.pop(self, None)
        self._deferred = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def reject(self, status: int, code: str, message: str) -> None:
        """Answer with an AWS-shaped error and close (no request is in progress,
        or the one in progress can no longer be answered)."""
        _evictable.pop(self, None)
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            transport.write(error_response(status, code, message))
        transport.close()

    def send_400_response(self, msg: str) -> None:  # malformed HTTP (uvicorn's hook)
        self.reject(400, "SerializationException", f"{msg} The request is not valid HTTP/1.1.")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        phase = self._phase
        if phase == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self.reject(431, "RequestEntityTooLargeException",
                            f"The request line and headers exceed the limit of "
                            f"{self._limits.max_header_bytes} bytes.")
                return
        if phase != self._timer_phase:
            self._arm(phase)

    def _arm(self, phase: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_phase = phase
        if phase:
            after = self._limits.header_timeout if phase == _HEAD else self._limits.body_timeout
            self._timer = self.loop.call_later(after, self._expired, phase)

    def _expired(self, phase: int) -> None:
        self._timer = None
        if self._phase != phase or self.transport.is_closing():
            return
        if phase == _HEAD:
            self.reject(408, "RequestTimeoutException",
                        f"The request head did not arrive within {self._limits.header_timeout:g} s.")
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.pipeline:
            self.transport.close()
            return
        # The app is waiting for the body: hand it what came, flagged, so it
        # answers 408 (audited, with its request id) and the connection closes.
        cycle.scope[BODY_TIMEOUT] = True  # type: ignore[literal-required]
        cycle.more_body = False
        cycle.keep_alive = False
        cycle.message_event.set()
        self._undefer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._in_headers = True
        try:
            super().on_headers_complete()
        finally:
            self._in_headers = False
        cycle = self.cycle
        if cycle is None or cycle.transport is not self._coalescer or "send" in vars(cycle):
            return  # an upgrade, or a cycle this protocol did not make
        plain, co = cycle.send, self._coalescer

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                co.holding = True  # the head waits for the body (or any other write)
                try:
                    await plain(message)
                finally:
                    co.holding = False
            else:
                await plain(message)
                co.flush()  # uvicorn writes no body for HEAD: the head must still go out

        cycle.send = send  # type: ignore[method-assign]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = 0
        _evictable.pop(self, None)  # a request to answer: not evictable until answered
        cycle = self._deferred
        if cycle is not None and cycle is self.cycle:
            self._deferred = None
            if not self._answer_now(cycle):
                self._start_asgi_task(cycle, self.app)

    # -- the fast path ---------------------------------------------------------
    def _start_asgi_task(self, cycle, app) -> None:
        if (self._in_headers and app is self._fast_app and self._fast_candidate(cycle)):
            self._deferred = cycle  # answered when its body is complete (on_message_complete)
            return
        super()._start_asgi_task(cycle, app)

    def _fast_candidate(self, cycle) -> bool:
        scope = cycle.scope
        if scope["method"] != "POST" or scope["path"] != "/" or self.expect_100_continue:
            return False
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) <= FAST_BODY
        return False

    def _undefer(self) -> None:
        """Hand a deferred request to the ASGI path (its body timed out)."""
        cycle, self._deferred = self._deferred, None
        if cycle is not None:
            super()._start_asgi_task(cycle, self.app)

    def _answer_now(self, cycle) -> bool:
        """Answer on the event loop if the app can; False to take the ASGI path."""
        try:
            answer = self._fast_app.answer_now(cycle.scope, bytes(cycle.body))  # type: ignore[union-attr]
        except Exception:  # a bug: the ASGI path answers it (and logs it, typed)
            log.exception("the fast path failed; answering through the ASGI cycle")
            return False
        if answer is None:
            return False
        status, body, request_id = answer
        cycle.response_started = True
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head += (_JSON_HEAD, str(len(body)).encode(), b"\r\nx-amzn-requestid: ", request_id.encode(), b"\r\n")
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        self.transport.write(b"".join(head))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
        return True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            _evictable[self] = None

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_extra_info("sslcontext") is not None:
            self.transport.abort()
        else:
            super().shutdown()

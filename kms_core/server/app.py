"""The ASGI application: AWS JSON 1.1 over HTTP, SigV4, served from ``Engine.call``.

Every request goes through :meth:`KMSApp.handle` (one place), in this order:
size limit -> SigV4 -> operation (``X-Amz-Target``) -> JSON decoding against
the operation's input shape -> ``engine.call(op, params, ctx)`` -> encoding.
The ``RequestContext`` carries everything a policy authorizer or an audit
recorder inside the engine needs (principal, access key, source IP, user
agent, request id, region, account).  Requests refused before the engine
(bad auth, bad JSON, unknown operation, oversized body, a late body, a bug)
are reported to ``engine.record_rejected(ctx, operation, error)`` when the
engine has it, so every request is audited exactly once.  Anything unexpected
becomes ``KMSInternalException`` at this boundary (``_engine_call``), logged
without request data.  HTTP limits and timeouts live in ``protocol.py``;
the web console is served under ``/console/``; other ASGI apps are added with
:meth:`KMSApp.mount`.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from kms_core.engine import RequestContext, get_engine
from kms_core.errors import KMSError, internal_error
from kms_core.model import OPERATIONS
from kms_core.settings import Settings
from kms_core.store import WouldBlock
from kms_core.validation import precompile

from . import loopwatch, sigv4, wire
from .protocol import BODY_TIMEOUT  # set by the protocol when the body did not arrive in time

log = logging.getLogger("kms.server")

MAX_BODY_BYTES = 1024 * 1024  # documented in docs/server.md
TARGET_PREFIX = "TrentService."
CONFIG_ENV = "KMS_SERVER_CONFIG"
_CONTENT_TYPES = {"application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json"}
_AUTH_CODES = {"MissingAuthenticationTokenException", "IncompleteSignatureException",
               "InvalidSignatureException", "UnrecognizedClientException"}
_JSON_HEADERS = [(b"content-type", b"application/x-amz-json-1.1")]
# Headers SigV4 reads as one value: a second copy would be joined with ',' and
# read differently by different parsers, so it is refused (IncompleteSignature).
_SINGLE = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "host"})
_DUPLICATE = " duplicate"  # never a header name (no spaces in tokens)


@dataclass
class ServerConfig:
    """What a worker needs to build the app; travels to worker processes as JSON."""

    store_url: str | None = None
    dev_credentials: bool = False
    max_body: int = MAX_BODY_BYTES
    credential_ttl: float = 1.0
    threads: int = 4  # enough to overlap store reads; more only adds GIL contention
    engine_calls: str = "loop"  # "loop" or "threads": where engine calls run (see KMSApp._run)
    audit: bool = True  # attach kms_core.audit's log (docs/audit-log.md) to the engine
    # who renders and appends its events: a child process (out of the loop's GIL) or a thread
    audit_writer: str = "process"
    console: bool = True  # serve the web console under /console/ (docs/console.md)
    # HTTP limits, enforced by kms_core.server.protocol before any authentication
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024  # per worker process

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        raw = os.environ.get(CONFIG_ENV)
        return cls(**json.loads(raw)) if raw else cls()


# Request ids need to be unique, not secret: a seeded PRNG avoids an
# os.urandom syscall per request, which releases the GIL and can leave the
# event loop waiting behind the engine's or the audit log's threads.
# Reseeded in a forked child (at fork, not by comparing os.getpid() per
# request: that is a system call too) so two processes never share the sequence.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
# The version (4) and variant (RFC 4122) bits of a UUID, as uuid.UUID(version=4) sets them.
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (4 << 76) | (0x8000 << 48)


def new_request_id() -> str:
    """A random (version 4) UUID's text, as ``str(uuid.UUID(int=…, version=4))`` writes it."""
    h = "%032x" % (_ids.getrandbits(128) & _V4_CLEAR | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Rejected(Exception):
    """A KMSError raised before the engine, with what we knew of the caller."""

    def __init__(self, error: KMSError, operation: str | None):
        self.error = error
        self.operation = operation


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        val = v.decode("latin-1")
        if name in out:
            if name in _SINGLE:
                out[_DUPLICATE] = name
            out[name] = f"{out[name]},{val}"
        else:
            out[name] = val
    return out




def _operation(headers: dict[str, str]) -> tuple[str, str | None]:
    """(X-Amz-Target, the operation it names or None)."""
    target = headers.get("x-amz-target", "")
    return target, target[len(TARGET_PREFIX):][:128] if target.startswith(TARGET_PREFIX) else None


def _error_answer(e: Exception, op: str | None, request_id: str) -> tuple[int, bytes]:
    """The answer to an error after dispatch: the engine's KMSError (it audited it, or
    ``_engine_call`` did) as AWS's JSON, anything else a bug, never a traceback."""
    err = e if isinstance(e, KMSError) else internal_error(e, op, request_id)
    return err.status, wire.encode_error(err.code, err.message)

class _MarkingAuditor:
    """The engine's auditor, also noting per thread the request it recorded last.  Every
    other attribute (``admit``, the audit log's fail-closed check; ``flush``, which the
    console and GetKeyLastUsage wait on) is the wrapped auditor's."""

    def __init__(self, inner: Any, mark: threading.local) -> None:
        self.inner = inner
        self._mark = mark
        # Read by the engine on every request: an attribute, not a __getattr__ call.
        admit = getattr(inner, "admit", None)
        if admit is not None:
            self.admit = admit

    def __call__(self, ctx: Any, operation: str, params: Any, result: Any, error: Any) -> None:
        self.inner(ctx, operation, params, result, error)
        self._mark.request_id = ctx.request_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

class KMSApp:
    """Raw ASGI 3 application; open the engine at lifespan startup (or pass one in)."""

    def __init__(self, config: ServerConfig | None = None, engine=None):
        self.config = config or ServerConfig()
        self.engine = engine
        # Set by _setup (at lifespan startup): Any, not Optional, as every request needs them.
        self.credentials: Any = None
        self.signing = sigv4.SigningKeys()
        self.pool: Any = None  # a ThreadPoolExecutor
        self._loop_calls = False
        self._waiting = 0  # calls sent to the pool after WouldBlock, still running
        self._audit_waits = False  # a durable audit log: responses wait for its commit
        self._loading: dict[str, asyncio.Future] = {}  # access key id -> its store read in progress
        self.audit_log: Any = None
        self.operations: frozenset[str] = frozenset()
        self.account_id = None
        self.default_region = None
        self.console = None
        self._ready = False
        # Extra ASGI apps served under a path prefix (e.g. a web console):
        # see ``mount``.  Consulted only for requests that are not ``POST /``.
        self.mounts: list[tuple[str, object]] = []
        self._audited = threading.local()  # .request_id: the last request the auditor recorded
        self._loop_watch: loopwatch.LoopWatch | None = None  # KMS_SERVE_WATCH_LOOP, from startup
        if engine is not None:
            self._setup()

    def mount(self, prefix: str, app) -> None:
        """Serve the ASGI 3 ``app`` for every path under ``prefix`` (e.g. ``/console``).

        ``POST /`` (KMS) and ``/health`` always stay the server's own; the
        mounted app gets the ``lifespan``-less scope with ``root_path`` set.
        """
        prefix = "/" + prefix.strip("/")
        if prefix in ("/", "/health") or (prefix == "/console" and self.console is not None):
            raise ValueError(f"cannot mount an app at {prefix!r}")
        self.mounts.append((prefix, app))

    def _mounted(self, path: str):
        for prefix, app in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, app
        return None

    # -- lifecycle -------------------------------------------------------------
    def _open_engine(self):
        return get_engine(Settings.from_env(store_url=self.config.store_url))

    def _setup(self) -> None:
        from .credentials import AccessKeys, CredentialCache  # noqa: PLC0415 - SQLAlchemy tables: at startup only

        if self.engine is None:
            self.engine = self._open_engine()
        settings = self.engine.settings
        self.account_id = settings.account_id
        self.default_region = settings.region
        # Every AWS operation reaches the engine (which answers
        # UnsupportedOperationException for those it does not implement, as
        # the in-process client does); other targets are unknown operations.
        self.operations = frozenset(OPERATIONS) | frozenset(self.engine.operations)
        # Compile every operation's checks now, not on each one's first request.
        precompile()
        self.credentials = CredentialCache(AccessKeys(self.engine.store, settings.account_id),
                                           ttl=self.config.credential_ttl)
        self.pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="kms-engine")
        self._loop_calls = (self.config.engine_calls == "loop"
                            and getattr(self.engine, "call_nonblocking", None) is not None)
        if self.config.audit:
            from kms_core.audit import attach  # noqa: PLC0415 - optional (--no-audit), at startup only
            from kms_core.audit.writer import DURABLE  # noqa: PLC0415 - as above

            self.audit_log = attach(self.engine, writer=self.config.audit_writer)
            self._audit_waits = self.audit_log.durability == DURABLE
        else:
            log.warning("the audit log is OFF (--no-audit): requests are not recorded")
        self._watch_auditor()
        if self.config.console:
            from kms_core.console import mount  # noqa: PLC0415 - optional part (its web stack)

            self.console = mount(self)
        if self.config.dev_credentials:
            log.warning(
                "DEVELOPMENT CREDENTIALS MODE: any access key is accepted as the account root "
                "(arn:aws:iam::%s:root) without checking its signature. Never use this in production.",
                self.account_id,
            )
        # Everything loaded so far (botocore's model, compiled validators…) lives
        # as long as the process: keep it out of the collector's full passes,
        # which otherwise walk it all and stall the event loop for tens of ms.
        gc.collect()
        gc.freeze()
        self._ready = True

    def _watch_auditor(self) -> None:
        """Note which request the engine's auditor recorded last (per thread), so
        that a request failing unexpectedly is audited exactly once: by the
        engine if it got that far, else by the server (``_engine_call``)."""
        inner = getattr(self.engine, "auditor", None)
        if inner is None:
            return
        self.engine.auditor = _MarkingAuditor(inner, self._audited)

    async def _refresh_loop(self) -> None:
        """Run the engine's cross-node change check off the request path, so no
        request waits for it (docs/server.md, "Several nodes")."""
        refresh = getattr(self.engine, "refresh_if_due", None)
        if refresh is None:
            return
        # Start the check once a quarter of cache_ttl has passed, leaving three
        # quarters for it to finish: on a loaded PostgreSQL the query can take
        # hundreds of ms, and a check still running at cache_ttl sends every
        # request of this worker to the database (measured: 0.3-0.7 s stalls
        # with a 0.4/0.5 schedule, which left as little as 0.2 s).
        period = max(0.02, self.engine.settings.cache_ttl * 0.1)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            try:
                await loop.run_in_executor(self.pool, refresh, 0.25)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a database hiccup: requests will retry it themselves
                log.warning("background refresh failed: %s", type(e).__name__)

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    if not self._ready:
                        await asyncio.get_running_loop().run_in_executor(None, self._setup)
                except Exception as e:  # the store cannot be opened: say why, don't serve
                    log.error("cannot start: %s", e)
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
                self._loop_watch = _start_loop_watch()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                refresher = getattr(self, "_refresher", None)
                if refresher is not None:
                    refresher.cancel()
                if self._loop_watch is not None:
                    self._loop_watch.stop()
                if self.pool is not None:
                    self.pool.shutdown(wait=True)
                if self.audit_log is not None:  # commit every event recorded so far
                    await asyncio.get_running_loop().run_in_executor(None, self.audit_log.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI entry --------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope, receive, send) -> None:
        method = scope["method"]
        path = scope["path"]
        if path == "/health" and method in ("GET", "HEAD"):
            body = b'{"status":"ok"}' if self._ready else b'{"status":"starting"}'
            await self._send(send, 200 if self._ready else 503, body, None, method == "HEAD")
            return
        if method != "POST" or path != "/":
            if self.console is not None and (path == "/console" or path.startswith("/console/")):
                await self.console(scope, receive, send)
                return
            mounted = self._mounted(path) if self.mounts else None
            if mounted is not None:
                prefix, app = mounted
                await app({**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send)
                return
            err = KMSError("UnknownOperationException",
                           f"{method} {path[:100]} is not served; KMS requests are POST / (health: GET /health).")
            await self._send(send, 404 if method == "POST" or method == "GET" else 405,
                             wire.encode_error(err.code, err.message), new_request_id())
            return
        request_id = new_request_id()
        status, body = await self.handle(scope, receive, request_id)
        await self._send(send, status, body, request_id)

    @staticmethod
    async def _send(send, status: int, body: bytes, request_id: str | None, head: bool = False) -> None:
        headers = list(_JSON_HEADERS)
        headers.append((b"content-length", str(len(body)).encode()))
        if request_id:
            headers.append((b"x-amzn-requestid", request_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    # -- the one request path ------------------------------------------------------
    async def _read_body(self, scope, receive, headers) -> bytes:
        limit = self.config.max_body
        declared = headers.get("content-length")
        too_big = KMSError("RequestEntityTooLargeException",
                           f"The request body exceeds the limit of {limit} bytes.")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise too_big
            except ValueError:
                raise KMSError("SerializationException", "Content-Length is not a number.") from None
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise KMSError("SerializationException",
                               "The connection closed before the request body was complete.")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            if not msg.get("more_body"):
                if scope.get(BODY_TIMEOUT):
                    raise KMSError("RequestTimeoutException",
                                   "The request body did not arrive in time (--body-timeout).", 408)
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def _context(self, scope, headers, request_id, signed=None, cred=None, authenticated=True):
        client = scope.get("client")
        if cred is not None:
            account, principal, akid = cred.account_id, cred.principal, cred.access_key_id
        elif signed is not None and self.config.dev_credentials:
            account, principal, akid = self.account_id, f"arn:aws:iam::{self.account_id}:root", signed.access_key_id
        else:  # unauthenticated: the caller claimed this key (if any) but did not prove it
            account, principal, akid = self.account_id, None, signed.access_key_id if signed else None
        return RequestContext(
            region=signed.region if signed is not None else self.default_region,
            account_id=account,
            principal=principal,
            source_ip=client[0] if client else None,
            user_agent=headers.get("user-agent"),
            request_id=request_id,
            access_key_id=akid,
            authenticated=authenticated,
            # a service access key's requests come through its service (docs/policies.md)
            via_service=cred.via_service(signed.region) if cred is not None else None,
        )

    async def handle(self, scope, receive, request_id: str) -> tuple[int, bytes]:
        """Answer one ``POST /``.  Every request is audited exactly once: by the
        engine once dispatched, else here (``record_rejected``)."""
        headers = _headers(scope)
        target, op = _operation(headers)
        signed = cred = None
        try:
            try:
                body = await self._read_body(scope, receive, headers)
                signed = self._parse_signed(scope, headers, body)
                cred = await self._authenticate(signed)
                params = self._decode(op, target, headers, body)
                ctx = self._context(scope, headers, request_id, signed, cred)
            except KMSError as e:
                raise _Rejected(e, op) from None
            except Exception as e:  # a bug before dispatch: still typed, logged and audited
                raise _Rejected(internal_error(e, op, request_id), op) from None
            return 200, await self._run(op, params, ctx)
        except _Rejected as r:
            if getattr(self.engine, "record_rejected", None) is not None:  # audit writes may block
                await asyncio.get_running_loop().run_in_executor(
                    self.pool, self._record_rejected, scope, headers, request_id, signed, cred, r.operation, r.error)
            return r.error.status, wire.encode_error(r.error.code, r.error.message)
        except Exception as e:  # from the engine (which audited it), or a bug after it answered
            return _error_answer(e, op, request_id)

    def answer_now(self, scope, body: bytes) -> tuple[int, bytes, str] | None:
        """``handle`` for a request whose body has arrived, answered on the event loop
        without an ASGI cycle: the protocol's fast path (``protocol.py``).  Returns
        (status, body, request id), or None having done, changed and audited nothing
        when the request must wait for something — an access key not in the cache,
        the database, a durable audit commit — or is refused before dispatch (the
        refusal's audit record is written from the pool): the ASGI path answers those.
        Measured per signed Encrypt: ~30 µs less server CPU than the ASGI cycle
        (docs/server.md, "Where a signed Encrypt's CPU goes")."""
        if not self._loop_calls or self._waiting or self._audit_waits or len(body) > self.config.max_body:
            return None  # (an oversized body is refused, and audited, by the ASGI path)
        headers = _headers(scope)
        target, op = _operation(headers)
        request_id = new_request_id()
        try:
            signed = self._parse_signed(scope, headers, body)
            hit, cred, reload = self.credentials.lookup(signed.access_key_id)
            if not hit:
                return None
            cred = self._verify(signed, cred)
            params = self._decode(op, target, headers, body)
            ctx = self._context(scope, headers, request_id, signed, cred)
        except Exception:  # refused, or a bug: the ASGI path answers and audits it
            return None
        if reload:  # refresh-ahead, as _authenticate does
            self.pool.submit(self._reload_credential, signed.access_key_id)
        try:
            return 200, self._engine_call(self.engine.call_nonblocking, op, params, ctx), request_id
        except WouldBlock:  # nothing changed or audited: the ASGI path sends it to the pool
            return None
        except Exception as e:  # from the engine (which audited it), or a bug after it answered
            return (*_error_answer(e, op, request_id), request_id)

    @staticmethod
    def _parse_signed(scope, headers: dict, body: bytes) -> sigv4.SignedRequest:
        if _DUPLICATE in headers:
            raise KMSError("IncompleteSignatureException",
                           f"The {headers[_DUPLICATE]} header must appear only once.")
        return sigv4.parse_request(
            "POST", scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0],
            scope.get("query_string", b"").decode("latin-1"), headers, body)

    def _decode(self, op: str | None, target: str, headers: dict, body: bytes) -> dict:
        if op is None or op not in self.operations:
            raise KMSError("UnknownOperationException",
                           f"Unknown operation {target[:128]!r}; expected X-Amz-Target "
                           f"{TARGET_PREFIX}<Operation>." if target else
                           "Missing X-Amz-Target header; expected TrentService.<Operation>.")
        ctype = headers.get("content-type", "application/x-amz-json-1.1").split(";")[0].strip().lower()
        if ctype not in _CONTENT_TYPES:
            raise KMSError("SerializationException",
                           f"Content-Type {ctype[:64]!r} is not accepted; use application/x-amz-json-1.1.")
        return wire.decode_request(op, body)

    async def _authenticate(self, signed: sigv4.SignedRequest):
        """The verified credential, or None in development mode for an unknown key."""
        cache = self.credentials
        hit, cred, reload = cache.lookup(signed.access_key_id)
        if not hit:
            cred = await self._load_credential(signed.access_key_id)
        elif reload:  # refresh-ahead: this request goes on with the cached entry
            self.pool.submit(self._reload_credential, signed.access_key_id)
        return self._verify(signed, cred)

    def _verify(self, signed: sigv4.SignedRequest, cred):
        """The credential if the signature is its holder's; None in development mode
        for an unknown key; else UnrecognizedClient / InvalidSignature."""
        if cred is None or cred.status != "Active":
            if self.config.dev_credentials:
                return None
            raise KMSError("UnrecognizedClientException", sigv4.MSG_UNKNOWN_KEY)
        if signed.security_token is not None:
            # Stored keys are long-term keys; AWS refuses a session token with them.
            raise KMSError("UnrecognizedClientException", sigv4.MSG_UNKNOWN_KEY)
        self.signing.verify(signed, cred.secret)
        return cred

    async def _load_credential(self, access_key_id: str):
        """One store read per access key at a time: when an entry expires under
        load, every request with that key misses at once, and a read each would
        queue them all behind each other in the pool (and the database)."""
        loading = self._loading.get(access_key_id)
        if loading is None:
            loading = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(
                self.pool, self.credentials.load, access_key_id))
            self._loading[access_key_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(access_key_id, None))
        return await asyncio.shield(loading)

    def _reload_credential(self, access_key_id: str) -> None:
        try:
            self.credentials.load(access_key_id)
        except Exception as e:  # the store is unreachable: the next miss reports it
            log.warning("reloading an access key failed: %s", type(e).__name__)

    def _call(self, op, params, ctx) -> bytes:
        return self._engine_call(self.engine.call, op, params, ctx)

    def _engine_call(self, call, op, params, ctx) -> bytes:
        """The dispatch boundary: the engine answers or raises KMSError; anything
        else is a bug, logged and turned into KMSInternalException — and
        audited here unless the engine's auditor already recorded the request."""
        try:
            result = call(op, params, ctx)
        except (KMSError, WouldBlock):
            raise
        except Exception as e:
            err = internal_error(e, op, ctx.request_id)
            if getattr(self._audited, "request_id", None) != ctx.request_id:
                self._record(ctx, op, err)
            raise err from None
        return wire.encode_response(op, result)

    def _record(self, ctx, operation, error) -> None:
        recorder = getattr(self.engine, "record_rejected", None)
        if recorder is None:
            return
        try:
            recorder(ctx, operation, error)
        except Exception as e:  # auditing must not turn a 4xx into a 500
            log.error("record_rejected failed: %s", type(e).__name__)

    async def _run(self, op, params, ctx) -> bytes:
        # Engine calls are synchronous.  Most are answered from the engine's
        # memory in microseconds; a cache miss, the once-per-second generation
        # check or a write reaches the database, which on the event loop would
        # stall every connection of this worker.  ``call_nonblocking`` answers
        # from memory or raises WouldBlock having changed and audited nothing,
        # so by default ("loop") requests run on the event loop and only those
        # that need the database go to the thread pool.  Measured against
        # "threads" (every call handed to the pool), interleaved runs on the
        # shared 2-core machine: 4-33% (median 14%) less server CPU per request, more
        # requests/s, p99 no worse, because the hand-off (a futures round trip
        # and GIL switches between the loop and a pool thread) cost more than
        # an engine call answered from memory (docs/server.md, "Engine calls").
        if self._loop_calls and not self._waiting:
            try:
                return self._engine_call(self.engine.call_nonblocking, op, params, ctx)
            except WouldBlock:
                pass
            finally:  # durable audit log: no response before its event is committed
                if self.audit_log is not None:
                    await self.audit_log.committed()
            # While a call that needs the database runs in the pool, the rest go
            # there too: it may hold the engine's lock during its store access,
            # and waiting for that lock here would stall the whole event loop.
            self._waiting += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(self.pool, self._call, op, params, ctx)
            finally:
                self._waiting -= 1
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._call, op, params, ctx)

    def _record_rejected(self, scope, headers, request_id, signed, cred, operation, error) -> None:
        authenticated = cred is not None or (signed is not None and self.config.dev_credentials
                                             and error.code not in _AUTH_CODES)
        try:
            ctx = self._context(scope, headers, request_id, signed, cred, authenticated)
        except Exception as e:
            log.error("record_rejected failed: %s", type(e).__name__)
            return
        self._record(ctx, operation, error)


def _start_loop_watch() -> loopwatch.LoopWatch | None:
    """The loop watchdog, when ``KMS_SERVE_WATCH_LOOP`` asks for it (loopwatch.py)."""
    threshold = loopwatch.threshold_from_env()
    if threshold is None:
        return None
    watch = loopwatch.LoopWatch(threshold)
    watch.start(asyncio.get_running_loop())
    return watch


def create_app() -> KMSApp:
    """uvicorn factory for worker processes: configuration comes from ``KMS_SERVER_CONFIG``."""
    return KMSApp(ServerConfig.from_env())

"""``mock_kms``: every KMS client the code under test creates talks to a fresh
in-memory engine (docs/testing.md).

How: a botocore ``before-send.kms`` event handler, registered for every
session botocore creates (``botocore.handlers.BUILTIN_HANDLERS``, as moto
does) and on boto3's default session.  While a mock is active it answers each
KMS request itself, with the engine's answer encoded as AWS's JSON 1.1 wire
format, so botocore (or aiobotocore) parses it exactly as it parses AWS's:
``ClientError.response`` has AWS's shape because botocore built it.  Requests
to other services are never touched; with no mock active the handler does
nothing at all.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Generator
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import botocore.handlers
from botocore.awsrequest import AWSResponse

from kms_core.clock import Clock, SystemClock
from kms_core.engine import Engine, RequestContext
from kms_core.errors import KMSError
from kms_core.model import OPERATIONS
from kms_core.server import wire
from kms_core.settings import Settings
from kms_core.store import IN_MEMORY_URLS

log = logging.getLogger("kms_core.testing")

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "MockKMS", "bypass", "mock_kms", "patch_client"]

# moto's account and region, so that assertions carried over from a moto suite
# (ARNs with 123456789012) still hold.
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"

_HANDLER_ID = "kms-local.mock_kms"
_SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/kms/")
_HOST_RE = re.compile(r"://kms(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")
_TARGET = "TrentService."

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class _Body(bytes):
    """Response bytes that can also be awaited: aiobotocore awaits
    ``response.content`` where botocore reads it."""

    def __await__(self) -> Generator[Any, None, bytes]:
        yield from ()
        return bytes(self)


class _Response(AWSResponse):
    def __init__(self, url: str, status: int, headers: dict[str, str], body: bytes):
        super().__init__(url, status, headers, None)
        self._content = _Body(body)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


# -- the active mocks -----------------------------------------------------------------

_active: list[_Run] = []  # innermost last; a process-wide stack (threads share it)
_active_lock = threading.RLock()
_saved_env: dict[str, str | None] = {}


class _Run:
    """One activation of a mock: its engine (opened on the first request), until it stops."""

    def __init__(self, mock: MockKMS):
        self.mock = mock
        self.owns_engine = mock._engine is None
        self._engine: Engine | None = mock._engine
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._open()
                engine = self._engine
        return engine

    def _open(self) -> Engine:
        mock = self.mock
        settings: Any
        if mock.store_url in IN_MEMORY_URLS:  # nothing to read from the environment
            settings = Settings(home=Path(os.devnull), store_url=mock.store_url, region=mock.region,
                                account_id=mock.account_id)
        else:
            settings = Settings.from_env(store_url=mock.store_url, region=mock.region,
                                         account_id=mock.account_id)
        return Engine.open(settings, mock.clock)

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if self.owns_engine and engine is not None:
            engine.close()

    def respond(self, request: Any) -> _Response:
        headers = request.headers
        target = _text(headers.get("X-Amz-Target"))
        op = target[len(_TARGET):] if target.startswith(_TARGET) else ""
        auth = _SCOPE_RE.search(_text(headers.get("Authorization")))
        host = _HOST_RE.search(request.url or "")
        region = auth.group(2) if auth else host.group(1) if host else self.mock.region
        rid = _request_id()
        ctx = RequestContext(region=region, account_id=self.mock.account_id, principal=self.mock.principal,
                             source_ip="127.0.0.1", user_agent=_text(headers.get("User-Agent")) or None,
                             request_id=rid, access_key_id=auth.group(1) if auth else None)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        try:
            if op not in OPERATIONS:  # AWS's operations reach the engine, which may not serve them all
                raise KMSError("UnknownOperationException", f"Unknown operation {target[:128]!r}.")
            params = wire.decode_request(op, _as_bytes(body))
            status, payload = 200, wire.encode_response(op, self.engine.call(op, params, ctx))
        except KMSError as err:
            status, payload = err.status, wire.encode_error(err.code, err.message)
        return _Response(request.url, status, {
            "x-amzn-RequestId": rid, "Content-Type": "application/x-amz-json-1.1",
            "Content-Length": str(len(payload)), "Date": formatdate(usegmt=True)}, payload)


def _as_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _request_id() -> str:
    from kms_core.embedded import _request_id as rid  # noqa: PLC0415 - one generator for both clients
    return rid()


def _current_run() -> _Run | None:
    with _active_lock:
        return _active[-1] if _active else None


def _route(request: Any = None, **_kwargs: Any) -> _Response | None:
    """The ``before-send.kms`` handler: the innermost active mock answers."""
    run = _current_run()
    if run is None or request is None or getattr(request, "_kms_local_bypass", False):
        return None
    # A session may hold this handler twice (built-in, and registered on boto3's
    # default session at start()): answer each request once.
    answered = getattr(request, "_kms_local_response", None)
    if answered is None:
        answered = run.respond(request)
        request._kms_local_response = answered
    return answered


botocore.handlers.BUILTIN_HANDLERS.append(("before-send.kms", _route))


def patch_client(client: Any) -> Any:
    """Route a client made from a session that existed before ``kms_core.testing``
    was imported (sessions created later need nothing).  Returns the client."""
    client.meta.events.register("before-send.kms", _route, unique_id=_HANDLER_ID)
    return client


def _mark_bypass(request: Any = None, **_kwargs: Any) -> None:
    if request is not None:
        request._kms_local_bypass = True


def bypass(client: Any) -> Any:
    """Let this client reach its own endpoint even while a mock is active (e.g.
    a client of a real ``kms serve`` beside ``mock_kms``).  Returns the client."""
    client.meta.events.register_first("before-send.kms", _mark_bypass, unique_id=_HANDLER_ID + ".bypass")
    return client


def _patch_default_session() -> None:
    import sys  # noqa: PLC0415 - only to see whether boto3 is loaded at all

    boto3 = sys.modules.get("boto3")
    session = getattr(boto3, "DEFAULT_SESSION", None) if boto3 is not None else None
    if session is not None:
        session._session.register("before-send.kms", _route, unique_id=_HANDLER_ID)


def _set_env(mock: MockKMS) -> None:
    """Credentials and a region for clients that bring none, while any mock is active.

    Only variables that are unset are set, so S3 or anything else with its own
    configuration keeps it; they are put back when the last mock stops."""
    wanted: dict[str, str] = {}
    if not any(os.environ.get(v) for v in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")):
        wanted.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    if mock.region_given:
        # An explicit region is the default for clients that name none, whatever the
        # environment says (as the region a test asked for).
        wanted["AWS_DEFAULT_REGION"] = mock.region
        if os.environ.get("AWS_REGION"):
            wanted["AWS_REGION"] = mock.region
    elif not any(os.environ.get(v) for v in ("AWS_DEFAULT_REGION", "AWS_REGION")):
        wanted["AWS_DEFAULT_REGION"] = mock.region
    for name, value in wanted.items():
        _saved_env.setdefault(name, os.environ.get(name))  # the first value, for the last stop
        os.environ[name] = value


def _restore_env() -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_env.clear()


# -- the public object -----------------------------------------------------------------

class MockKMS:
    """A mock's configuration; each ``start()`` (each decorated call, each
    ``with`` block) gets its own fresh engine, and ``stop()`` discards it."""

    def __init__(self, *, region: str | None = None, account_id: str | None = None,
                 clock: Clock | None = None, principal: str | None = None,
                 engine: Engine | None = None, store_url: str | None = None):
        existing: Any = engine.settings if engine is not None else None
        self.region: str = region or (existing.region if existing is not None else DEFAULT_REGION)
        self.region_given = region is not None
        self.account_id: str = account_id or (existing.account_id if existing is not None
                                              else DEFAULT_ACCOUNT_ID)
        self.clock: Clock = clock if clock is not None else (
            engine.clock if engine is not None else SystemClock())
        # Every AWS request has a principal, and key policies and grants apply to it: the
        # account root by default (not the embedded client's unevaluated local caller).
        self.principal: str = principal or f"arn:aws:iam::{self.account_id}:root"
        self.store_url = store_url or "sqlite://"
        self._engine = engine
        self._runs: list[_Run] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"<mock_kms region={self.region!r} account_id={self.account_id!r} "
                f"clock={self.clock!r} active={bool(self._runs)}>")

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> MockKMS:
        run = _Run(self)
        with _active_lock:
            if not _active:
                _set_env(self)
            _active.append(run)
            _patch_default_session()
        with self._lock:
            self._runs.append(run)
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._runs:
                raise RuntimeError("mock_kms.stop() called before start()")
            run = self._runs.pop()
        with _active_lock:
            _active.remove(run)
            if not _active:
                _restore_env()
        run.close()

    def __enter__(self) -> MockKMS:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what a test may want while it is active ------------------------------------
    @property
    def engine(self) -> Engine:
        """The engine of the innermost active run of this mock."""
        with self._lock:
            if not self._runs:
                raise RuntimeError("mock_kms is not active")
            return self._runs[-1].engine

    def client(self, **kwargs: Any) -> Any:
        """``boto3.client("kms", region_name=<the mock's region>, **kwargs)``."""
        import boto3  # noqa: PLC0415 - boto3 is only needed by tests that ask for it

        kwargs.setdefault("region_name", self.region)
        return boto3.client("kms", **kwargs)

    # -- decorating ----------------------------------------------------------------
    def __call__(self, target: F) -> F:
        if inspect.isclass(target):
            return self._decorate_class(target)
        return self._decorate_callable(target)

    def _decorate_callable(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)
            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)
        return run  # type: ignore[return-value]

    def _decorate_class(self, cls: C) -> C:
        """unittest: active from setUp to the last cleanup (state set up in setUp
        is seen by the test).  pytest classes: the same with setup_method /
        teardown_method, or else around each test method."""
        import unittest  # noqa: PLC0415 - only for class decoration

        if issubclass(cls, unittest.TestCase):
            original_setup = cls.setUp

            def setUp(test: Any) -> None:
                self.start()
                test.addCleanup(self.stop)
                original_setup(test)
            cls.setUp = setUp  # type: ignore[method-assign,assignment]
            return cls
        if callable(getattr(cls, "setup_method", None)):
            original = cls.setup_method  # type: ignore[attr-defined]
            original_teardown = getattr(cls, "teardown_method", None)

            def setup_method(obj: Any, method: Any = None) -> None:
                self.start()
                original(obj, method)

            def teardown_method(obj: Any, method: Any = None) -> None:
                try:
                    if original_teardown is not None:
                        original_teardown(obj, method)
                finally:
                    self.stop()
            cls.setup_method = setup_method  # type: ignore[attr-defined]
            cls.teardown_method = teardown_method  # type: ignore[attr-defined]
            return cls
        for name, value in list(vars(cls).items()):
            if name.startswith("test") and callable(value):
                setattr(cls, name, self._decorate_callable(value))
        return cls


@overload
def mock_kms(func: F, /) -> F: ...


@overload
def mock_kms(*, region: str | None = None, account_id: str | None = None, clock: Clock | None = None,
             principal: str | None = None, engine: Engine | None = None,
             store_url: str | None = None) -> MockKMS: ...


def mock_kms(func: Any = None, /, *, region: str | None = None, account_id: str | None = None,
             clock: Clock | None = None, principal: str | None = None, engine: Engine | None = None,
             store_url: str | None = None) -> Any:
    """Send every KMS client to a fresh in-memory engine, like moto's ``mock_aws``.

    ``@mock_kms`` / ``@mock_kms(...)`` on a function, coroutine function or
    class, or ``with mock_kms(...) as kms:``.  Options: ``region`` (default
    region for clients that name none; us-east-1), ``account_id``
    (123456789012, moto's), ``clock`` (e.g. ``FakeClock()``; default the real
    time, unaffected by freezegun/time-machine), ``principal`` (the IAM ARN
    requests are evaluated as, for key policies and grants, as in AWS; default
    the account root), ``engine`` (an existing engine instead of a fresh one) or
    ``store_url`` (another store, e.g. a file, instead of ``sqlite://``).
    """
    mock = MockKMS(region=region, account_id=account_id, clock=clock, principal=principal,
                   engine=engine, store_url=store_url)
    if func is not None:
        return mock(func)
    return mock

"""``kms_core.client()``: a drop-in for ``boto3.client("kms")``.

Embedded by default (the engine runs in this process on the sealed store);
with ``endpoint_url`` (or ``AWS_ENDPOINT_URL_KMS``) a real boto3 client for a
remote endpoint — our server or AWS itself.  Errors are botocore
``ClientError`` subclasses, reachable as ``client.exceptions.<Code>``.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, cast

from .errors import KMSError, internal_error
from .operation_names import OPERATION_NAMES
from .settings import Settings

# Cold start matters (Lambda-style use): the engine (SQLAlchemy), the operation
# table and botocore are imported on first need, not here.

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


class _Loaded:
    """botocore's KMS model and paginators, loaded once on first need."""
    service_model: Any = None
    paginators: dict | None = None


def service_model() -> Any:
    """botocore's KMS ServiceModel (loaded once, lazily: it costs ~50 ms)."""
    if _Loaded.service_model is None:
        import botocore.session  # noqa: PLC0415 - cold start: loaded on first need
        _Loaded.service_model = botocore.session.get_session().get_service_model("kms")
    return _Loaded.service_model


def _paginators() -> dict:
    if _Loaded.paginators is None:
        from botocore.loaders import Loader  # noqa: PLC0415 - cold start: loaded on first need
        _Loaded.paginators = Loader().load_service_model("kms", "paginators-1")["pagination"]
    return _Loaded.paginators




class _Exceptions:
    """``client.exceptions``: botocore's generated classes, built on first use."""

    def __init__(self):
        self._real = None

    def _load(self):
        if self._real is None:
            from botocore.errorfactory import ClientExceptionsFactory  # noqa: PLC0415 - cold start: loaded on first need
            self._real = ClientExceptionsFactory().create_client_exceptions(service_model())
        return self._real

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        real = self._load()
        try:
            return getattr(real, name)
        except AttributeError:
            from botocore.exceptions import ClientError  # noqa: PLC0415 - cold start: loaded on first need
            # Codes outside the model (ValidationException, AccessDeniedException…)
            # still get a named ClientError subclass, as botocore does for
            # modelled ones, so `except kms.exceptions.X` works for all.
            cls = type(name, (ClientError,), {})
            setattr(real, name, cls)
            real._code_to_exception[name] = cls
            return cls

    def from_code(self, code: str):
        real = self._load()
        cls = real._code_to_exception.get(code)
        if cls is None:
            cls = getattr(self, code)
        return cls


def _metadata(rid: str) -> dict:
    return {"RequestId": rid, "HTTPStatusCode": 200,
            "HTTPHeaders": {"x-amzn-requestid": rid, "content-type": "application/x-amz-json-1.1"},
            "RetryAttempts": 0}


_MODELED: dict[str, tuple[str, ...]] = {}


def _error_response(err: KMSError, rid: str) -> dict:
    """The response dict botocore parses from AWS's answer for this error:
    Error.Code/Message, ResponseMetadata, and the members of a modeled error
    shape (every KMS exception's ``message``) at the top level."""
    import json  # noqa: PLC0415 - cold start: loaded on first need
    from email.utils import formatdate  # noqa: PLC0415 - cold start: loaded on first need
    # the body AWS sends (as kms serve does), for its Content-Length
    wire_body = {"__type": err.code, "message": err.message} if err.message else {"__type": err.code}
    body = json.dumps(wire_body, separators=(",", ":")).encode("utf-8")
    resp: dict = {"Error": {"Message": err.message, "Code": err.code},
                  "ResponseMetadata": {"RequestId": rid, "HTTPStatusCode": err.status, "HTTPHeaders": {
                      "x-amzn-requestid": rid, "content-type": "application/x-amz-json-1.1",
                      "content-length": str(len(body)), "date": formatdate(usegmt=True)},
                      "RetryAttempts": 0}}
    members = _MODELED.get(err.code)
    if members is None:
        shape = service_model().shape_for_error_code(err.code)
        members = _MODELED[err.code] = tuple(shape.members) if shape is not None else ()
    if "message" in members and err.message:  # AWS's body has no message member when it is empty
        resp["message"] = err.message
    return resp


def _request_id() -> str:
    # A random (version 4) UUID, like AWS's request ids; cheaper than uuid.uuid4().
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class KMSClient:
    """In-process KMS client with boto3's methods, arguments, responses and errors."""

    def __init__(self, engine=None, ctx=None, *, settings: Settings | None = None, clock=None,
                 light=None, validate: bool = True, config=None):
        self._engine = engine
        self._settings: Any = cast(Any, settings if settings is not None else engine.settings)
        self._clock = clock
        self._ctx: Any = ctx
        self._light = light
        self._checks: Any = None
        self._validate = validate
        self.exceptions = _Exceptions()
        region = (ctx.region if ctx is not None else None) or self._settings.region
        self.meta = _Meta(region, config)

    @property
    def engine(self):
        """The engine behind this client (opened on first use)."""
        if self._engine is None:
            from .engine import get_engine  # noqa: PLC0415 - cold start: loaded on first need
            self._engine = get_engine(self._settings, self._clock)
            if self._ctx is not None and self._ctx.principal is not None:
                from .audit import attach  # noqa: PLC0415 - cold start: only a principal's client needs it (every call made as a principal is audited)
                attach(self._engine)
        return self._engine

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - cold start: loaded on first need
        store = make_url(self._settings.store_url).render_as_string(hide_password=True)
        return f"<kms_core.KMSClient region={self.meta.region_name!r} store={store!r}>"

    def _call(self, operation: str, kwargs: dict) -> dict:
        if operation == "Decrypt" and self._light is not None and self._engine is None:
            resp = self._light.decrypt(kwargs)
            if resp is not None:
                rid = _request_id()
                resp["ResponseMetadata"] = _metadata(rid)
                return resp
        checks = self._checks
        if checks is None:
            from .model import coerce_input  # noqa: PLC0415 - cold start: loaded on first need
            from .validation import check_client_side  # noqa: PLC0415 - cold start: loaded on first need
            checks = self._checks = (check_client_side, coerce_input)
        if self._validate:  # botocore's Config(parameter_validation=False) turns its checks off
            checks[0](operation, kwargs)
        try:
            kwargs = checks[1](operation, kwargs)  # str/file-like blobs, as botocore's serializer does
        except UnicodeEncodeError:  # a str blob with a lone surrogate: not UTF-8 text
            err = KMSError("SerializationException", "A blob given as str is not valid Unicode "
                                                     "(a lone UTF-16 surrogate)")
            raise self._client_error(err, operation, _request_id()) from None
        engine = self._engine or self.engine
        if self._ctx is None:
            from .engine import RequestContext  # noqa: PLC0415 - cold start: loaded on first need
            self._ctx = RequestContext(region=self._settings.region,
                                       account_id=self._settings.account_id)
        rid = _request_id()
        ctx = self._ctx
        if engine.auditor is not None:  # the audit record carries the RequestId the caller sees
            from dataclasses import replace  # noqa: PLC0415 - cold start: loaded on first need
            ctx = replace(ctx, request_id=rid)
        try:
            resp = engine.call(operation, kwargs, ctx)
        except KMSError as err:
            raise self._client_error(err, operation, rid) from None
        except Exception as e:  # a bug: the caller gets AWS's typed error; the log says where
            raise self._client_error(internal_error(e, operation, rid), operation, rid) from None
        resp["ResponseMetadata"] = _metadata(rid)
        return resp

    def _client_error(self, err: KMSError, operation: str, rid: str):
        cls = self.exceptions.from_code(err.code)
        return cls(_error_response(err, rid), operation)

    # boto3 client conveniences
    def can_paginate(self, operation_name: str) -> bool:
        return _camel(operation_name) in _paginators()

    def get_paginator(self, operation_name: str):
        from botocore.paginate import Paginator  # noqa: PLC0415 - cold start: loaded on first need
        op = _camel(operation_name)
        config = _paginators().get(op)
        if config is None:
            from botocore.exceptions import OperationNotPageableError  # noqa: PLC0415 - cold start: loaded on first need
            raise OperationNotPageableError(operation_name=operation_name)
        method = getattr(self, _snake(op))
        return Paginator(method, config, service_model().operation_model(op))

    @property
    def waiter_names(self) -> list[str]:
        return []  # botocore defines no waiters for KMS

    def get_waiter(self, waiter_name: str):
        raise ValueError(f"Waiter does not exist: {waiter_name}")  # botocore's error for KMS

    def close(self) -> None:
        pass


class _Meta:
    """``client.meta`` as boto3 has it (botocore's parts loaded when first read).

    ``events`` is a real emitter, but the embedded client emits nothing on it:
    for botocore's event hooks use a boto3 client under ``mock_kms``."""

    def __init__(self, region: str, config=None):
        self.region_name = region
        self.endpoint_url = f"https://kms.{region}.amazonaws.com"
        self.partition = "aws"
        self._config = config
        self._events = None

    @property
    def service_model(self):
        return service_model()

    @property
    def config(self):
        if self._config is None:
            from botocore.config import Config  # noqa: PLC0415 - cold start: loaded on first need
            self._config = Config(region_name=self.region_name)
        return self._config

    @property
    def events(self):
        if self._events is None:
            from botocore.hooks import HierarchicalEmitter  # noqa: PLC0415 - cold start: loaded on first need
            self._events = HierarchicalEmitter()
        return self._events

    @property
    def method_to_api_mapping(self) -> dict[str, str]:
        return {_snake(op): op for op in OPERATION_NAMES}


def _camel(name: str) -> str:
    if "_" in name or name.islower():
        return "".join(part.capitalize() for part in name.split("_"))
    return name


def _make_method(operation: str):
    def method(self, **kwargs):
        return self._call(operation, kwargs)
    method.__name__ = _snake(operation)
    method.__qualname__ = f"KMSClient.{method.__name__}"
    method.__doc__ = f"AWS KMS {operation} (same parameters and response as boto3)."
    return method


for _op in OPERATION_NAMES:
    setattr(KMSClient, _snake(_op), _make_method(_op))


_API_VERSION = "2014-11-01"


def client(service_name: str = "kms", region_name: str | None = None, api_version: str | None = None,
           use_ssl: bool = True, verify: bool | str | None = None, endpoint_url: str | None = None,
           aws_access_key_id: str | None = None, aws_secret_access_key: str | None = None,
           aws_session_token: str | None = None, config: Any = None, aws_account_id: str | None = None,
           *, store_url: str | None = None, home: str | os.PathLike | None = None,
           root_key: bytes | None = None, root_key_file: str | os.PathLike | None = None,
           region: str | None = None, account_id: str | None = None, principal: str | None = None,
           clock: Any = None, cache_ttl: float | None = None, engine: Any = None) -> Any:
    """A KMS client, called exactly as ``boto3.client("kms", ...)`` is.

    With ``endpoint_url`` (or ``AWS_ENDPOINT_URL_KMS``): ``boto3.client`` with
    every argument as given.  Otherwise the embedded engine, where the
    transport arguments (``use_ssl``, ``verify``) and the credentials have no
    meaning and are accepted and ignored (the caller is ``principal``, by
    default the account root), ``config.region_name`` counts as boto3 counts
    it, and ``config.parameter_validation=False`` skips the client-side checks
    as it does in botocore (the engine's own, AWS's server-side checks remain).
    Inside ``kms_core.testing.mock_kms`` the client uses the mock's engine.
    """
    if service_name != "kms":
        raise ValueError(f"kms_core.client() is a KMS client only (got service {service_name!r}); "
                         f"use boto3.client({service_name!r}) for other services")
    if api_version not in (None, _API_VERSION):
        raise ValueError(f"KMS has one API version, {_API_VERSION!r} (got {api_version!r})")
    region = region or region_name or (getattr(config, "region_name", None) if config is not None else None)
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS") or None
    if endpoint_url:
        import boto3  # noqa: PLC0415 - cold start: loaded on first need
        boto_kwargs: dict[str, Any] = {
            "region_name": region, "api_version": api_version, "use_ssl": use_ssl, "verify": verify,
            "endpoint_url": endpoint_url, "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key, "aws_session_token": aws_session_token,
            "config": config}
        if aws_account_id is not None:
            boto_kwargs["aws_account_id"] = aws_account_id
        return boto3.client("kms", **boto_kwargs)
    validate = getattr(config, "parameter_validation", True) if config is not None else True
    account_id = account_id or aws_account_id
    if engine is None and store_url is None and home is None:
        engine = _mock_engine()
    if engine is not None:
        from .engine import RequestContext  # noqa: PLC0415 - cold start: loaded on first need
        mocked = _mock_defaults() if engine is _mock_engine() else {}
        ctx_: Any = RequestContext(region=region or mocked.get("region") or engine.settings.region,
                             account_id=account_id or mocked.get("account_id") or engine.settings.account_id,
                             principal=principal or mocked.get("principal"))
        return KMSClient(engine, ctx_, validate=validate, config=config)
    settings: Any = Settings.from_env(home=home, store_url=store_url, region=region,
                                      account_id=account_id, root_key=root_key,
                                      root_key_file=root_key_file, cache_ttl=cache_ttl)
    ctx: Any = None
    if principal is not None:
        from .engine import RequestContext  # noqa: PLC0415 - cold start: loaded on first need
        ctx = RequestContext(region=settings.region, account_id=settings.account_id,
                             principal=principal)
    light = None
    if principal is None and clock is None:
        from .light import LightDecryptor  # noqa: PLC0415 - cold start: loaded on first need
        light = LightDecryptor.for_settings(settings)
    return KMSClient(None, ctx, settings=settings, clock=clock, light=light, validate=validate,
                     config=config)


def _mock_run():
    # Only when the test helpers are loaded: a plain process never imports them.
    mock = sys.modules.get("kms_core.testing.mock")
    return mock._current_run() if mock is not None else None


def _mock_engine():
    run = _mock_run()
    return run.engine if run is not None else None


def _mock_defaults() -> dict:
    run = _mock_run()
    if run is None:
        return {}
    return {"region": run.mock.region, "account_id": run.mock.account_id, "principal": run.mock.principal}

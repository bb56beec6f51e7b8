"""``kms_core.client()``: a drop-in for ``boto3.client("kms")``.

Embedded by default (the engine runs in this process on the sealed store);
with ``endpoint_url`` (or ``AWS_ENDPOINT_URL_KMS``) a real boto3 client for a
remote endpoint — our server or AWS itself.  Errors are botocore
``ClientError`` subclasses, reachable as ``client.exceptions.<Code>``.
"""
from __future__ import annotations

import os
import re
from typing import Any

from .errors import KMSError
from .operation_names import OPERATION_NAMES
from .settings import Settings

# Cold start matters (Lambda-style use): the engine (SQLAlchemy), the operation
# table and botocore are imported on first need, not here.

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


_service_model = None
_paginator_config = None


def service_model():
    """botocore's KMS ServiceModel (loaded once, lazily: it costs ~50 ms)."""
    global _service_model
    if _service_model is None:
        import botocore.session
        _service_model = botocore.session.get_session().get_service_model("kms")
    return _service_model


def _paginators() -> dict:
    global _paginator_config
    if _paginator_config is None:
        from botocore.loaders import Loader
        _paginator_config = Loader().load_service_model("kms", "paginators-1")["pagination"]
    return _paginator_config




class _Exceptions:
    """``client.exceptions``: botocore's generated classes, built on first use."""

    def __init__(self):
        self._real = None

    def _load(self):
        if self._real is None:
            from botocore.errorfactory import ClientExceptionsFactory
            self._real = ClientExceptionsFactory().create_client_exceptions(service_model())
        return self._real

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        real = self._load()
        try:
            return getattr(real, name)
        except AttributeError:
            from botocore.exceptions import ClientError
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


def _request_id() -> str:
    # A random (version 4) UUID, like AWS's request ids; cheaper than uuid.uuid4().
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class KMSClient:
    """In-process KMS client with boto3's methods, arguments, responses and errors."""

    def __init__(self, engine=None, ctx=None, *, settings: Settings | None = None, clock=None,
                 light=None):
        from types import SimpleNamespace as _NS
        self._engine = engine
        self._settings = settings if settings is not None else engine.settings
        self._clock = clock
        self._ctx = ctx
        self._light = light
        self._checks = None
        self.exceptions = _Exceptions()
        region = (ctx.region if ctx is not None else None) or self._settings.region
        self.meta = _NS(region_name=region, endpoint_url=None, service_model=None, partition="aws")

    @property
    def engine(self):
        """The engine behind this client (opened on first use)."""
        if self._engine is None:
            from .engine import get_engine
            self._engine = get_engine(self._settings, self._clock)
            if self._ctx is not None and self._ctx.principal is not None:
                from .audit import attach  # noqa: PLC0415 - cold start: only a principal's client needs it (every call made as a principal is audited)
                attach(self._engine)
        return self._engine

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url
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
            from .model import coerce_input
            from .validation import check_client_side
            checks = self._checks = (check_client_side, coerce_input)
        checks[0](operation, kwargs)
        kwargs = checks[1](operation, kwargs)  # str/file-like blobs, as botocore's serializer does
        engine = self._engine or self.engine
        if self._ctx is None:
            from .engine import RequestContext
            self._ctx = RequestContext(region=self._settings.region,
                                       account_id=self._settings.account_id)
        rid = _request_id()
        ctx = self._ctx
        if engine.auditor is not None:  # the audit record carries the RequestId the caller sees
            from dataclasses import replace
            ctx = replace(ctx, request_id=rid)
        try:
            resp = engine.call(operation, kwargs, ctx)
        except KMSError as err:
            cls = self.exceptions.from_code(err.code)
            raise cls({"Error": {"Code": err.code, "Message": err.message},
                       "ResponseMetadata": {"RequestId": rid, "HTTPStatusCode": err.status,
                                            "HTTPHeaders": {}, "RetryAttempts": 0}},
                      operation) from None
        resp["ResponseMetadata"] = _metadata(rid)
        return resp

    # boto3 client conveniences
    def can_paginate(self, operation_name: str) -> bool:
        return _camel(operation_name) in _paginators()

    def get_paginator(self, operation_name: str):
        from botocore.paginate import Paginator
        op = _camel(operation_name)
        config = _paginators().get(op)
        if config is None:
            from botocore.exceptions import OperationNotPageableError
            raise OperationNotPageableError(operation_name=operation_name)
        method = getattr(self, _snake(op))
        return Paginator(method, config, service_model().operation_model(op))

    def close(self) -> None:
        pass


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


def client(*, endpoint_url: str | None = None, store_url: str | None = None,
           home: str | os.PathLike | None = None, root_key: bytes | None = None,
           root_key_file: str | os.PathLike | None = None, region: str | None = None,
           region_name: str | None = None, account_id: str | None = None,
           principal: str | None = None, clock=None, cache_ttl: float | None = None,
           engine=None, **boto_kwargs: Any):
    """A KMS client: embedded engine by default, boto3 for a remote endpoint.

    ``endpoint_url`` (or the ``AWS_ENDPOINT_URL_KMS`` environment variable)
    returns ``boto3.client("kms", endpoint_url=..., **boto_kwargs)``.
    """
    region = region or region_name
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS") or None
    if endpoint_url:
        import boto3
        kwargs = dict(boto_kwargs)
        if region:
            kwargs["region_name"] = region
        return boto3.client("kms", endpoint_url=endpoint_url, **kwargs)
    if boto_kwargs:
        raise TypeError(f"unexpected arguments for the embedded engine: {sorted(boto_kwargs)}")
    if engine is not None:
        from .engine import RequestContext
        ctx = RequestContext(region=region or engine.settings.region,
                             account_id=account_id or engine.settings.account_id,
                             principal=principal)
        return KMSClient(engine, ctx)
    settings = Settings.from_env(home=home, store_url=store_url, region=region,
                                 account_id=account_id, root_key=root_key,
                                 root_key_file=root_key_file, cache_ttl=cache_ttl)
    ctx = None
    if principal is not None:
        from .engine import RequestContext
        ctx = RequestContext(region=settings.region, account_id=settings.account_id,
                             principal=principal)
    light = None
    if principal is None and clock is None:
        from .light import LightDecryptor
        light = LightDecryptor.for_settings(settings)
    return KMSClient(None, ctx, settings=settings, clock=clock, light=light)

"""``kms_core.client()``: a drop-in for ``boto3.client("kms")``.

Embedded by default (the engine runs in this process on the sealed store);
with ``endpoint_url`` (or ``AWS_ENDPOINT_URL_KMS``) a real boto3 client for a
remote endpoint — our server or AWS itself.  Errors are botocore
``ClientError`` subclasses, reachable as ``client.exceptions.<Code>``.
"""
from __future__ import annotations

import os
import re
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError

from .engine import Engine, RequestContext, get_engine
from .errors import KMSError
from .model import coerce_input as _coerce
from .settings import Settings

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


def _client_side_checker():
    from .validation import check_client_side
    return check_client_side


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


def _request_id() -> str:
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


class KMSClient:
    """In-process KMS client with boto3's methods, arguments, responses and errors."""

    def __init__(self, engine: Engine, ctx: RequestContext | None = None):
        self._engine = engine
        self._ctx = ctx or RequestContext()
        self._check = _client_side_checker()
        self.exceptions = _Exceptions()
        region = self._ctx.region or engine.settings.region
        self.meta = SimpleNamespace(region_name=region, endpoint_url=None,
                                    service_model=None, partition="aws")

    @property
    def engine(self) -> Engine:
        return self._engine

    def __repr__(self) -> str:
        return f"<kms_core.KMSClient region={self.meta.region_name!r} store={self._engine.store.display_url!r}>"

    def _call(self, operation: str, kwargs: dict) -> dict:
        self._check(operation, kwargs)
        kwargs = _coerce(operation, kwargs)  # str/file-like blobs, as botocore's serializer does
        rid = _request_id()
        try:
            resp = self._engine.call(operation, kwargs, self._ctx)
        except KMSError as err:
            cls = self.exceptions.from_code(err.code)
            raise cls({"Error": {"Code": err.code, "Message": err.message},
                       "ResponseMetadata": {"RequestId": rid, "HTTPStatusCode": err.status,
                                            "HTTPHeaders": {}, "RetryAttempts": 0}},
                      operation) from None
        resp["ResponseMetadata"] = {"RequestId": rid, "HTTPStatusCode": 200,
                                    "HTTPHeaders": {"x-amzn-requestid": rid,
                                                    "content-type": "application/x-amz-json-1.1"},
                                    "RetryAttempts": 0}
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


def _all_operation_names() -> list[str]:
    from .model import OPERATIONS
    return list(OPERATIONS)


for _op in _all_operation_names():
    setattr(KMSClient, _snake(_op), _make_method(_op))


def client(*, endpoint_url: str | None = None, store_url: str | None = None,
           home: str | os.PathLike | None = None, root_key: bytes | None = None,
           root_key_file: str | os.PathLike | None = None, region: str | None = None,
           region_name: str | None = None, account_id: str | None = None,
           principal: str | None = None, clock=None, cache_ttl: float | None = None,
           engine: Engine | None = None, **boto_kwargs: Any):
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
    if engine is None:
        settings = Settings.from_env(home=home, store_url=store_url, region=region,
                                     account_id=account_id, root_key=root_key,
                                     root_key_file=root_key_file, cache_ttl=cache_ttl)
        engine = get_engine(settings, clock)
    ctx = RequestContext(region=region or engine.settings.region,
                         account_id=account_id or engine.settings.account_id,
                         principal=principal)
    return KMSClient(engine, ctx)

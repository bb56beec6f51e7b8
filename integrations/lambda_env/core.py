"""Decrypting Lambda-style encrypted environment variables, with caching.

A value is what the Lambda console's encryption helpers store: base64 of a
KMS ``CiphertextBlob``, encrypted under ``{"LambdaFunctionName": <name>}``
(console) or under no encryption context (``aws kms encrypt``).

Which KMS answers (``resolve_client``), in this order:
  1. a client passed as ``kms=`` (any boto3-shaped KMS client);
  2. ``endpoint_url=`` or ``AWS_ENDPOINT_URL_KMS``: the light SigV4 client;
  3. inside AWS Lambda (``AWS_EXECUTION_ENV`` starts with ``AWS_Lambda``) and
     no ``KMS_HOME``/``KMS_STORE_URL``: the light client to
     ``https://kms.<region>.amazonaws.com``;
  4. otherwise the embedded engine, ``kms_core.client()``.

Contexts tried on decrypt (``default_contexts``): with
``AWS_LAMBDA_FUNCTION_NAME`` set, ``{"LambdaFunctionName": <it>}`` first
(console values, the common case in Lambda), then no context (CLI values);
without it, no context only.  Only InvalidCiphertextException moves on to the
next context; every other failure is reported at once.

Nothing heavy is imported here: KMS clients are built on first use.
"""
from __future__ import annotations

import base64
import binascii
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from .errors import (
    AccessDeniedError,
    CredentialsError,
    KeyDeletedError,
    KeyDisabledError,
    KeyUnavailableError,
    KMSRequestError,
    KMSUnavailableError,
    MissingSecretError,
    NotCiphertextError,
    SecretError,
    TransformError,
    WrongContextError,
    WrongKeyError,
)


def _compare_digest(a: bytes, b: bytes) -> bool:
    import hmac  # noqa: PLC0415 - cold start: hashlib's import
    return hmac.compare_digest(a, b)

__all__ = [
    "DEFAULT_KEY_ID",
    "DEFAULT_MAX_AGE",
    "FUNCTION_CONTEXT_KEY",
    "EnvSecrets",
    "clear_caches",
    "configure",
    "decrypt_environ",
    "decrypt_value",
    "default_contexts",
    "encrypt_value",
    "function_context",
    "get_secret",
    "get_secrets",
    "refresh",
    "register_after_restore",
    "resolve_client",
    "with_secrets",
]

DEFAULT_KEY_ID = "alias/aws/lambda"
FUNCTION_CONTEXT_KEY = "LambdaFunctionName"
# Powertools Parameters (3.x) caches for 300 s; KMS_ENV_MAX_AGE overrides.
DEFAULT_MAX_AGE = 300.0
MAX_PLAINTEXT = 4096  # KMS Encrypt limit
# Smallest blob we send to KMS: anything shorter is certainly not a KMS
# ciphertext (AWS's are > 150 bytes), e.g. a plaintext password left in place.
_MIN_BLOB = 32
_TRANSFORMS = (None, "json", "binary")
_MAX_WORKERS = 16

def _debug(message: str, *args: Any) -> None:
    # If nothing imported logging, no handler can exist: skip the ~5 ms import.
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("integrations.lambda_env").debug(message, *args)


# --- which KMS ----------------------------------------------------------------

def _in_aws_lambda() -> bool:
    return (os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda")
            and not os.environ.get("KMS_HOME") and not os.environ.get("KMS_STORE_URL"))


def resolve_client(endpoint_url: str | None = None) -> tuple[Any, bool]:
    """Return ``(client, remote)`` following the order in the module docstring."""
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS")
    if not url and _in_aws_lambda():
        from .remote import region_from_env  # noqa: PLC0415 - cold start: only inside AWS Lambda
        url = f"https://kms.{region_from_env()}.amazonaws.com"
    if url:
        from .remote import LightKMSClient  # noqa: PLC0415 - cold start: only with an endpoint
        return LightKMSClient(url), True
    import kms_core  # noqa: PLC0415 - cold start: the embedded engine (SQLAlchemy and friends), only now
    return kms_core.client(), False


# --- contexts -----------------------------------------------------------------

def function_context(function_name: str) -> dict[str, str]:
    """The Lambda console's encryption context for a function."""
    return {FUNCTION_CONTEXT_KEY: function_name}


def default_contexts(environ: Mapping[str, str] | None = None) -> list[dict[str, str] | None]:
    env = os.environ if environ is None else environ
    name = env.get("AWS_LAMBDA_FUNCTION_NAME")
    return [function_context(name), None] if name else [None]


def _describe(context: Mapping[str, str] | None) -> str:
    # Contexts are not secret (AWS logs them in CloudTrail).
    if not context:
        return "no context"
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(context.items())) + "}"


# --- errors -------------------------------------------------------------------

def _kms_error(exc: BaseException) -> tuple[str | None, str]:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        err = resp.get("Error") or {}
        return err.get("Code"), err.get("Message") or ""
    code = getattr(exc, "code", None)  # kms_core.errors.KMSError
    if isinstance(code, str):
        return code, getattr(exc, "message", "") or ""
    return None, ""


def _safe(message: str, *secrets: str | bytes | None) -> str:
    # A KMS message never should, but must not be able to, leak the value.
    for s in secrets:
        if s and (s if isinstance(s, str) else s.decode("latin-1")) in message:
            return ""
    return message


def map_error(exc: BaseException, what: str, variable: str | None,
              *secrets: str | bytes | None) -> SecretError:
    """Turn a KMS client failure into a typed error about ``what`` (e.g.
    ``"cannot decrypt DB_PASSWORD"``)."""
    if isinstance(exc, SecretError):
        return type(exc)(f"{what}: {exc}", variable=variable, code=exc.code)
    code, message = _kms_error(exc)
    detail = _safe(message, *secrets)
    tail = f" ({code}: {detail})" if detail else f" ({code})"
    if code == "DisabledException":
        return KeyDisabledError(f"{what}: its KMS key is disabled{tail}", variable=variable, code=code)
    if code == "KMSInvalidStateException":
        return KeyDeletedError(f"{what}: its KMS key is pending deletion or not usable{tail}",
                               variable=variable, code=code)
    if code == "NotFoundException":
        return KeyDeletedError(f"{what}: its KMS key was not found (deleted, or a wrong key id)"
                               f"{tail}", variable=variable, code=code)
    if code == "KeyUnavailableException":
        return KeyUnavailableError(f"{what}: its KMS key is unavailable{tail}", variable=variable, code=code)
    if code == "IncorrectKeyException":
        return WrongKeyError(f"{what}: it was not encrypted under the expected KMS key{tail}",
                             variable=variable, code=code)
    if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                "IncompleteSignatureException", "MissingAuthenticationTokenException",
                "ExpiredTokenException"):
        return AccessDeniedError(f"{what}: access denied{tail}", variable=variable, code=code)
    if code == "ValidationException":
        return KMSRequestError(f"{what}: KMS rejected the request{tail}", variable=variable, code=code)
    if code is not None:
        return KMSRequestError(f"{what}: KMS error{tail}", variable=variable, code=code)
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return CredentialsError(f"{what}: no AWS credentials", variable=variable)
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("botocore", "urllib3")):
        return KMSUnavailableError(f"{what}: KMS is unreachable ({name})", variable=variable)
    raise exc


def _is_client_failure(exc: BaseException) -> bool:
    return (isinstance(exc, (SecretError, OSError)) or _kms_error(exc)[0] is not None
            or type(exc).__module__.startswith(("botocore", "urllib3")))


# --- one value ------------------------------------------------------------------

def _blob(value: str, name: str) -> bytes:
    text = value.strip()
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        blob = b""
    if len(blob) < _MIN_BLOB:
        raise NotCiphertextError(
            f"{name} is not an encrypted value (expected base64 of a KMS ciphertext blob)",
            variable=name)
    return blob


def decrypt_value(value: str, *, name: str = "the value", kms: Any = None,
                  contexts: Iterable[Mapping[str, str] | None] | None = None,
                  key_id: str | None = None) -> bytes:
    """Decrypt one console- or CLI-style value; return the plaintext bytes.

    ``contexts`` are tried in order (default: ``default_contexts()``);
    ``key_id`` pins the KMS key (IncorrectKeyException otherwise).
    """
    blob = _blob(value, name)
    if kms is None:
        kms = _provider().kms
    tried = list(default_contexts() if contexts is None else contexts)
    if not tried:
        tried = [None]
    for context in tried:
        params: dict[str, Any] = {"CiphertextBlob": blob}
        if context:
            params["EncryptionContext"] = dict(context)
        if key_id:
            params["KeyId"] = key_id
        try:
            resp = kms.decrypt(**params)
        except Exception as exc:
            if not _is_client_failure(exc):
                raise
            code, _ = _kms_error(exc)
            if code == "InvalidCiphertextException":
                continue
            if code == "ValidationException":
                raise NotCiphertextError(f"{name} is not an encrypted value (KMS: {code})",
                                         variable=name, code=code) from None
            raise map_error(exc, f"cannot decrypt {name}", name, value) from None
        _debug("decrypted %s with %s", name, _describe(context))
        return resp["Plaintext"]
    raise WrongContextError(
        f"cannot decrypt {name}: KMS refused it under every encryption context tried "
        f"({'; '.join(_describe(c) for c in tried)}): it was encrypted under another context "
        f"(set AWS_LAMBDA_FUNCTION_NAME to the function it was encrypted for), is not a "
        f"ciphertext of this KMS, or its KMS key was deleted", variable=name, code="InvalidCiphertextException")


def encrypt_value(plaintext: str | bytes, *, name: str = "the value", kms: Any = None,
                  key_id: str | None = None, function_name: str | None = None,
                  context: Mapping[str, str] | None = None) -> str:
    """Encrypt like the Lambda console (with ``function_name``) or the CLI
    (without): return base64 of the ciphertext blob.  ``key_id`` defaults to
    the AWS managed key ``alias/aws/lambda``."""
    data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
    if not data:
        raise KMSRequestError(f"cannot encrypt {name}: the value is empty", variable=name,
                              code="ValidationException")
    if len(data) > MAX_PLAINTEXT:
        raise KMSRequestError(f"cannot encrypt {name}: {len(data)} bytes is more than KMS "
                              f"Encrypt accepts ({MAX_PLAINTEXT})", variable=name,
                              code="ValidationException")
    ctx = dict(context or {})
    if function_name:
        ctx.update(function_context(function_name))
    if kms is None:
        kms = _provider().kms
    params: dict[str, Any] = {"KeyId": key_id or DEFAULT_KEY_ID, "Plaintext": data}
    if ctx:
        params["EncryptionContext"] = ctx
    try:
        resp = kms.encrypt(**params)
    except Exception as exc:
        if not _is_client_failure(exc):
            raise
        raise map_error(exc, f"cannot encrypt {name}", name, data) from None
    return base64.b64encode(resp["CiphertextBlob"]).decode("ascii")


def _apply(plaintext: bytes, name: str, transform: str | None) -> Any:
    if transform == "binary":
        return plaintext
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise TransformError(f"{name} is not UTF-8 text; use transform='binary'",
                             variable=name) from None
    if transform == "json":
        import json  # noqa: PLC0415 - cold start: only for transform='json'
        try:
            return json.loads(text)
        except ValueError as exc:
            where = f" (line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise TransformError(f"{name} is not valid JSON{where}", variable=name) from None
    return text


def _check_environ_safe(name: str, text: str) -> None:
    if "\x00" in text:
        raise TransformError(f"{name} contains a NUL character, which an environment variable "
                             f"cannot hold; read it with transform='binary'", variable=name)


def _check_transform(transform: str | None) -> None:
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of None, 'json', 'binary' (got {transform!r})")


def run_all(func: Callable[[Any], Any], items: list, concurrent: bool,
            max_workers: int = _MAX_WORKERS) -> list[tuple[Any, BaseException | None]]:
    """Apply ``func`` to every item; with ``concurrent`` on plain threads (a
    thread pool module would cost more import time than it saves).  Returns
    ``(result, error)`` per item, in order."""
    out: list[tuple[Any, BaseException | None]] = [(None, None)] * len(items)

    def one(i: int) -> None:
        try:
            out[i] = (func(items[i]), None)
        except BaseException as exc:  # handed back to the caller's thread
            out[i] = (None, exc)

    if not concurrent or len(items) < 2:
        for i in range(len(items)):
            one(i)
        return out
    next_index = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            one(i)

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(min(max_workers, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# --- the cache -----------------------------------------------------------------

class _Entry:
    __slots__ = ("fetched", "plaintext", "source")

    def __init__(self, source: str, plaintext: bytes, fetched: float):
        self.source = source
        self.plaintext = plaintext
        self.fetched = fetched

    def __repr__(self) -> str:
        return "<cached secret>"


class EnvSecrets:
    """Decrypts variables of an environment lazily and caches the plaintext.

    The shape of Powertools' Parameters providers: ``get(name, max_age=,
    transform=, force_fetch=)``, ``get_multiple``-style ``get_many``,
    ``clear_cache``.  A cached value is reused while younger than ``max_age``
    seconds and while the variable still holds the same ciphertext.
    ``repr`` lists variable names only.
    """

    def __init__(self, *, kms: Any = None, endpoint_url: str | None = None,
                 environ: MutableMapping[str, str] | None = None,
                 contexts: Iterable[Mapping[str, str] | None] | None = None,
                 key_id: str | None = None, max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._kms = kms
        self._remote = getattr(kms, "remote", True) if kms is not None else None
        self._endpoint_url = endpoint_url
        self._environ = environ
        self._contexts = None if contexts is None else list(contexts)
        self.key_id = key_id
        if max_age is None:
            max_age = float(os.environ.get("KMS_ENV_MAX_AGE") or DEFAULT_MAX_AGE)
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.RLock()
        self._cache: dict[str, _Entry] = {}
        # name -> (ciphertext, plaintext text written into the environment)
        self._injected: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"<EnvSecrets cached={sorted(self._cache)}>"

    @property
    def kms(self) -> Any:
        if self._kms is None:
            with self._lock:
                if self._kms is None:
                    self._kms, self._remote = resolve_client(self._endpoint_url)
        return self._kms

    @property
    def remote(self) -> bool:
        _ = self.kms  # resolves the client, which sets _remote
        return bool(self._remote)

    @property
    def environ(self) -> MutableMapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def contexts(self) -> list[dict[str, str] | None]:
        if self._contexts is not None:
            return [dict(c) if c else None for c in self._contexts]
        return default_contexts(self.environ)

    def _source(self, name: str) -> str:
        raw = self.environ.get(name)
        injected = self._injected.get(name)
        if (injected is not None and raw is not None
                and _compare_digest(raw.encode("utf-8"), injected[1].encode("utf-8"))):
            return injected[0]  # we replaced the ciphertext with its plaintext
        if not raw:
            raise MissingSecretError(f"environment variable {name} is not set", variable=name)
        return raw

    def _cached(self, name: str, source: str, max_age: float) -> _Entry | None:
        entry = self._cache.get(name)
        if (entry is not None and entry.source == source
                and self._clock() - entry.fetched < max_age):
            return entry
        return None

    def _fetch(self, name: str, source: str) -> _Entry:
        plaintext = decrypt_value(source, name=name, kms=self.kms, contexts=self.contexts(),
                                  key_id=self.key_id)
        entry = _Entry(source, plaintext, self._clock())
        with self._lock:
            self._cache[name] = entry
        return entry

    def get(self, name: str, *, max_age: float | None = None, transform: str | None = None,
            force_fetch: bool = False) -> Any:
        """The decrypted value of ``name``: ``str`` (default), parsed JSON
        (``transform="json"``) or ``bytes`` (``transform="binary"``)."""
        _check_transform(transform)
        source = self._source(name)
        age = self.max_age if max_age is None else max_age
        entry = None if force_fetch else self._cached(name, source, age)
        if entry is None:
            entry = self._fetch(name, source)
        return _apply(entry.plaintext, name, transform)

    def get_many(self, names: Iterable[str], *, max_age: float | None = None,
                 transform: str | None = None, force_fetch: bool = False) -> dict[str, Any]:
        """Decrypt several variables (concurrently when KMS is remote).  Raises
        the first failure in ``names`` order after all have been tried."""
        _check_transform(transform)
        names = list(dict.fromkeys(names))
        age = self.max_age if max_age is None else max_age
        entries: dict[str, _Entry] = {}
        todo: list[tuple[str, str]] = []
        for name in names:
            source = self._source(name)
            entry = None if force_fetch else self._cached(name, source, age)
            if entry is None:
                todo.append((name, source))
            else:
                entries[name] = entry
        if todo:
            results = run_all(lambda item: self._fetch(*item), todo,
                              concurrent=self.remote and len(todo) > 1)
            for (name, _), (entry, error) in zip(todo, results, strict=True):
                if error is not None:
                    raise error
                entries[name] = entry
        return {name: _apply(entries[name].plaintext, name, transform) for name in names}

    def decrypt_environ(self, names: Iterable[str], *, into_environ: bool = True,
                        max_age: float | None = None, force_fetch: bool = False) -> dict[str, str]:
        """Decrypt ``names`` as text; with ``into_environ`` replace each
        ciphertext in the environment by its plaintext (child processes then
        inherit plaintext, as with Lambda's own at-rest encryption).  The
        ciphertext is remembered, so later ``get``/``refresh`` still work."""
        values = self.get_many(names, max_age=max_age, force_fetch=force_fetch)
        if into_environ:
            for name, text in values.items():
                _check_environ_safe(name, text)
            with self._lock:
                env = self.environ
                for name, text in values.items():
                    self._injected[name] = (self._cache[name].source, text)
                    env[name] = text
        return values

    def refresh(self) -> list[str]:
        """Decrypt every cached variable again now (e.g. after a SnapStart
        restore) and update the ones written into the environment."""
        with self._lock:
            names = list(self._cache)
            injected = set(self._injected)
        if names:
            self.get_many(names, force_fetch=True)
        if injected:
            self.decrypt_environ([n for n in names if n in injected])
        return names

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def handler(self, *names: str, into_environ: bool = True,
                max_age: float | None = None) -> Callable:
        """Decorator for a Lambda handler: before each invocation the named
        variables are decrypted (from the cache while fresh).  With
        ``into_environ=False`` they are passed as the keyword ``secrets``."""
        def decorate(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                values = self.decrypt_environ(names, into_environ=into_environ, max_age=max_age)
                if not into_environ:
                    kwargs["secrets"] = values
                return fn(*args, **kwargs)
            return wrapper
        return decorate


# --- module-level default provider ---------------------------------------------

_default: EnvSecrets | None = None
_default_lock = threading.Lock()


def _provider() -> EnvSecrets:
    global _default  # noqa: PLW0603 - the lazily made default provider, set under its lock
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = EnvSecrets()
    return _default


def configure(**kwargs: Any) -> EnvSecrets:
    """Replace the default provider (same arguments as ``EnvSecrets``)."""
    global _default  # noqa: PLW0603 - replaces the default provider, under its lock
    with _default_lock:
        _default = EnvSecrets(**kwargs)
    return _default


def get_secret(name: str, *, max_age: float | None = None, transform: str | None = None,
               force_fetch: bool = False) -> Any:
    """Decrypt environment variable ``name`` (cached for ``max_age`` seconds)."""
    return _provider().get(name, max_age=max_age, transform=transform, force_fetch=force_fetch)


def get_secrets(names: Iterable[str], **kwargs: Any) -> dict[str, Any]:
    return _provider().get_many(names, **kwargs)


def decrypt_environ(names: Iterable[str], **kwargs: Any) -> dict[str, str]:
    return _provider().decrypt_environ(names, **kwargs)


def with_secrets(*names: str, **kwargs: Any) -> Callable:
    return _provider().handler(*names, **kwargs)


def refresh() -> list[str]:
    return _provider().refresh()


def clear_caches() -> None:
    if _default is not None:
        _default.clear_cache()


def register_after_restore() -> bool:
    """Refresh cached secrets after a Lambda SnapStart restore, so that values
    decrypted during init are not reused from the snapshot.  Returns False
    when not running under SnapStart (``snapshot_restore_py`` missing)."""
    try:
        from snapshot_restore_py import register_after_restore as register  # noqa: PLC0415 - optional dependency (SnapStart only)
    except ImportError:
        return False
    register(refresh)
    return True

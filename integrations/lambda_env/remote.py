"""The lightest correct KMS client: AWS JSON 1.1 over ``http.client``, SigV4.

Speaks only the few operations the helper needs (Decrypt, Encrypt,
GenerateDataKey), with boto3's method names, keyword arguments and response
shapes (bytes for blobs), so callers treat it like ``boto3.client("kms")``.
Errors carry a botocore-shaped ``response`` dict, so one handler serves both.
Importing it costs ~35 ms (http.client, ssl) instead of boto3's ~400 ms.
"""
from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from . import sigv4
from .errors import CredentialsError, KMSUnavailableError

__all__ = ["KMSClientError", "LightKMSClient", "credentials_from_env", "region_from_env"]

_BLOB_FIELDS = ("Plaintext", "CiphertextBlob")
_RETRY_CODES = frozenset({"ThrottlingException", "KMSInternalException",
                          "DependencyTimeoutException", "ServiceUnavailableException",
                          "KeyUnavailableException"})


class KMSClientError(Exception):
    """An error reported by KMS.  Shaped like botocore's ``ClientError``:
    ``err.response["Error"]["Code"]``."""

    def __init__(self, code: str, message: str, status: int, request_id: str | None = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.response: dict[str, Any] = {"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": request_id}}


def region_from_env(endpoint_url: str | None = None) -> str:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    host = urlsplit(endpoint_url).hostname if endpoint_url else None
    if host and host.startswith(("kms.", "kms-fips.")) and host.count(".") >= 3:
        return host.split(".")[1]
    return "us-east-1"


def credentials_from_env() -> sigv4.Credentials:
    access = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise CredentialsError(
            "no AWS credentials for the remote KMS endpoint: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)")
    return sigv4.Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN"))


def _error_code(raw: str) -> str:
    # botocore: strip a namespace before '#' and anything after ':'.
    return raw.rsplit("#", 1)[-1].split(":", 1)[0]


class LightKMSClient:
    """``decrypt``, ``encrypt`` and ``generate_data_key`` against one endpoint.

    Thread-safe: each thread keeps its own keep-alive connection.  5xx and
    throttling answers and dropped connections are retried ``retries`` times
    with jittered backoff, as botocore does.
    """

    remote = True

    def __init__(self, endpoint_url: str, *, region: str | None = None,
                 credentials: sigv4.Credentials | None = None, timeout: float = 10.0,
                 retries: int = 3):
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint URL: {endpoint_url!r}")
        self.endpoint_url = endpoint_url.rstrip("/")
        self._scheme = parts.scheme
        self._hostname = parts.hostname
        self._port = parts.port
        self._path = parts.path or "/"
        self.region = region or region_from_env(endpoint_url)
        self._credentials = credentials
        self._timeout = timeout
        self._retries = retries
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"LightKMSClient({self.endpoint_url!r}, region={self.region!r})"

    # boto3-shaped operations -------------------------------------------------
    def decrypt(self, **params) -> dict:
        return self._call("Decrypt", params)

    def encrypt(self, **params) -> dict:
        return self._call("Encrypt", params)

    def generate_data_key(self, **params) -> dict:
        return self._call("GenerateDataKey", params)

    # transport -----------------------------------------------------------------
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import http.client  # noqa: PLC0415 - cold start: ~35 ms with ssl
            if self._scheme == "https":
                import ssl  # noqa: PLC0415 - cold start: as above
                # AWS_CA_BUNDLE as botocore reads it; else the system's CAs.
                context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
                conn = http.client.HTTPSConnection(self._hostname, self._port,
                                                   timeout=self._timeout, context=context)
            else:
                conn = http.client.HTTPConnection(self._hostname, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _call(self, operation: str, params: dict) -> dict:
        body_params = {}
        for key, value in params.items():
            if key in _BLOB_FIELDS and isinstance(value, (bytes, bytearray, memoryview)):
                value = base64.b64encode(bytes(value)).decode("ascii")
            body_params[key] = value
        body = json.dumps(body_params, separators=(",", ":")).encode("utf-8")
        credentials = self._credentials or credentials_from_env()
        host = f"[{self._hostname}]" if ":" in self._hostname else self._hostname
        url = f"{self._scheme}://{host}" + (f":{self._port}" if self._port else "") + self._path
        headers = {
            "Host": sigv4._host(urlsplit(url)),
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"TrentService.{operation}",
        }
        attempt = 0
        while True:
            signed = sigv4.sign("POST", url, headers, body, credentials=credentials,
                                region=self.region, service="kms")
            signed["User-Agent"] = "kms-local-lambda-env/1"
            try:
                status, request_id, data = self._send(signed, body)
            except OSError as exc:  # refused, reset, timeout, stale keep-alive
                self._drop_connection()
                if attempt < self._retries:
                    attempt += 1
                    time.sleep(min(1.0, 0.05 * 2 ** attempt) * random.random())
                    continue
                raise KMSUnavailableError(
                    f"cannot reach KMS at {self.endpoint_url}: {type(exc).__name__}") from None
            if status == 200:
                out = json.loads(data) if data else {}
                for key in _BLOB_FIELDS:
                    if isinstance(out.get(key), str):
                        out[key] = base64.b64decode(out[key])
                out["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": request_id}
                return out
            err = self._parse_error(status, data, request_id)
            code = err.response["Error"]["Code"]
            if (status >= 500 or code in _RETRY_CODES) and attempt < self._retries:
                attempt += 1
                time.sleep(min(1.0, 0.05 * 2 ** attempt) * random.random())
                continue
            raise err

    def _send(self, headers: dict, body: bytes) -> tuple[int, str | None, bytes]:
        import http.client  # noqa: PLC0415 - cold start: as above (loaded by _connection by now)
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except http.client.HTTPException as exc:  # malformed or truncated answer
            raise ConnectionError(type(exc).__name__) from None
        if resp.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        return resp.status, resp.getheader("x-amzn-RequestId"), data

    @staticmethod
    def _parse_error(status: int, data: bytes, request_id: str | None) -> KMSClientError:
        code, message = str(status), ""
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {}
        if isinstance(doc, dict):
            if isinstance(doc.get("__type"), str):
                code = _error_code(doc["__type"])
            msg = doc.get("message", doc.get("Message"))
            if isinstance(msg, str):
                message = msg
        return KMSClientError(code, message, status, request_id)

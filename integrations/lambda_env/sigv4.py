"""AWS Signature Version 4 for the light KMS client.

Follows the SigV4 specification and botocore's ``SigV4Auth`` choices exactly
(which headers are signed, whitespace trimming, path and query
canonicalisation), so that a server that checks botocore's signatures accepts
ours; tests compare the two on generated inputs.  The canonical request, string
to sign and signing key come from ``kms_core.sigv4``, which the server's
verifier uses too (standard library only: importing cryptography here would
cost the cold start ~12 ms for the same primitive).
"""
from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

from kms_core import sigv4 as shared

__all__ = ["Credentials", "canonical_request", "sign"]

# Headers botocore never signs (botocore.auth.SIGNED_HEADERS_BLACKLIST).
UNSIGNED_HEADERS = frozenset({
    "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    "authorization",
})


class Credentials:
    """Access key, secret and optional session token.  ``repr`` hides the secret."""

    __slots__ = ("access_key", "secret_key", "token")

    def __init__(self, access_key: str, secret_key: str, token: str | None = None):
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token or None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key=<hidden>)"


def _host(url_parts) -> str:
    host = url_parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = url_parts.port
    if port is not None and port != {"http": 80, "https": 443}.get(url_parts.scheme):
        host = f"{host}:{port}"
    return host


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(method: str, url: str, headers: dict[str, str], body: bytes,
                      ) -> tuple[str, str]:
    """Return ``(canonical_request, signed_headers)`` for the request."""
    parts = urlsplit(url)
    signed: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname not in UNSIGNED_HEADERS:
            signed.setdefault(lname, []).append(value)
    if "host" not in signed:
        signed["host"] = [_host(parts)]
    payload_hash = headers.get("X-Amz-Content-SHA256") or hashlib.sha256(body).hexdigest()
    return shared.canonical_request(
        method, shared.canonical_path(parts.path), _canonical_query(parts.query),
        [(n, ",".join(shared.trim(v) for v in signed[n])) for n in sorted(signed)], payload_hash)


def sign(method: str, url: str, headers: dict[str, str], body: bytes, *,
         credentials: Credentials, region: str, service: str,
         timestamp: str | None = None) -> dict[str, str]:
    """Add ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a session token) and
    ``Authorization`` to a copy of ``headers`` and return it.  ``timestamp``
    (``YYYYMMDDTHHMMSSZ``, default now) is for tests."""
    stamp = timestamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    day = stamp[:8]
    out = {k: v for k, v in headers.items()
           if k.lower() not in ("authorization", "x-amz-date", "x-amz-security-token")}
    out["X-Amz-Date"] = stamp
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    creq, signed_headers = canonical_request(method, url, out, body)
    scope = f"{day}/{region}/{service}/aws4_request"
    key = shared.derive_signing_key(credentials.secret_key, day, region, service)
    signature = shared.hex_signature(key, shared.string_to_sign(stamp, scope, creq))
    out["Authorization"] = (f"{shared.ALGORITHM} Credential={credentials.access_key}/{scope}, "
                            f"SignedHeaders={signed_headers}, Signature={signature}")
    return out

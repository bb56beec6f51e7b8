"""The parts of AWS Signature Version 4 that signing and verifying share.

The server's verifier (``kms_core/server/sigv4.py``) and the light client's
signer (``integrations/lambda_env/sigv4.py``) both build the canonical
request, the string to sign and the signing key from these, so the two
sides cannot drift apart.  Standard library only (``hmac``/``hashlib``, as
botocore): the light client imports this at a Lambda cold start.

Where the two sides differ they do so on purpose: a signer canonicalises the
path and query it is about to send exactly as botocore does (no re-encoding
of the query), while the verifier decodes what arrived and re-encodes it.
"""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"


def trim(value: str) -> str:
    """A header value as SigV4 signs it: surrounding and repeated spaces collapsed."""
    return " ".join(value.split())


def canonical_path(path: str) -> str:
    """RFC 3986 remove_dot_segments, empty segments dropped, then quoted — as
    botocore normalises the path it signs (an absent path is ``/``)."""
    out: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    result = "/" + "/".join(out)
    if path.endswith("/") and out:
        result += "/"
    return quote(result, safe="/~")


def canonical_request(method: str, path: str, query: str, headers: list[tuple[str, str]],
                      payload_hash: str) -> tuple[str, str]:
    """``(canonical request, signed headers)`` for an already canonical
    ``path`` and ``query`` and lower-case header names in sorted order."""
    canon_headers = "".join(f"{n}:{v}\n" for n, v in headers)
    signed = ";".join(n for n, _ in headers)
    return "\n".join((method.upper(), path, query, canon_headers, signed, payload_hash)), signed


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()))


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode("utf-8"), date.encode("utf-8"), hashlib.sha256).digest()
    k = hmac.new(k, region.encode("utf-8"), hashlib.sha256).digest()
    k = hmac.new(k, service.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def hex_signature(signing_key: bytes, sts: str) -> str:
    return hmac.new(signing_key, sts.encode("utf-8"), hashlib.sha256).hexdigest()

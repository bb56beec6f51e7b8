"""AWS Signature Version 4 verification for ``Authorization`` headers.

Implemented from the SigV4 specification with ``hmac``/``hashlib`` only and
checked against botocore's ``SigV4Auth`` signer by property-based tests.
Verification is split in two steps so that the caller can fetch the
credential (a database read on a cache miss) off the event loop:

1. :func:`parse_request` parses and checks everything that needs no secret
   (header syntax, credential scope, date and the 5-minute skew window) and
   returns a :class:`SignedRequest` naming the access key;
2. :meth:`SigningKeys.verify` recomputes the signature with the secret and
   compares it in constant time.

Errors are :class:`~kms_core.errors.KMSError` with AWS's codes and messages.
Secrets and signatures never appear in messages or reprs.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from kms_core.errors import KMSError
from kms_core.sigv4 import (
    ALGORITHM,
    canonical_path,
    canonical_request,
    derive_signing_key,
    hex_signature,
    string_to_sign,
    trim,
)

__all__ = [
    "ALGORITHM",
    "SignedRequest",
    "SigningKeys",
    "canonical_query",
    "canonical_uri",
    "derive_signing_key",
    "parse_authorization",
    "parse_request",
]
SKEW_SECONDS = 300
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers every accepted request must have signed: ``host`` as AWS requires,
# ``x-amz-target`` because it selects the operation (an unsigned target would
# let a captured request be replayed as a different operation).
REQUIRED_SIGNED = ("host", "x-amz-target")

_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_SCOPE_DATE = re.compile(r"^\d{8}$")
_REGION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_ACCESS_KEY = re.compile(r"^[A-Za-z0-9]{1,128}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")

MSG_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."
MSG_MISSING = "Missing Authentication Token"


def _incomplete(message: str) -> KMSError:
    return KMSError("IncompleteSignatureException", message)


def _invalid(message: str) -> KMSError:
    return KMSError("InvalidSignatureException", message)


@dataclass(frozen=True)
class SignedRequest:
    """What :func:`parse_request` learned from a request's SigV4 headers."""

    access_key_id: str
    date: str  # YYYYMMDD from the credential scope
    region: str
    service: str
    amz_date: str  # the request timestamp, YYYYMMDDTHHMMSSZ
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)
    string_to_sign: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def _format_amz(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))


@lru_cache(maxsize=256)
def _parse_amz_date(value: str) -> float:
    # Cached: clients send the same timestamp for every request of a second.
    if not _AMZ_DATE.match(value):
        raise _incomplete(
            f"Date must be in ISO-8601 'basic format'. Got '{value[:40]}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    try:
        d = datetime.datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]),
                              int(value[9:11]), int(value[11:13]), int(value[13:15]),
                              tzinfo=datetime.UTC)
    except ValueError:
        raise _incomplete(f"Date must be a valid ISO-8601 'basic format' date. Got '{value[:40]}'.") from None
    return d.timestamp()


def parse_authorization(value: str) -> tuple[str, str, str]:
    """Split ``AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported Authorization Type '{algorithm[:40]}'; only {ALGORITHM} is accepted."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, val = item.partition("=")
        if not eq:
            raise _incomplete("Authorization header requires each component to be of the form name=value. "
                              f"Got '{name[:40]}'.")
        if name in parts:
            raise _incomplete(f"Authorization header has the '{name[:40]}' parameter twice.")
        parts[name] = val.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not parts.get(n)]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{n}' parameter." for n in missing))
    return parts["Credential"], parts["SignedHeaders"], parts["Signature"]


@lru_cache(maxsize=64)
def canonical_uri(raw_path: str) -> str:
    """The path as botocore signs it: dot segments and empty segments removed, then quoted
    (cached: KMS requests are all ``POST /``)."""
    return canonical_path(unquote(raw_path))


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        pairs.append((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


@lru_cache(maxsize=1024)
def _check_scope(credential: str, service: str) -> tuple[str, str, str, str]:
    """Validate ``AKID/date/region/service/aws4_request``; cached (same scope all day)."""
    scope = credential.split("/")
    if len(scope) != 5:
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got "
            f"'{len(scope)}' elements."
        )
    akid, sdate, region, svc, term = scope
    if not _ACCESS_KEY.match(akid):
        raise KMSError("UnrecognizedClientException", MSG_UNKNOWN_KEY)
    if term != "aws4_request":
        raise _incomplete(f"Credential should be scoped with a valid terminator: 'aws4_request', not '{term[:40]}'.")
    if svc != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'.")
    if not _REGION.match(region):
        raise _incomplete(f"Credential should be scoped to a valid region, not '{region[:64]}'.")
    if not _SCOPE_DATE.match(sdate):
        raise _incomplete(f"Credential date must be in the form YYYYMMDD, not '{sdate[:40]}'.")
    return akid, sdate, region, svc


@lru_cache(maxsize=1024)
def _check_signed_headers(signed: str, required: tuple[str, ...]) -> tuple[str, ...]:
    names = signed.split(";")
    if any(not _HEADER_NAME.match(n) for n in names) or names != sorted(set(names)):
        raise _incomplete("SignedHeaders must be lower-case header names, sorted, separated by ';'.")
    for req in required:
        if req not in names:
            raise _incomplete(f"'{req}' must be a 'SignedHeader' in the AWS Authorization.")
    return tuple(names)


def parse_request(
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    *,
    service: str = "kms",
    now: float | None = None,
    skew: int = SKEW_SECONDS,
    required: tuple[str, ...] = REQUIRED_SIGNED,
) -> SignedRequest:
    """Check a request's SigV4 header and build the string to sign.

    ``headers`` maps lower-case names to values (repeated headers joined with
    ``,``).  Raises MissingAuthenticationTokenException without an
    ``Authorization`` header, IncompleteSignatureException for a malformed one
    and InvalidSignatureException for a wrong scope or a request outside the
    skew window.
    """
    auth = headers.get("authorization")
    if not auth:
        raise KMSError("MissingAuthenticationTokenException", MSG_MISSING)
    credential, signed, signature = parse_authorization(auth)

    akid, sdate, region, svc = _check_scope(credential, service)
    if not _SIGNATURE.match(signature):
        raise _incomplete("Signature must be 64 lower-case hexadecimal characters.")
    names = _check_signed_headers(signed, required)
    token = headers.get("x-amz-security-token")
    if token is not None and "x-amz-security-token" not in names:
        raise _incomplete("'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization.")

    # The request time: X-Amz-Date, else Date (RFC 1123), as the spec allows.
    if "x-amz-date" in headers:
        amz_date = headers["x-amz-date"].strip()
        ts = _parse_amz_date(amz_date)
        date_source = "X-Amz-Date"
        if "x-amz-date" not in names:
            raise _incomplete("'x-amz-date' must be a 'SignedHeader' in the AWS Authorization.")
    elif "date" in headers:
        try:
            ts = parsedate_to_datetime(headers["date"]).timestamp()
        except (TypeError, ValueError, IndexError):
            raise _incomplete(f"Date header is not a valid HTTP date: '{headers['date'][:40]}'.") from None
        amz_date = _format_amz(ts)
        date_source = "Date"
        if "date" not in names:
            raise _incomplete("'date' must be a 'SignedHeader' in the AWS Authorization.")
    else:
        raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    for n in names:
        if n not in headers:
            raise _incomplete(f"Signed header '{n}' is missing from the request.")
    if amz_date[:8] != sdate:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{sdate}' != '{amz_date[:8]}', from '{date_source}'."
        )
    now = time.time() if now is None else now
    if ts < now - skew:
        raise _invalid(
            f"Signature expired: {amz_date} is now earlier than {_format_amz(now - skew)} "
            f"({_format_amz(now)} - {skew // 60} min.)"
        )
    if ts > now + skew:
        raise _invalid(
            f"Signature not yet current: {amz_date} is still later than {_format_amz(now + skew)} "
            f"({_format_amz(now)} + {skew // 60} min.)"
        )

    # Payload hash: botocore signs x-amz-content-sha256 when it is present; we
    # accept it only when it is the body's real hash (no UNSIGNED-PAYLOAD:
    # the body is the whole request for KMS).
    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared.strip() != body_hash:
        raise _invalid("The provided 'x-amz-content-sha256' header does not match what was computed.")

    creq, _ = canonical_request(method, canonical_uri(raw_path), canonical_query(query),
                                [(n, trim(headers[n])) for n in names], body_hash)
    sts = string_to_sign(amz_date, f"{sdate}/{region}/{svc}/aws4_request", creq)
    return SignedRequest(
        access_key_id=akid,
        date=sdate,
        region=region,
        service=svc,
        amz_date=amz_date,
        signed_headers=names,
        signature=signature,
        string_to_sign=sts,
        security_token=token,
    )


class SigningKeys:
    """Verifies signatures, caching derived signing keys per key id, date and region.

    Deriving a key costs four HMACs; a cached key leaves one HMAC per request.
    Entries are keyed by the access key id and a digest of the secret, so a
    changed secret can never reuse a stale key.
    """

    def __init__(self, max_entries: int = 4096):
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigningKeys(entries={len(self._cache)})"

    def signing_key(self, access_key_id: str, secret: str, date: str, region: str, service: str) -> bytes:
        tag = hashlib.sha256(secret.encode("utf-8")).digest()[:8]
        ck = (access_key_id, tag, date, region, service)
        with self._lock:
            key = self._cache.get(ck)
            if key is not None:
                self._cache.move_to_end(ck)
                return key
        key = derive_signing_key(secret, date, region, service)
        with self._lock:
            self._cache[ck] = key
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return key

    def verify(self, req: SignedRequest, secret: str) -> None:
        """Raise InvalidSignatureException unless ``req`` was signed with ``secret``."""
        key = self.signing_key(req.access_key_id, secret, req.date, req.region, req.service)
        expected = hex_signature(key, req.string_to_sign)
        if not hmac.compare_digest(expected.encode("ascii"), req.signature.encode("ascii")):
            raise _invalid(MSG_BAD_SIGNATURE)

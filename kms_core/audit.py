"""The audit trail: one CloudTrail-shaped event per KMS request, hash-chained.

``attach(engine)`` installs an auditor on ``engine.auditor`` and returns the
:class:`AuditLog`.  The request path only snapshots what the event needs
(sensitive members already dropped) onto an in-memory queue; a background
thread turns snapshots into events and appends them in batches (group
commit), so Encrypt never waits for a database write.  The queue is bounded:
when the database falls behind, callers block rather than lose events.

Tamper evidence (docs/audit-log.md): every record carries
``HMAC-SHA256(K, "kms-audit/v1/event" || seq || previous MAC || event JSON)``
and a head row carries an HMAC over the last sequence number and MAC, so an
edited, inserted, reordered or deleted record — the last ones included — is
detected.  K is random, stored sealed under the store's root key: database
access alone cannot re-forge the chain.  Appends from several processes or
nodes are serialised by a row lock on the head row (SQLite: the store's
``BEGIN IMMEDIATE``), so they form one chain.
"""
from __future__ import annotations

import atexit
import base64
import collections
import json
import logging
import os
import re
import struct
import threading
import time
from time import time as _time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from sqlalchemy import (BigInteger, Column, Double, Integer, LargeBinary, SmallInteger, String,
                        Table, Text, and_, insert, or_, select, update)
from sqlalchemy.exc import IntegrityError

from .clock import SystemClock
from .errors import KMSError, StoreError
from .store import Store, metadata

__all__ = ["attach", "AuditLog", "AuditReader", "VerifyReport", "build_event", "event_mac",
           "genesis_mac", "head_mac", "FORMAT_VERSION", "EVENT_VERSION"]

log = logging.getLogger("kms_core.audit")

FORMAT_VERSION = 1
EVENT_VERSION = "1.11"           # CloudTrail's current KMS event version
_KEY_AAD = b"audit-mac-key|v1"   # associated data for the sealed MAC key
_D_GENESIS = b"kms-audit/v1/genesis"
_D_EVENT = b"kms-audit/v1/event"
_D_HEAD = b"kms-audit/v1/head"
_U64 = struct.Struct(">Q")

audit_events = Table(
    "kms_audit_events", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("format", SmallInteger, nullable=False),
    # Copies of event fields for filtering; verify checks them against the event.
    Column("event_time", Double, nullable=False, index=True),  # DOUBLE: MySQL FLOAT is 4 bytes
    Column("event_name", String(128), nullable=False),
    Column("principal", String(512)),
    Column("key_ids", String(1024)),      # " <key id> <key id> " for LIKE matching
    Column("error_code", String(128)),
    Column("event", Text, nullable=False),        # the event's JSON, exactly what the MAC covers
    Column("mac", LargeBinary(32), nullable=False),
)

audit_head = Table(
    "kms_audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("format", SmallInteger, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("mac", LargeBinary(32), nullable=False),
    Column("anchor", LargeBinary(32), nullable=False),
)


# ============================================================================ MACs
def _mac(key: bytes, *parts: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    for p in parts:
        h.update(p)
    return h.finalize()


def genesis_mac(key: bytes) -> bytes:
    """The "previous MAC" of record 1: binds the chain's start to its key."""
    return _mac(key, _D_GENESIS)


def event_mac(key: bytes, seq: int, prev: bytes, event_json: str) -> bytes:
    return _mac(key, _D_EVENT, _U64.pack(seq), prev, event_json.encode("utf-8"))


def head_mac(key: bytes, seq: int, last: bytes) -> bytes:
    return _mac(key, _D_HEAD, _U64.pack(seq), last)


def _same(a: bytes, b: bytes) -> bool:
    return constant_time.bytes_eq(bytes(a or b""), bytes(b or b""))


# ===================================================================== event shape
def _model_names() -> tuple[frozenset, frozenset]:
    """Member names that are blobs or marked sensitive, and map-typed members
    (whose keys — encryption context keys — are kept verbatim)."""
    secret, maps = set(), set()
    try:
        from . import model
    except Exception:  # pragma: no cover - the model always ships
        return frozenset(), frozenset()
    seen: set = set()

    def walk(shape, name):
        if shape.type == "blob" or shape.sensitive:
            secret.add(name)
        if shape.type == "map":
            maps.add(name)
        if shape.name in seen:
            return
        seen.add(shape.name)
        for n, m in shape.members.items():
            walk(m, n)
        if shape.member is not None:
            walk(shape.member, name)
    for op in model.OPERATIONS.values():
        for s in (op.input_shape, op.output_shape):
            if s is not None:
                walk(s, "")
    secret.discard("")
    return frozenset(secret), frozenset(maps)


_MODEL_SECRET, _MODEL_MAPS = _model_names()
# Never recorded, wherever they appear: blobs (plaintext, ciphertext, key
# material, import tokens, signatures, MACs…), members the model marks
# sensitive, grant tokens (bearer credentials) and credentials.
SECRET_MEMBERS = _MODEL_SECRET | frozenset({
    "Plaintext", "CiphertextBlob", "SourceCiphertextBlob", "PublicKey", "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob", "ImportToken", "EncryptedKeyMaterial", "Message", "Signature",
    "Mac", "SharedSecret", "CiphertextForRecipient", "AttestationDocument", "KeyMaterial",
    "GrantToken", "GrantTokens", "XksProxyAuthenticationCredential", "KeyStorePassword",
    "RawSecretAccessKey", "SecretAccessKey", "SessionToken", "ResponseMetadata"})
MAP_MEMBERS = _MODEL_MAPS | frozenset({
    "EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext",
    "EncryptionContextEquals", "EncryptionContextSubset"})

# CloudTrail records null responseElements for these (and for every read-only call).
_NULL_RESPONSE = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom", "Sign",
    "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret", "GetPublicKey",
    "GetParametersForImport"})
_READ_ONLY_EXTRA = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom", "Sign",
    "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret"})
_DEFAULT_ALGORITHM = frozenset({"Encrypt", "Decrypt"})
# Result members naming the key(s) a call used (key ARNs in AWS's responses).
_RESULT_KEYS = ("KeyId", "SourceKeyId")
# Parameters naming a key; aliases are resolved only through the result.
_PARAM_KEYS = ("KeyId", "TargetKeyId", "SourceKeyId", "DestinationKeyId")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-fA-F-]{36}$")
_OP_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


def is_read_only(operation: str) -> bool:
    return operation.startswith(("Describe", "List", "Get")) or operation in _READ_ONLY_EXTRA


_DROP = object()


_RO_MEMO: dict = {}


def _read_only(operation) -> bool:
    ro = _RO_MEMO.get(operation)
    if ro is None:
        ro = isinstance(operation, str) and is_read_only(operation)
        if len(_RO_MEMO) < 1024:
            _RO_MEMO[operation] = ro
    return ro


def _camel(name: str) -> str:
    # CloudTrail lower-cases the first letter but keeps acronyms: AWSAccountId.
    if len(name) > 1 and name[1].isupper():
        return name
    return name[:1].lower() + name[1:]


def _cloudtrail_time(dt: datetime) -> str:
    """CloudTrail's form for timestamps inside responseElements: "Aug 10, 2022, 10:38:27 PM"."""
    dt = dt.astimezone(timezone.utc)
    hour = dt.hour % 12 or 12
    return f"{dt:%b} {dt.day}, {dt.year}, {hour}:{dt:%M:%S} {'AM' if dt.hour < 12 else 'PM'}"


def _clean(value: Any, depth: int = 0) -> Any:
    """Structure members camelCased, secrets and bytes dropped, maps kept verbatim.
    Returns ``_DROP`` for values that must not (or cannot) be recorded."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > 20:
        return _DROP
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k in SECRET_MEMBERS:
                continue
            if k in MAP_MEMBERS and isinstance(v, dict):
                c = {str(mk): mv for mk, mv in v.items()
                     if isinstance(mk, str) and isinstance(mv, (str, int, float, bool))}
            else:
                c = _clean(v, depth + 1)
            if c is not _DROP:
                out[_camel(k)] = c
        return out
    if isinstance(value, (list, tuple)):
        return [c for c in (_clean(v, depth + 1) for v in value) if c is not _DROP]
    if isinstance(value, datetime):
        return _cloudtrail_time(value)
    return _DROP  # bytes, memoryview and anything else: never recorded


def _strip(params: Any) -> dict:
    """What the request path keeps of the parameters: no secrets, nested dicts and
    lists copied (the caller may reuse them), nothing that holds plaintext."""
    if type(params) is not dict:
        return {}
    out = {k: v for k, v in params.items()
           if k not in SECRET_MEMBERS and type(v) not in _BINARY}
    for k, v in out.items():
        if type(v) is dict:
            out[k] = dict(v)
        elif type(v) is list:
            out[k] = list(v)
    return out


_BINARY = (bytes, bytearray, memoryview)


_ARN_MEMO: dict = {}


def _key_arn(ref: Any, region: str, account: str) -> str | None:
    if not isinstance(ref, str):
        return None
    k = (ref, region, account)
    hit = _ARN_MEMO.get(k, _DROP)
    if hit is not _DROP:
        return hit
    if _KEY_ARN_RE.match(ref):
        arn = ref
    elif _UUID_RE.match(ref):
        arn = f"arn:aws:kms:{region}:{account}:key/{ref.lower()}"
    else:
        arn = None
    if len(_ARN_MEMO) > 8192:
        _ARN_MEMO.clear()
    _ARN_MEMO[k] = arn
    return arn


def _user_identity(ctx, account: str) -> dict:
    principal = getattr(ctx, "principal", None)
    akid = getattr(ctx, "access_key_id", None)
    authenticated = getattr(ctx, "authenticated", True)
    if principal is None and authenticated:
        principal = f"arn:aws:iam::{account}:root"
    if principal is None:  # refused before we knew who it was: only the claim
        ui: dict[str, Any] = {"type": "Unknown"}
        if akid:
            ui["accessKeyId"] = akid
        return ui
    m = re.match(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):(.*)$", principal)
    acct = m.group(1) if m else account
    rest = m.group(2) if m else ""
    if rest == "root":
        ui = {"type": "Root", "principalId": acct, "arn": principal, "accountId": acct}
    elif rest.startswith("user/"):
        ui = {"type": "IAMUser", "principalId": _principal_id("AIDA", principal),
              "arn": principal, "accountId": acct, "userName": rest.rsplit("/", 1)[-1]}
    elif rest.startswith("assumed-role/"):
        ui = {"type": "AssumedRole", "principalId": _principal_id("AROA", principal),
              "arn": principal, "accountId": acct}
    else:
        ui = {"type": "Unknown", "arn": principal, "accountId": acct}
    if akid:
        ui["accessKeyId"] = akid
    if not authenticated:
        ui["authenticated"] = False  # the caller claimed this identity but did not prove it
    via = getattr(ctx, "via_service", None)
    if via:
        ui["invokedBy"] = via.split(".", 1)[0] + ".amazonaws.com"
    source = getattr(ctx, "source_identity", None)
    if source:  # e.g. the OS user who ran the kms CLI (docs/audit-log.md)
        ui["sessionContext"] = {"sourceIdentity": source}
    return ui


def _principal_id(prefix: str, arn: str) -> str:
    # IAM's unique ids are opaque; ours are derived from the ARN so they are stable.
    import hashlib
    return prefix + base64.b32encode(hashlib.sha256(arn.encode()).digest())[:17].decode()


_J = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def _uuid(raw: bytes) -> str:
    """A random (version 4) UUID string from 16 random bytes."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[raw[8] & 3]}{h[17:20]}-{h[20:32]}"


_OPS: dict = {}   # operation -> (eventName, readOnly, responseElements always null)


class _Renderer:
    """Turns one request into its event JSON.  The parts that repeat from request
    to request (who, from where, which key, the fixed fields) are serialised
    once and cached, which keeps the writer's cost per event small."""

    _MAX_CACHE = 4096

    def __init__(self, account_id: str, region: str):
        self.account_id = account_id
        self.region = region
        self._who: dict = {}
        self._params: dict = {}
        self._res: dict = {}
        self._tpl: dict = {}
        self._time: tuple = (None, "")

    def _cache_put(self, cache: dict, k, v):
        if len(cache) >= self._MAX_CACHE:
            cache.clear()
        cache[k] = v
        return v

    def _identity(self, ctx) -> tuple:
        g = getattr
        k = (g(ctx, "principal", None), g(ctx, "access_key_id", None), g(ctx, "authenticated", True),
             g(ctx, "via_service", None), g(ctx, "region", None), g(ctx, "account_id", None),
             g(ctx, "source_ip", None), g(ctx, "user_agent", None), g(ctx, "source_identity", None))
        hit = self._who.get(k)
        if hit is not None:
            return hit
        region = k[4] or self.region
        account = k[5] or self.account_id
        ui = _user_identity(ctx, account)
        head = '{"eventVersion":"' + EVENT_VERSION + '","userIdentity":' + _J(ui) + ',"eventTime":"'
        mid = (',"awsRegion":' + _J(region) + ',"sourceIPAddress":' + _J(k[6] or "in-process")
               + ',"userAgent":' + _J(k[7] or "kms-local (in-process client)"))
        tail = ',"recipientAccountId":' + _J(account) + ',"eventCategory":"Management"'
        principal = ui.get("arn")
        return self._cache_put(self._who, k, (head, mid, tail, region, account,
                                              principal[:512] if principal else None))

    def _time_str(self, when: float) -> str:
        sec = int(when)
        if self._time[0] != sec:
            self._time = (sec, datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return self._time[1]

    def _request(self, name: str, params, ok: bool) -> str:
        if not params:
            if ok and name in _DEFAULT_ALGORITHM:
                return '{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}'
            return "null"
        simple = all(type(v) in (str, int, bool) for v in params.values())
        if simple:
            k = (name, ok, tuple(params.items()))
            hit = self._params.get(k)
            if hit is not None:
                return hit
        req = _clean(params)
        if ok and name in _DEFAULT_ALGORITHM:
            # AWS records the algorithm it applied even when the caller left it out.
            req.setdefault("encryptionAlgorithm", "SYMMETRIC_DEFAULT")
        out = _J(req) if req else "null"
        return self._cache_put(self._params, k, out) if simple else out

    def _resources(self, arns: tuple, account: str) -> tuple[str, str | None]:
        hit = self._res.get((arns, account))
        if hit is not None:
            return hit
        uniq = list(dict.fromkeys(a for a in arns if a))
        frag = _J([{"accountId": account, "type": "AWS::KMS::Key", "ARN": a} for a in uniq])
        ids = " ".join(a.rsplit("/", 1)[-1] for a in uniq)
        return self._cache_put(self._res, (arns, account),
                               (frag, (" " + ids + " ")[:1024] if ids else None))

    def _template(self, ctx, operation, params, result, error) -> tuple:
        """Everything but eventTime, requestID and eventID:
        ``(before time, time→requestID, eventID→end, (eventName, principal, key_ids, errorCode))``."""
        head, mid, tail, region, account, principal = self._identity(ctx)
        info = _OPS.get(operation) if type(operation) is str else None
        if info is None:
            name = operation if isinstance(operation, str) and _OP_RE.match(operation) else "Unknown"
            info = (name, is_read_only(name), name in _NULL_RESPONSE or is_read_only(name))
            if name != "Unknown" and len(_OPS) < 1024:
                _OPS[name] = info
        name, ro, no_response = info
        ok = error is None
        resp = "null"
        if ok and result and not no_response:
            r = _clean(result)
            resp = _J(r) if r else "null"
        arns = []
        if result:
            for k in _RESULT_KEYS:
                arns.append(_key_arn(result.get(k), region, account))
            md = result.get("KeyMetadata")
            if isinstance(md, dict):
                arns.append(_key_arn(md.get("Arn") or md.get("KeyId"), region, account))
        if params:
            for k in _PARAM_KEYS:
                arns.append(_key_arn(params.get(k), region, account))
        res, key_ids = self._resources(tuple(arns), account)
        middle = ('","eventSource":"kms.amazonaws.com","eventName":"' + name + '"' + mid
                  + ',"requestParameters":' + self._request(name, params, ok)
                  + ',"responseElements":' + resp + ',"requestID":')
        end = ['","readOnly":', "true" if ro else "false", ',"resources":', res,
               ',"eventType":"AwsApiCall","managementEvent":true', tail]
        code = None
        if not ok:
            code = str(getattr(error, "code", None) or type(error).__name__)[:128]
            msg = str(getattr(error, "message", "") or "")[:1024]
            end += [',"errorCode":', _J(code), ',"errorMessage":', _J(msg)]
        end.append("}")
        return head, middle, "".join(end), (name, principal, key_ids, code)

    def render(self, ctx, operation, params, result, error, when: float,
               event_id: str, request_id: str | None = None) -> tuple[str, dict]:
        """``(event JSON, filter columns)`` for one request."""
        t = k = None
        if error is None:
            # Successive requests mostly differ only in time and ids: reuse the rest.
            k = _template_key(ctx, operation, params, result)
            if k is not None:
                t = self._tpl.get(k)
        if t is None:
            t = self._template(ctx, operation, params, result, error)
            if k is not None:
                self._cache_put(self._tpl, k, t)
        head, middle, end, (name, principal, key_ids, code) = t
        rid = request_id or getattr(ctx, "request_id", None) or _uuid(os.urandom(16))
        body = "".join((head, self._time_str(when), middle, _J(rid), ',"eventID":"', event_id, end))
        return body, {"event_time": when, "event_name": name, "principal": principal,
                      "key_ids": key_ids, "error_code": code}


class _NO_CTX:
    principal = access_key_id = via_service = region = account_id = None
    source_ip = user_agent = request_id = source_identity = None
    authenticated = True


def _template_key(ctx, operation, params, result):
    """A hashable summary of everything a template depends on, or None."""
    pk = []
    for k, v in params.items():
        tv = type(v)
        if tv is dict:
            v = (dict, tuple(v.items()))
        elif tv is list:
            v = (list, tuple(v))
        elif tv not in (str, int, bool):
            return None
        pk.append((k, v))
    if result:
        if len(result) > 2:  # management results are not worth caching
            return None
        rk = (result.get("KeyId"), result.get("SourceKeyId"))
    else:
        rk = None
    try:
        c = ctx if ctx is not None else _NO_CTX
        # every field the event reads from the context, except request_id (per request)
        key = (c.principal, c.access_key_id, c.authenticated, c.via_service, c.region,
               c.account_id, c.source_ip, c.user_agent, getattr(c, "source_identity", None),
               operation, tuple(pk), rk)
        hash(key)
    except (AttributeError, TypeError):  # an odd context or value: render it in full
        return None
    return key


def build_event(ctx, operation: str | None, params: dict | None, result: dict | None,
                error: KMSError | None, when: datetime, *, account_id: str, region: str,
                event_id: str | None = None) -> dict:
    """The CloudTrail record for one request, as a dict (what the log stores, parsed)."""
    body, _ = _Renderer(account_id, region).render(
        ctx, operation, _strip(params), result, error, when.timestamp(),
        event_id or _uuid(os.urandom(16)))
    return json.loads(body)


def _index_columns(ev: dict, when: datetime) -> dict:
    ui = ev.get("userIdentity") or {}
    keys = [r["ARN"].rsplit("/", 1)[-1] for r in ev.get("resources") or [] if r.get("ARN")]
    return {
        "event_time": when.timestamp(),
        "event_name": str(ev.get("eventName"))[:128],
        "principal": (ui.get("arn") or None) and str(ui["arn"])[:512],
        "key_ids": (" " + " ".join(keys) + " ")[:1024] if keys else None,
        "error_code": ev.get("errorCode"),
    }


def _parse_event_time(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


# ====================================================================== the store
def _ensure(store: Store) -> None:
    store.ensure_tables(audit_events, audit_head)


def _load_key(store: Store, *, create: bool) -> bytes | None:
    """The chain's MAC key (created with the head row on first use)."""
    with store.reading() as conn:
        row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    if row is None:
        if not create:
            return None
        key = os.urandom(32)
        genesis = genesis_mac(key)
        try:
            with store.engine.begin() as conn:
                conn.execute(insert(audit_head).values(
                    id=1, format=FORMAT_VERSION, sealed_key=store.seal(key, _KEY_AAD), seq=0,
                    mac=genesis, anchor=head_mac(key, 0, genesis)))
            return key
        except IntegrityError:  # another process created it first
            with store.reading() as conn:
                row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    if row.format != FORMAT_VERSION:
        raise StoreError(f"the audit log has format {row.format}; this version understands "
                         f"{FORMAT_VERSION}")
    try:
        return store.unseal(row.sealed_key, _KEY_AAD)
    except StoreError:
        raise StoreError("the audit log's MAC key cannot be unsealed: it was altered, or the "
                         "store's root key is not the one the log was created with") from None


class AuditLog:
    """Buffered, chained appender for one store.  The instance is the auditor callable."""

    def __init__(self, store: Store, *, account_id: str, region: str, clock=None,
                 max_pending: int = 50_000, batch_size: int = 1_000,
                 flush_interval: float = 0.05):
        self.store = store
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._interval = flush_interval
        _ensure(store)
        self._key = _load_key(store, create=True)
        self._mac_base = hmac.HMAC(self._key, hashes.SHA256())
        self._mac_base.update(_D_EVENT)
        self._renderer = _Renderer(account_id, region)
        self._system_clock = clock is None or type(clock) is SystemClock
        self._sql: str | None = None
        self._conn = None
        self._give_up = threading.Event()
        self._unwritten = 0
        self._pending: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._closed = False
        self._stop = False
        self.appended = 0          # events this instance has committed
        self.failures = 0          # failed batch appends (retried)
        self._engine_ref = None
        self._thread = threading.Thread(target=self._run, name="kms-audit-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<AuditLog store={self.store.display_url!r} appended={self.appended}>"

    # -- request path ----------------------------------------------------------------
    def __call__(self, ctx, operation, params, result, error) -> None:
        """Record one request (the engine's ``auditor`` hook); never raises."""
        if self._closed:
            return
        try:
            # epoch seconds; the engine's clock unless it is the system clock (cheaper)
            when = _time() if self._system_clock else self.clock.now().timestamp()
            if result is not None:
                if operation in _NULL_RESPONSE:  # only which key was used matters
                    result = ({"KeyId": result.get("KeyId")} if operation != "ReEncrypt" else
                              {"KeyId": result.get("KeyId"), "SourceKeyId": result.get("SourceKeyId")})
                elif _read_only(operation):  # responseElements null: keep the key only
                    md = result.get("KeyMetadata")
                    result = {"KeyId": result.get("KeyId")}
                    if type(md) is dict:
                        result["KeyMetadata"] = {"Arn": md.get("Arn"), "KeyId": md.get("KeyId")}
                else:
                    result = _snapshot(result)
            item = (when, ctx, operation, _strip(params), result, error)
        except Exception as e:  # odd input must not fail the request nor lose the event
            log.error("audit: could not capture a %s request (%s)", operation, type(e).__name__)
            item = (_time(), ctx, operation, {}, None, error)
        pending = self._pending
        pending.append(item)
        # Wake the writer only for a full batch: waking it per event would make
        # it commit tiny batches and fight the request thread for the GIL.
        if len(pending) >= self._batch_size:
            if len(pending) >= self._max_pending:
                self._wait_for_room()
            elif not self._wake.is_set():
                self._wake.set()

    def _wait_for_room(self) -> None:
        self._wake.set()
        with self._room:
            while len(self._pending) >= self._max_pending and self._thread.is_alive():
                self._room.wait(0.1)

    # -- control ---------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every event recorded before this call is committed."""
        if not self._thread.is_alive():
            return not self._pending
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the writer and detach from the engine (idempotent)."""
        if self._closed:
            return
        eng = self._engine_ref() if self._engine_ref is not None else None
        if eng is not None and getattr(eng, "auditor", None) is self:
            eng.auditor = None
        self._closed = True
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # the database stayed unreachable: stop retrying
            self._give_up.set()
            self._thread.join(5.0)
        lost = self._unwritten + sum(1 for i in self._pending if type(i) is tuple)
        if lost:
            log.error("audit: %d events could not be written before close", lost)
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._wake.wait(self._interval)
                self._wake.clear()
            raw, markers = [], []
            while pending and len(raw) < self._batch_size:
                item = pending.popleft()
                if type(item) is not tuple:
                    markers.append(item)
                    break  # commit what precedes the flush marker, then release it
                raw.append(item)
            if raw:
                try:
                    events = self._render(raw)
                except Exception as e:  # a bug: say so loudly, keep the writer alive
                    log.error("audit: %d events could not be built (%s)", len(raw), type(e).__name__)
                    self._unwritten += len(raw)
                    events = []
                del raw
                backoff = 0.05
                while events:
                    try:
                        self._append(events)
                        self.appended += len(events)
                        break
                    except Exception as e:  # the database is down or busy: keep the events
                        self.failures += 1
                        log.error("audit: appending %d events failed (%s); retrying",
                                  len(events), type(e).__name__)
                        if self._stop and self._give_up.is_set():
                            self._unwritten += len(events)
                            break
                        time.sleep(backoff)
                        backoff = min(backoff * 2, 2.0)
                with self._room:
                    self._room.notify_all()
            for m in markers:
                m.set()
            if self._stop and not pending:
                self._drop_connection()
                return

    def _render(self, raw: list) -> list[tuple[str, dict]]:
        """Events for a batch of captured requests (outside any transaction)."""
        ids = os.urandom(32 * len(raw))
        out = []
        render = self._renderer.render
        for i, (when, ctx, op, params, result, error) in enumerate(raw):
            eid = _uuid(ids[32 * i:32 * i + 16])
            rid = getattr(ctx, "request_id", None) or _uuid(ids[32 * i + 16:32 * i + 32])
            try:
                out.append(render(ctx, op, params, result, error, when, eid, rid))
            except Exception as e:  # still one event per request, without the odd parts
                log.error("audit: building a %s event failed (%s)", op, type(e).__name__)
                out.append(render(None, op, None, None, error, when, eid, rid))
        return out

    _COLUMNS = ("seq", "format", "event_time", "event_name", "principal", "key_ids",
                "error_code", "event", "mac")

    def _insert_rows(self, conn, rows: list[tuple]) -> None:
        # Straight to the driver: SQLAlchemy's per-row parameter processing would
        # cost more than the rest of the append.  PostgreSQL (psycopg) gets COPY,
        # whose rows are encoded in C; the others a plain executemany (PyMySQL
        # folds it into one multi-row INSERT).
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            q = conn.dialect.identifier_preparer.quote
            sql = (f"COPY {q(audit_events.name)} ({', '.join(q(c) for c in self._COLUMNS)}) "
                   "FROM STDIN")
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            return
        conn.exec_driver_sql(self._insert_sql(conn), rows)

    def _insert_sql(self, conn) -> str:
        if self._sql is None:
            mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
            if mark is None:  # pragma: no cover - no such driver in use
                raise StoreError(f"unsupported DB-API paramstyle {conn.dialect.paramstyle}")
            q = conn.dialect.identifier_preparer.quote
            cols = self._COLUMNS
            self._sql = (f"INSERT INTO {q(audit_events.name)} ({', '.join(q(c) for c in cols)}) "
                         f"VALUES ({', '.join([mark] * len(cols))})")
        return self._sql

    def _connection(self):
        # The writer keeps one connection: opening one per batch (SQLite's
        # NullPool, its PRAGMAs) would cost more than appending 100 events.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.store.engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass

    def _append(self, events: list[tuple[str, dict]]) -> None:
        base = self._mac_base
        try:
            self._append_on(self._connection(), events, base)
        except BaseException:
            self._drop_connection()  # a fresh one for the retry
            raise

    def _append_on(self, conn, events, base) -> None:
        with conn.begin():
            # The row lock serialises appenders across processes and nodes
            # (SQLite: the store's BEGIN IMMEDIATE already holds the write lock).
            head = conn.execute(select(audit_head.c.seq, audit_head.c.mac)
                                .where(audit_head.c.id == 1).with_for_update()).one()
            seq, prev = head.seq, bytes(head.mac)
            rows = []
            for body, cols in events:
                seq += 1
                h = base.copy()
                h.update(_U64.pack(seq) + prev + body.encode())
                prev = h.finalize()
                rows.append((seq, FORMAT_VERSION, cols["event_time"], cols["event_name"],
                             cols["principal"], cols["key_ids"], cols["error_code"], body, prev))
            self._insert_rows(conn, rows)
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(
                seq=seq, mac=prev, anchor=head_mac(self._key, seq, prev)))


def _snapshot(value: Any, depth: int = 0) -> Any:
    # Management results are small; copy them so later mutation by the caller
    # (e.g. ResponseMetadata) cannot change the record.
    if depth > 20:
        return None
    if isinstance(value, dict):
        return {k: _snapshot(v, depth + 1) for k, v in value.items()
                if k not in SECRET_MEMBERS}
    if isinstance(value, list):
        return [_snapshot(v, depth + 1) for v in value]
    return value


_LIVE: "weakref.WeakSet[AuditLog]" = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for a in list(_LIVE):
        try:
            a.close(timeout=10.0)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def attach(engine, **options) -> AuditLog:
    """Audit every request ``engine`` serves; returns the :class:`AuditLog`.

    Options: ``max_pending`` (queue bound, default 50 000 events; callers
    block beyond it), ``batch_size`` (events that wake the writer early and
    the most it appends per transaction, default 1 000), ``flush_interval``
    (seconds between appends otherwise, default 0.05 — the longest an event
    waits before it is committed).  Attaching twice returns the log already
    attached.
    """
    current = getattr(engine, "auditor", None)
    if isinstance(current, AuditLog) and not current._closed:
        return current
    audit = AuditLog(engine.store, account_id=engine.settings.account_id,
                     region=engine.settings.region, clock=engine.clock, **options)
    audit._engine_ref = weakref.ref(engine)
    engine.auditor = audit
    return audit


# ======================================================================== reading
@dataclass
class Problem:
    seq: int | None
    kind: str          # altered | missing | truncated | anchor | format | index | key
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class VerifyReport:
    checked: int = 0
    head_seq: int = 0
    head_mac: bytes = b""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def anchor(self) -> str:
        """``SEQ:HEX`` — keep it elsewhere; ``verify --anchor`` then also proves
        the log was not rolled back or replaced below it."""
        return f"{self.head_seq}:{self.head_mac.hex()}"


class AuditReader:
    """Reading, filtering and verifying the log of one store (no engine needed)."""

    def __init__(self, store: Store):
        self.store = store
        _ensure(store)

    # -- query -----------------------------------------------------------------------
    def _filters(self, *, key: str | None = None, principal: str | None = None,
                 operation: str | None = None, start: float | None = None,
                 end: float | None = None, errors_only: bool = False, after_seq: int | None = None):
        t = audit_events.c
        conds = []
        # autoescape: "_" and "%" in names are literal, not LIKE wildcards
        if key:
            conds.append(or_(*[t.key_ids.contains(f" {k} ", autoescape=True)
                               for k in self._key_ids(key)]))
        if principal:
            if principal.startswith("arn:"):
                conds.append(t.principal == principal)
            elif principal == "root":
                conds.append(t.principal.endswith(":root", autoescape=True))
            else:
                conds.append(t.principal.endswith("/" + principal, autoescape=True))
        if operation:
            names = [o.strip() for o in operation.split(",") if o.strip()]
            conds.append(t.event_name.in_(names))
        if start is not None:
            conds.append(t.event_time >= start)
        if end is not None:
            conds.append(t.event_time <= end)
        if errors_only:
            conds.append(t.error_code.is_not(None))
        if after_seq is not None:
            conds.append(t.seq > after_seq)
        return and_(*conds) if conds else None

    def _key_ids(self, ref: str) -> list[str]:
        """Key ids a --key filter names: a key id, key ARN, alias name or alias ARN."""
        ref = ref.strip()
        if ":key/" in ref:
            return [ref.rsplit("/", 1)[-1].lower()]
        if ref.startswith("alias/") or ":alias/" in ref:
            from .store import aliases
            name = "alias/" + ref.split(":alias/", 1)[1] if ":alias/" in ref else ref
            with self.store.reading() as conn:
                ids = [r[0] for r in conn.execute(
                    select(aliases.c.target_key_id).where(aliases.c.alias_name == name))]
            return ids or ["\0no-such-key\0"]
        return [ref.lower()]

    def events(self, *, limit: int | None = None, **filters) -> list[tuple[int, str]]:
        """``(seq, event JSON)`` oldest first; with ``limit``, the newest ``limit``."""
        where = self._filters(**filters)
        q = select(audit_events.c.seq, audit_events.c.event)
        if where is not None:
            q = q.where(where)
        if limit is not None:
            q = q.order_by(audit_events.c.seq.desc()).limit(limit)
        else:
            q = q.order_by(audit_events.c.seq)
        with self.store.reading() as conn:
            rows = [(r.seq, r.event) for r in conn.execute(q)]
        if limit is not None:
            rows.reverse()
        return rows

    def last_seq(self) -> int:
        with self.store.reading() as conn:
            return conn.execute(select(audit_events.c.seq).order_by(
                audit_events.c.seq.desc()).limit(1)).scalar() or 0

    def current_anchor(self) -> str:
        """``SEQ:HEX`` of the newest record, after checking the head row's MAC."""
        with self.store.reading() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        if head is None:
            return f"0:{bytes(32).hex()}"
        try:
            key = self.store.unseal(head.sealed_key, _KEY_AAD)
        except StoreError:
            raise StoreError("the audit log's MAC key cannot be unsealed (altered, or a "
                             "different root key)") from None
        if not _same(head.anchor, head_mac(key, head.seq, bytes(head.mac))):
            raise StoreError("the audit log's anchor (head row) was altered; run `kms audit verify`")
        return f"{head.seq}:{bytes(head.mac).hex()}"

    # -- verify ----------------------------------------------------------------------
    def verify(self, *, anchor: str | None = None, max_problems: int = 100) -> VerifyReport:
        """Check the whole chain, the filter columns and the head; report every problem
        (up to ``max_problems``) with the record it concerns."""
        rep = VerifyReport()

        def problem(seq, kind, msg):
            if len(rep.problems) < max_problems:
                rep.problems.append(Problem(seq, kind, msg))

        with self.store.reading() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        nrows_q = select(audit_events.c.seq).limit(1)
        if head is None:
            with self.store.reading() as conn:
                if conn.execute(nrows_q).first() is not None:
                    problem(None, "anchor", "the audit log's head row (anchor and MAC key) is "
                            "missing but records exist: the log cannot be trusted")
            return rep
        if head.format != FORMAT_VERSION:
            problem(None, "format", f"the audit log has format {head.format}; this version "
                    f"understands {FORMAT_VERSION}")
            return rep
        try:
            key = self.store.unseal(head.sealed_key, _KEY_AAD)
        except StoreError:
            problem(None, "key", "the audit log's MAC key cannot be unsealed (altered, or a "
                    "different root key): no record can be verified")
            return rep
        rep.head_seq, rep.head_mac = head.seq, bytes(head.mac)
        if not _same(head.anchor, head_mac(key, head.seq, bytes(head.mac))):
            problem(None, "anchor", "the log's anchor (head row) was altered: deletions at the "
                    "end of the log cannot be ruled out")
        want_anchor = _parse_anchor(anchor) if anchor else None

        expected, prev = 1, genesis_mac(key)
        macs_at: dict[int, bytes] = {}
        # Stream in pages: the log can be large.
        after = 0
        page = 5000
        while True:
            with self.store.reading() as conn:
                rows = conn.execute(select(audit_events).where(audit_events.c.seq > after)
                                    .order_by(audit_events.c.seq).limit(page)).all()
            if not rows:
                break
            for r in rows:
                seq = r.seq
                rep.checked += 1
                if r.format != FORMAT_VERSION:
                    problem(seq, "format", f"record {seq}: unknown format {r.format}")
                if seq != expected:
                    problem(seq, "missing",
                            f"record {expected} is missing (deleted)" if seq == expected + 1 else
                            f"records {expected}..{seq - 1} are missing (deleted)")
                mac = bytes(r.mac)
                if not _same(mac, event_mac(key, seq, prev, r.event)):
                    eid = _event_id(r.event)
                    problem(seq, "altered",
                            f"record {seq}{eid} fails its MAC: it was edited, inserted, moved, "
                            "or the record before it was removed")
                elif not self._columns_match(r):
                    problem(seq, "index", f"record {seq}{_event_id(r.event)}: its filter columns "
                            "were edited (the event itself is intact)")
                if (want_anchor and seq == want_anchor[0]) or seq == head.seq:
                    macs_at[seq] = mac
                prev, expected = mac, seq + 1
            after = rows[-1].seq
        last = expected - 1
        if head.seq > last:
            problem(last + 1, "truncated",
                    f"records {last + 1}..{head.seq} are missing: the log was truncated "
                    f"(the anchor covers {head.seq} records)")
        elif head.seq and head.seq in macs_at and not _same(macs_at[head.seq], head.mac):
            problem(head.seq, "truncated", f"record {head.seq} is not the record the anchor "
                    "names: the end of the log was replaced")
        # Records beyond the head were appended after we read it: they chained above.
        if want_anchor:
            aseq, amac = want_anchor
            got = macs_at.get(aseq)
            if aseq == 0:
                pass
            elif got is None:
                problem(aseq, "truncated", f"record {aseq} named by the given anchor is missing: "
                        "the log was truncated, rolled back or replaced")
            elif not _same(got, amac):
                problem(aseq, "anchor", f"record {aseq} differs from the given anchor: the log "
                        "was rolled back or replaced")
        return rep

    @staticmethod
    def _columns_match(r) -> bool:
        try:
            ev = json.loads(r.event)
            when = datetime.fromtimestamp(r.event_time, timezone.utc)
            want = _index_columns(ev, when)
            return (want["event_name"] == r.event_name and want["principal"] == r.principal
                    and want["key_ids"] == r.key_ids and want["error_code"] == r.error_code
                    and int(r.event_time) == int(_parse_event_time(ev["eventTime"])))
        except Exception:
            return False


def _event_id(body: str) -> str:
    try:
        return f" (eventID {json.loads(body)['eventID']})"
    except Exception:
        return ""


def _parse_anchor(text: str) -> tuple[int, bytes]:
    m = re.fullmatch(r"\s*(\d+):([0-9a-fA-F]{64})\s*", text or "")
    if not m:
        raise ValueError("an anchor is SEQ:HEX as printed by `kms audit anchor` "
                         "(a record number, a colon and 64 hex digits)")
    return int(m.group(1)), bytes.fromhex(m.group(2))

"""The audit event: one CloudTrail-shaped JSON record per request
(docs/audit-log.md, "Event").  Secrets never reach it: every blob and
sensitive member of the KMS model, grant tokens, credentials and any bytes
value are dropped, at any depth."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from .. import model
from ..errors import KMSError
from .chain import EVENT_VERSION


# ===================================================================== event shape
def _model_names() -> tuple[frozenset, frozenset]:
    """Member names that are blobs or marked sensitive, and map-typed members
    (whose keys — encryption context keys — are kept verbatim)."""
    secret: set[str] = set()
    maps: set[str] = set()
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
_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(?:[0-9a-fA-F-]{36}|mrk-[0-9a-fA-F]{32})$")
_MRK_RE = re.compile(r"^mrk-[0-9a-fA-F]{32}$")
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
    dt = dt.astimezone(UTC)
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
    elif _UUID_RE.match(ref) or _MRK_RE.match(ref):
        arn = f"arn:aws:kms:{region}:{account}:key/{ref.lower()}"
    else:
        arn = None
    if len(_ARN_MEMO) > 8192:
        _ARN_MEMO.clear()
    _ARN_MEMO[k] = arn
    return arn


def key_tokens(arn: str) -> str:
    """The ``key_ids`` index column's words for one key ARN: its key id, and for a multi-Region
    key also ``<key id>/<Region>`` (the same id names one key in each Region; GetKeyLastUsage
    and a key-ARN filter look for that Region's key only)."""
    key_id = arn.rsplit("/", 1)[-1]
    if not key_id.startswith("mrk-"):
        return key_id
    return f"{key_id} {key_id}/{arn.split(':', 4)[3]}"


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
            self._time = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
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
        ids = " ".join(key_tokens(a) for a in uniq)
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
    keys = [key_tokens(str(r["ARN"])) for r in ev.get("resources") or [] if r.get("ARN")]
    return {
        "event_time": when.timestamp(),
        "event_name": str(ev.get("eventName"))[:128],
        "principal": (ui.get("arn") or None) and str(ui["arn"])[:512],
        "key_ids": (" " + " ".join(keys) + " ")[:1024] if keys else None,
        "error_code": ev.get("errorCode"),
    }


def _parse_event_time(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()



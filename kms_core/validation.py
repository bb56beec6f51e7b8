"""Parameter validation driven by the operation table (kms_core.model).

Three layers, each mirroring a real component:

* ``check_client_side(op, params)``: exactly what botocore's client-side
  ``ParamValidator`` rejects before a request is sent (unknown parameter,
  missing required, wrong Python type, below a min length/value), raising
  ``botocore.exceptions.ParamValidationError`` with botocore's report text.
  One deliberate difference: for blob and sensitive members a wrong-typed
  value is shown as ``<redacted>`` instead of being echoed (it may be
  plaintext).
* ``check_wire_types(op, body)``: the server's view of a decoded JSON body:
  wrong JSON types or bad base64 -> SerializationException; unknown fields
  and JSON nulls are dropped, so a client built from a newer model (sending
  a member this one lacks) keeps working.  botocore never sends unknown
  members (it refuses them client-side); what AWS does with them is not
  recorded in the reference, and a server that prefers to refuse them can
  (kms_core/server/wire.py does).  Returns the params in boto3's Python form.
* ``validate(op, params)``: the service-side checks AWS makes and botocore
  does not (every max, enum, pattern, empty blob, list length, the narrower
  ranges AWS documents, e.g. ListAliases Limit 1-100, PendingWindowInDays
  7-30), raising ``KMSError("ValidationException", ...)`` with AWS's message
  form: ``1 validation error detected: Value '1025' at 'numberOfBytes' failed
  to satisfy constraint: Member must have value less than or equal to 1024``.
  Blob and sensitive values are never echoed (``Value at 'plaintext' ...``).

* ``check_params(op, params)``: the first then the last, in one pass (what
  the in-process client needs: botocore's error wins, as with boto3).

Each operation's checks are compiled on first use (``precompile()`` does all
54) into one generated predicate, ~1 us for a typical Encrypt; the
message-building slow path runs only when that predicate fails.  String
lengths are counted in code points (the Smithy rule).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from kms_core.errors import KMSError
from kms_core.model import OPERATIONS, Shape, camel, from_wire
from kms_core.model import operation as _operation

__all__ = [
    "check_client_side",
    "check_params",
    "check_wire_types",
    "client_side_report",
    "precompile",
    "validate",
    "validation_messages",
]


# ---------------------------------------------------------------------------
# Service side (AWS's messages)
# ---------------------------------------------------------------------------

def _len_ge(n): return f"Member must have length greater than or equal to {n}"
def _len_le(n): return f"Member must have length less than or equal to {n}"
def _val_ge(n): return f"Member must have value greater than or equal to {n}"
def _val_le(n): return f"Member must have value less than or equal to {n}"
def _enum(s): return f"Member must satisfy enum value set: [{', '.join(s.enum)}]"
def _pattern(s): return f"Member must satisfy regular expression pattern: {s.pattern}"


_NOT_NULL = "Member must not be null"
_NO_NUL = "Member must not contain the NUL character (U+0000)"

# Text every string member must be, on every interface (server, in-process
# client, CLI): Unicode scalar values only (a lone UTF-16 surrogate cannot be
# encoded as UTF-8: SerializationException, as for any undecodable body), and
# no NUL, which PostgreSQL cannot store in text and no KMS value needs
# (ValidationException).  ``isascii`` is O(1) in CPython, so the common case
# costs one ``in`` scan.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_ok(v: str) -> bool:
    """True if ``v`` has neither NUL nor a lone surrogate."""
    return "\x00" not in v if v.isascii() else _BAD_TEXT.search(v) is None


def has_surrogate(v: str) -> bool:
    return not v.isascii() and _SURROGATE.search(v) is not None


def not_unicode(path: str) -> KMSError:
    # Never echo the value: it cannot be printed or encoded.
    return KMSError("SerializationException",
                    f"The string at '{path or 'request'}' is not valid Unicode (a lone UTF-16 surrogate)")


# Encryption contexts are encoded with 16-bit lengths (kms_core.envelope).
MAX_CONTEXT_BYTES = 65535
_EC_SHAPE = "EncryptionContextType"
_EC_TOO_LONG = (f"Member must have at most {MAX_CONTEXT_BYTES} pairs, each key and value at most "
                f"{MAX_CONTEXT_BYTES} bytes in UTF-8")
# Java's int and long: AWS cannot read a wider number (kms_core.model.from_wire).
_INT_BITS = {"integer": 31, "long": 63}


# The model always gives list and map shapes their parts; these say so to mypy.
def _member(s: Shape) -> Shape:
    return cast(Shape, s.member)


def _key(s: Shape) -> Shape:
    return cast(Shape, s.key)


def _value(s: Shape) -> Shape:
    return cast(Shape, s.value)


def _hidden(shape: Shape) -> bool:
    """Values AWS does not echo and we must not: blobs and sensitive strings."""
    if shape.type == "blob" or shape.sensitive:
        return True
    if shape.type == "list":
        return _hidden(_member(shape))
    if shape.type == "map":
        return _hidden(_key(shape)) or _hidden(_value(shape))
    if shape.type == "structure":
        return any(_hidden(m) for m in shape.members.values())
    return False


def _java(value: Any) -> str:
    # Java's toString of the deserialized value, as AWS's messages show it.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_java(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_java(k)}={_java(v)}" for k, v in value.items()) + "}"
    return str(value)


def _msg(shape: Shape, value: Any, path: str, constraint: str) -> str:
    if _hidden(shape):
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    return f"Value '{_java(value)}' at '{path}' failed to satisfy constraint: {constraint}"


def _blob_len(v) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8"))
    if isinstance(v, memoryview):
        return v.nbytes
    return len(v)


_PY_TYPES = {"string": "a String", "blob": "a Blob", "integer": "an Integer",
             "long": "a Long", "boolean": "a Boolean", "timestamp": "a Date",
             "list": "a List", "map": "a Map", "structure": "a Structure"}


def _type_error(shape: Shape, value: Any, path: str) -> KMSError:
    # Only reachable when the engine is called directly with wrong Python
    # types (the client and server check types first).  Never echo the value.
    return KMSError("SerializationException",
                    f"{type(value).__name__} can not be converted to "
                    f"{_PY_TYPES.get(shape.type, shape.type)} (at '{path}')")


def _scalar_constraints(shape: Shape, rng: tuple | None = None) -> list[str]:
    """All constraints of a scalar shape, in AWS's listing order (max, min, pattern)."""
    out = []
    lo, hi = rng if rng else (shape.min, shape.max)
    if shape.enum:
        out.append(_enum(shape))
    if shape.type in ("integer", "long"):
        if hi is not None:
            out.append(_val_le(hi))
        if lo is not None:
            out.append(_val_ge(lo))
    else:
        if hi is not None:
            out.append(_len_le(hi))
        if lo is not None:
            out.append(_len_ge(lo))
    if shape.pattern:
        out.append(_pattern(shape))
    return out


class _Checker:
    """A compiled check for one shape: ``ok(v)`` is the fast predicate,
    ``errors(v, path, out)`` the slow path that appends AWS messages (and
    raises SerializationException on wrong Python types)."""

    __slots__ = ("errors", "ok")

    def __init__(self, ok: Callable[[Any], bool], errors: Callable[[Any, str, list], None]):
        self.ok = ok
        self.errors = errors


def _always(_v) -> bool:
    return True


def _string_checker(shape: Shape, lo, hi) -> _Checker:
    regex = shape.regex
    rx = regex.fullmatch if regex is not None else None
    enum = shape.enum_set
    lo_ = lo if lo is not None else 0
    hi_ = hi if hi is not None else float("inf")

    def ok(v, lo_=lo_, hi_=hi_, rx=rx, enum=enum):
        return (type(v) is str and lo_ <= len(v) <= hi_
                and (rx is None or rx(v) is not None)
                and (enum is None or v in enum) and text_ok(v))

    def errors(v, path, out):
        if not isinstance(v, str):
            raise _type_error(shape, v, path)
        if enum is not None and v not in enum:
            out.append(_msg(shape, v, path, _enum(shape)))
        if rx is not None and rx(v) is None:
            out.append(_msg(shape, v, path, _pattern(shape)))
        if len(v) < lo_:
            out.append(_msg(shape, v, path, _len_ge(lo)))
        elif len(v) > hi_:
            out.append(_msg(shape, v, path, _len_le(hi)))
    return _Checker(ok, errors)


def _blob_checker(shape: Shape, lo, hi) -> _Checker:
    lo_ = lo if lo is not None else 0
    hi_ = hi if hi is not None else float("inf")

    def ok(v, lo_=lo_, hi_=hi_):
        return type(v) is bytes and lo_ <= len(v) <= hi_

    def errors(v, path, out):
        if not isinstance(v, (bytes, bytearray, memoryview, str)):
            raise _type_error(shape, v, path)
        n = _blob_len(v)
        if n < lo_:
            out.append(_msg(shape, v, path, _len_ge(lo)))
        elif n > hi_:
            out.append(_msg(shape, v, path, _len_le(hi)))
    return _Checker(ok, errors)


def _integer_checker(shape: Shape, lo, hi) -> _Checker:
    lo_ = lo if lo is not None else float("-inf")
    hi_ = hi if hi is not None else float("inf")

    def ok(v, lo_=lo_, hi_=hi_):
        return type(v) is int and lo_ <= v <= hi_

    t = shape.type
    bits = _INT_BITS[t]

    def errors(v, path, out):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _type_error(shape, v, path)
        if not -(1 << bits) <= v < (1 << bits):
            # As the wire decoder says it; never str() it (4,300-digit limit).
            raise KMSError("SerializationException",
                           f"NUMBER_VALUE is out of range for {_PY_TYPES[t]} (at '{path}')")
        if v < lo_:
            out.append(_msg(shape, v, path, _val_ge(lo)))
        elif v > hi_:
            out.append(_msg(shape, v, path, _val_le(hi)))
    return _Checker(ok, errors)


def _boolean_checker(shape: Shape, lo, hi) -> _Checker:
    def ok(v):
        return type(v) is bool

    def errors(v, path, out):
        if not isinstance(v, bool):
            raise _type_error(shape, v, path)
    return _Checker(ok, errors)


def _timestamp_checker(shape: Shape, lo, hi) -> _Checker:
    def ok(v):
        return isinstance(v, datetime)

    def errors(v, path, out):
        if not isinstance(v, datetime):
            raise _type_error(shape, v, path)
    return _Checker(ok, errors)


def _any_bad(item: _Checker, v, path: str) -> bool:
    bad = False
    for i, x in enumerate(v):
        if x is None:
            bad = True
            continue
        sub: list = []
        item.errors(x, f"{path}.{i + 1}.member", sub)
        bad = bad or bool(sub)
    return bad


def _list_checker(shape: Shape, lo, hi) -> _Checker:
    m = _member(shape)
    item = _compile(m)
    item_ok = item.ok
    lo_ = lo if lo is not None else 0
    hi_ = hi if hi is not None else float("inf")
    scalar = m.type not in ("structure", "list", "map")

    def ok(v, lo_=lo_, hi_=hi_):
        if type(v) is not list and type(v) is not tuple:
            return False
        if not lo_ <= len(v) <= hi_:
            return False
        for x in v:  # noqa: SIM110 - a loop is faster than all() over a generator
            if not item_ok(x):
                return False
        return True

    def errors(v, path, out):
        if not isinstance(v, (list, tuple)):
            raise _type_error(shape, v, path)
        if len(v) < lo_:
            out.append(_msg(shape, v, path, _len_ge(lo)))
        elif len(v) > hi_:
            out.append(_msg(shape, v, path, _len_le(hi)))
        if scalar:
            # AWS reports a list of bad scalars once, listing every
            # constraint of the member shape.
            if _any_bad(item, v, path):
                inner = ", ".join(_scalar_constraints(m))
                out.append(_msg(shape, v, path, f"Member must satisfy constraint: [{inner}]"))
        else:
            for i, x in enumerate(v):
                p = f"{path}.{i + 1}.member"
                if x is None:
                    out.append(f"Value null at '{p}' failed to satisfy constraint: {_NOT_NULL}")
                else:
                    item.errors(x, p, out)
    return _Checker(ok, errors)


def _map_checker(shape: Shape, lo, hi) -> _Checker:
    kc, vc = _compile(_key(shape)), _compile(_value(shape))
    k_ok, v_ok = kc.ok, vc.ok
    context = shape.name == _EC_SHAPE

    def ok(v):
        if type(v) is not dict or (context and not _context_ok(v)):
            return False
        for k, x in v.items():  # noqa: SIM110 - a loop is faster than all() over a generator
            if not k_ok(k) or not v_ok(x):
                return False
        return True

    def errors(v, path, out):
        if not isinstance(v, dict):
            raise _type_error(shape, v, path)
        bad_k = bad_v = False
        for k, x in v.items():
            sub: list = []
            kc.errors(k, path, sub)
            bad_k = bad_k or bool(sub)
            sub = []
            if x is None:
                bad_v = True
            else:
                vc.errors(x, f"{path}.{k}", sub)
                bad_v = bad_v or bool(sub)
        if bad_k:
            inner = ", ".join(_scalar_constraints(_key(shape)))
            out.append(_msg(shape, v, path, f"Map keys must satisfy constraint: [{inner}]"))
        if bad_v:
            inner = ", ".join(_scalar_constraints(_value(shape)))
            out.append(_msg(shape, v, path, f"Map value must satisfy constraint: [{inner}]"))
    return _Checker(ok, errors)


def _structure_checker(shape: Shape, lo, hi) -> _Checker:
    checks = {n: _compile(s) for n, s in shape.members.items()}
    names = list(shape.members)
    required = shape.required

    def ok(v):
        if type(v) is not dict:
            return False
        for r in required:
            if v.get(r) is None:
                return False
        for k, x in v.items():
            c = checks.get(k)
            if c is not None and x is not None and not c.ok(x):
                return False
        return True

    def errors(v, path, out):
        if not isinstance(v, dict):
            raise _type_error(shape, v, path)
        prefix = f"{path}." if path else ""
        for n in names:
            x = v.get(n)
            p = prefix + camel(n)
            if x is None:
                if n in required:
                    out.append(f"Value null at '{p}' failed to satisfy constraint: {_NOT_NULL}")
                continue
            checks[n].errors(x, p, out)
    return _Checker(ok, errors)


_CHECKERS: dict[str, Callable[[Shape, Any, Any], _Checker]] = {
    "string": _string_checker,
    "blob": _blob_checker,
    "integer": _integer_checker,
    "long": _integer_checker,
    "boolean": _boolean_checker,
    "timestamp": _timestamp_checker,
    "list": _list_checker,
    "map": _map_checker,
    "structure": _structure_checker,
}


def _compile(shape: Shape, rng: tuple | None = None) -> _Checker:
    lo, hi = rng if rng else (shape.min, shape.max)
    build = _CHECKERS.get(shape.type)
    if build is None:
        return _Checker(_always, lambda v, path, out: None)
    return build(shape, lo, hi)


# --- generated fast predicates ---------------------------------------------
# The common case (valid input) must cost well under a microsecond per call,
# so each operation gets one generated function with its checks inlined;
# any False sends the caller to the message-building slow path above.

def _strmap(v) -> bool:
    for a, b in v.items():
        if type(a) is not str or type(b) is not str:
            return False
        if a.isascii() and b.isascii():  # the common case: no function call
            if "\x00" in a or "\x00" in b:
                return False
        elif not text_ok(a) or not text_ok(b):
            return False
    return True


def _context_ok(v: dict) -> bool:
    """``_strmap`` plus a conservative check of MAX_CONTEXT_BYTES: 16,383 code
    points are at most 65,532 bytes; longer strings go to the exact check
    (_text_problems)."""
    if len(v) > MAX_CONTEXT_BYTES:
        return False
    for a, b in v.items():
        if type(a) is not str or type(b) is not str or len(a) > 16383 or len(b) > 16383:
            return False
        if a.isascii() and b.isascii():
            if "\x00" in a or "\x00" in b:
                return False
        elif not text_ok(a) or not text_ok(b):
            return False
    return True


def _context_fits(v: dict) -> bool:
    return len(v) <= MAX_CONTEXT_BYTES and all(
        len(a.encode("utf-8")) <= MAX_CONTEXT_BYTES and len(b.encode("utf-8")) <= MAX_CONTEXT_BYTES
        for a, b in v.items() if type(a) is str and type(b) is str)


def _context_aad(v: dict) -> bool:
    """``_context_ok`` for an operation's own encryption context: only bound
    into ciphertexts, never stored, so NUL is allowed there as AWS allows it."""
    if len(v) > MAX_CONTEXT_BYTES:
        return False
    for a, b in v.items():
        if type(a) is not str or type(b) is not str or len(a) > 16383 or len(b) > 16383:
            return False
        if not (a.isascii() and b.isascii()) and (has_surrogate(a) or has_surrogate(b)):
            return False
    return True


def _text_problems(shape: Shape, v: Any, path: str, out: list[str], nul_ok: bool = False) -> None:
    """Every string of ``v`` (map keys included) must be text (see ``text_ok``;
    ``nul_ok`` for an operation's own encryption context); encryption contexts
    must fit their encoding.  Wrong types are left to the shape checks.  Raises
    SerializationException for a lone surrogate, appends a ValidationException
    message for NUL (never echoing the value)."""
    t = shape.type
    if t == "string":
        if type(v) is str and not text_ok(v):
            if has_surrogate(v):
                raise not_unicode(path)
            if not nul_ok:
                out.append(f"Value at '{path}' failed to satisfy constraint: {_NO_NUL}")
    elif t == "structure" and isinstance(v, dict):
        prefix = f"{path}." if path else ""
        for n, s in shape.members.items():
            x = v.get(n)
            if x is not None:  # top-level contexts (not grant constraints, which are stored)
                _text_problems(s, x, prefix + camel(n), out, not path and s.name == _EC_SHAPE)
    elif t == "list" and isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _text_problems(_member(shape), x, f"{path}.{i + 1}.member", out)
    elif t == "map" and isinstance(v, dict):
        before = len(out)
        for k, x in v.items():
            _text_problems(_key(shape), k, path, out, nul_ok)
            _text_problems(_value(shape), x, path, out, nul_ok)
        del out[before + 1:]  # one message per map is enough
        if len(out) == before and shape.name == _EC_SHAPE and not _context_fits(v):
            out.append(f"Value at '{path}' failed to satisfy constraint: {_EC_TOO_LONG}")


def _expr(shape: Shape, var: str, rng, env: dict) -> str:
    """A Python expression that is True only if ``var`` is valid for both
    botocore and the service (exact types, every constraint)."""
    t = shape.type
    lo, hi = rng if rng else (shape.min, shape.max)
    if t in ("string", "blob"):
        parts = [f"type({var}) is {'str' if t == 'string' else 'bytes'}"]
        if t == "string":  # text_ok inlined for ASCII, the common case
            env["_text_ok"] = text_ok
            parts.append(f"({var}.isascii() and '\\x00' not in {var} or _text_ok({var}))")
        if lo is not None and lo > 0:
            parts.append(f"len({var}) >= {lo}")
        if hi is not None:
            parts.append(f"len({var}) <= {hi}")
        if shape.enum_set is not None:
            env[f"E_{shape.name}"] = shape.enum_set
            parts.append(f"{var} in E_{shape.name}")
        if shape.regex is not None:
            env[f"R_{shape.name}"] = shape.regex.fullmatch
            parts.append(f"R_{shape.name}({var}) is not None")
        return "(" + " and ".join(parts) + ")"
    if t in ("integer", "long"):
        parts = [f"type({var}) is int"]
        if lo is not None:
            parts.append(f"{var} >= {lo}")
        if hi is not None:
            parts.append(f"{var} <= {hi}")
        return "(" + " and ".join(parts) + ")"
    if t == "boolean":
        return f"(type({var}) is bool)"
    if t == "timestamp":
        return f"(type({var}) is datetime and {var}.tzinfo is not None)"
    if (t == "map" and _key(shape).type == "string" and _value(shape).type == "string"
            and not _scalar_constraints(_key(shape)) and not _scalar_constraints(_value(shape))):
        env["_context_ok"] = _context_ok
        check = "_context_ok" if shape.name == _EC_SHAPE else "_strmap"
        return f"(type({var}) is dict and {check}({var}))"
    # Containers: the compiled service checker, plus botocore's structure rules.
    name = f"C_{len(env)}"
    env[name] = _strict(shape, rng)
    return f"{name}({var})"


def _strict(shape: Shape, rng=None):
    """Closure form of ``_expr`` for containers (rare on hot paths)."""
    t = shape.type
    svc = _compile(shape, rng).ok
    if t == "structure":
        members = shape.members
        subs = {n: _strict(s) for n, s in members.items()}
        required = shape.required

        def ok(v):
            if type(v) is not dict:
                return False
            for r in required:
                if r not in v:
                    return False
            for k, x in v.items():
                c = subs.get(k)
                if c is None or x is None or not c(x):
                    return False
            return True
        return ok
    if t == "list":
        item = _strict(_member(shape))
        return lambda v: svc(v) and all(item(x) for x in v)
    if t == "map":
        k_ok, v_ok = _strict(_key(shape)), _strict(_value(shape))
        return lambda v: svc(v) and all(k_ok(a) and v_ok(b) for a, b in v.items())
    env: dict = {"datetime": datetime, "_strmap": _strmap}
    return eval(f"lambda v: {_expr(shape, 'v', rng, env)}", env)


def _generate(op, strict: bool):
    """``strict``: None values and unknown members fail (what botocore
    rejects); otherwise they are ignored (what the service ignores)."""
    shape = op.input_shape
    env: dict = {"datetime": datetime, "_strmap": _strmap}
    lines = ["def ok(p):", "    if type(p) is not dict: return False"]
    if shape.members:
        lines.append("    for k, v in p.items():")
        lines.append("        if v is None: " + ("return False" if strict else "continue"))
        first = True
        for n, s in shape.members.items():
            kw = "if" if first else "elif"
            first = False
            if s.name == _EC_SHAPE:  # the operation's own context: see _context_aad
                env["_context_aad"] = _context_aad
                cond = "(type(v) is dict and _context_aad(v))"
            else:
                cond = _expr(s, "v", op.documented_ranges.get(n), env)
            lines.append(f"        {kw} k == {n!r}:")
            lines.append(f"            if not {cond}: return False")
        lines.append("        else: " + ("return False" if strict else "continue"))
    elif strict:
        lines.append("    if p: return False")
    for r in shape.required:
        lines.append(f"    if p.get({r!r}) is None: return False")
    lines.append("    return True")
    exec("\n".join(lines), env)
    return env["ok"]


# --- rules AWS applies after the model's constraints, with AWS's messages ---

def _gdk_rule(p: dict) -> str | None:
    if (p.get("KeySpec") is None) == (p.get("NumberOfBytes") is None):
        return "Please specify either number of bytes or key spec."
    return None


def _random_rule(p: dict) -> str | None:
    if p.get("NumberOfBytes") is None:
        return "NumberOfBytes is required."
    return None


# Key usages each KeySpec allows (reference §2.3).
_USAGES = {
    "SYMMETRIC_DEFAULT": ("ENCRYPT_DECRYPT",),
    "RSA_2048": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "RSA_3072": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "RSA_4096": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "ECC_NIST_P256": ("SIGN_VERIFY", "KEY_AGREEMENT"),
    "ECC_NIST_P384": ("SIGN_VERIFY", "KEY_AGREEMENT"),
    "ECC_NIST_P521": ("SIGN_VERIFY", "KEY_AGREEMENT"),
    "ECC_SECG_P256K1": ("SIGN_VERIFY",),
    "ECC_NIST_EDWARDS25519": ("SIGN_VERIFY",),
    "ML_DSA_44": ("SIGN_VERIFY",), "ML_DSA_65": ("SIGN_VERIFY",), "ML_DSA_87": ("SIGN_VERIFY",),
    "HMAC_224": ("GENERATE_VERIFY_MAC",), "HMAC_256": ("GENERATE_VERIFY_MAC",),
    "HMAC_384": ("GENERATE_VERIFY_MAC",), "HMAC_512": ("GENERATE_VERIFY_MAC",),
    "SM2": ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "KEY_AGREEMENT"),
}


def _create_key_rule(p: dict) -> str | None:
    spec = p.get("KeySpec") or p.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    usage = p.get("KeyUsage")
    if usage is None:
        if spec != "SYMMETRIC_DEFAULT":
            return "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."
        return None
    if usage not in _USAGES.get(spec, (usage,)):
        return f"KeyUsage {usage} is not compatible with KeySpec {spec}"
    return None


def _import_rule(p: dict) -> str | None:
    if p.get("ExpirationModel") == "KEY_MATERIAL_EXPIRES" and p.get("ValidTo") is None:
        return "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
    return None


_RULES: dict[str, Callable[[dict], str | None]] = {
    "GenerateDataKey": _gdk_rule,
    "GenerateDataKeyWithoutPlaintext": _gdk_rule,
    "GenerateRandom": _random_rule,
    "CreateKey": _create_key_rule,
    "ImportKeyMaterial": _import_rule,
}


class _OpValidator:
    """The slow path for one operation: every message, in model member order."""

    __slots__ = ("checks", "required", "shape")

    def __init__(self, op):
        shape = self.shape = op.input_shape
        # Narrower documented ranges replace the model's (e.g. Limit 1-100).
        self.checks = {n: _compile(s, op.documented_ranges.get(n)) for n, s in shape.members.items()}
        self.required = shape.required

    def messages(self, params: dict) -> list[str]:
        out: list[str] = []
        _text_problems(self.shape, params, "", out)
        for n in self.checks:
            x = params.get(n)
            if x is None:
                if n in self.required:
                    out.append(f"Value null at '{camel(n)}' failed to satisfy constraint: {_NOT_NULL}")
                continue
            self.checks[n].errors(x, camel(n), out)
        return out


_VALIDATORS: dict[str, _OpValidator] = {}


def _validator(name: str) -> _OpValidator:
    v = _VALIDATORS.get(name)
    if v is None:
        v = _VALIDATORS[name] = _OpValidator(_operation(name))
    return v


def validation_messages(operation_name: str, params: dict) -> list[str]:
    """Every model/documented-range violation, as AWS words each one."""
    return _validator(operation_name).messages(params)


def _raise(msgs: list[str]) -> None:
    n = len(msgs)
    head = "1 validation error detected: " if n == 1 else f"{n} validation errors detected: "
    raise KMSError("ValidationException", head + "; ".join(msgs))


def validate(operation: str, params: dict) -> None:
    """Service-side validation of ``params`` (boto3 Python form).

    Raises ``KMSError("ValidationException", <AWS message>)``; unknown
    members are ignored (reject them with ``check_client_side``); ``None``
    counts as absent.  UnknownOperationException for an unknown operation.
    """
    fast = _SERVER.get(operation)
    if fast is None:
        fast = _fast(operation)[0]
    if fast(params):
        _check_rule(operation, params)
        return
    _validate_slow(operation, params)


def _check_rule(operation: str, params: dict) -> None:
    """The operation's cross-member rule (e.g. exactly one of KeySpec/NumberOfBytes)."""
    rule = _RULES.get(operation)
    if rule is not None:
        msg = rule(params)
        if msg:
            raise KMSError("ValidationException", msg)


def _validate_slow(operation: str, params: dict) -> None:
    if not isinstance(params, dict):
        raise KMSError("SerializationException",
                       f"{type(params).__name__} can not be converted to a Structure (at 'request')")
    msgs = _validator(operation).messages(params)
    if msgs:
        _raise(msgs)
    _check_rule(operation, params)  # the fast path is conservative (e.g. bytearray blobs)


def check_params(operation: str, params: dict) -> None:
    """``check_client_side`` then ``validate`` in one pass (in-process client).

    Valid input costs one generated predicate; otherwise botocore's
    ParamValidationError wins over the service's ValidationException, as it
    would with boto3 (the request would never be sent).
    """
    fast = _BOTH.get(operation)
    if fast is None:
        fast = _fast(operation)[1]
    if fast(params):
        _check_rule(operation, params)
        return
    _client_slow(operation, params)
    _validate_slow(operation, params)


_SERVER: dict[str, Callable[[Any], bool]] = {}
_BOTH: dict[str, Callable[[Any], bool]] = {}


def _fast(operation: str):
    op = _operation(operation)
    _SERVER[operation] = server = _generate(op, strict=False)
    _BOTH[operation] = both = _generate(op, strict=True)
    return server, both


def check_wire_types(operation_name: str, body: Any) -> dict:
    """Server side: check a decoded JSON body's types and convert it to the
    boto3 Python form (SerializationException on wrong JSON types or bad
    base64).  Unknown fields are dropped (see the module docstring)."""
    op = _operation(operation_name)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise KMSError("SerializationException",
                       "Start of structure or map expected for the request body")
    return from_wire(cast(Any, op).input_shape, body)


# ---------------------------------------------------------------------------
# Client side (botocore's ParamValidator, report text included)
# ---------------------------------------------------------------------------

_T_STR = "<class 'str'>"
_VALID = {
    "structure": "<class 'dict'>",
    "map": "<class 'dict'>",
    "list": "<class 'list'>, <class 'tuple'>",
    "string": _T_STR,
    "integer": "<class 'int'>",
    "long": "<class 'int'>",
    "boolean": "<class 'bool'>",
    "blob": "<class 'bytes'>, <class 'bytearray'>, file-like object",
    "timestamp": "<class 'datetime.datetime'>, timestamp-string",
    "double": "<class 'float'>, <class 'decimal.Decimal'>, <class 'int'>",
    "float": "<class 'float'>, <class 'decimal.Decimal'>, <class 'int'>",
}
_PYTYPES: dict[str, type | tuple[type, ...]] = {
    "structure": dict, "map": dict, "list": (list, tuple), "string": str,
    "integer": int, "long": int, "boolean": bool,
}
# botocore checks list members in full only when the member shape has one of
# these; otherwise it only type-checks them.
_BOTO_CONSTRAINTS = ("required", "min")


def _timestamp_ok(v) -> bool:
    if isinstance(v, datetime):
        return True
    from botocore.utils import parse_to_aware_datetime  # noqa: PLC0415 - rare path, botocore is slow to import
    try:
        parse_to_aware_datetime(v)
        return True
    except (TypeError, ValueError, AttributeError):
        return False


def _show_int(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # past Python's 4,300-digit conversion limit
        return "<an integer of more than 4300 digits>"


def _boto_name(name: str) -> str:
    if not name:
        return "input"
    return name[1:] if name.startswith(".") else name


def _boto_report(shape: Shape, value: Any, name: str, out: list[str], hide: bool = False) -> None:
    """botocore.validate.ParamValidator._validate, message for message."""
    t = shape.type
    hide = hide or shape.sensitive or t == "blob"

    def invalid_type():
        shown = "<redacted>" if hide else _show_int(value) if type(value) is int else value
        out.append(f"Invalid type for parameter {_boto_name(name)}, value: {shown}, "
                   f"type: {type(value)}, valid types: {_VALID[t]}")

    if t == "blob":
        if not (isinstance(value, (bytes, bytearray, str)) or hasattr(value, "read")):
            invalid_type()
        return
    if t == "timestamp":
        if not _timestamp_ok(value):
            invalid_type()
        return
    pytype = _PYTYPES.get(t)
    if pytype is not None and not isinstance(value, pytype):
        invalid_type()
        return
    if t == "structure":
        _boto_structure(shape, value, name, out, hide)
    elif t == "string":
        if shape.min is not None and len(value) < shape.min:
            out.append(f"Invalid length for parameter {_boto_name(name)}, value: {len(value)}, "
                       f"valid min length: {shape.min}")
    elif t in ("integer", "long"):
        if shape.min is not None and value < shape.min:
            out.append(f"Invalid value for parameter {_boto_name(name)}, value: {_show_int(value)}, "
                       f"valid min value: {shape.min}")
    elif t == "list":
        _boto_list(shape, value, name, out, hide)
    elif t == "map":
        for k, v in value.items():
            _boto_report(_key(shape), k, f"{name} (key: {k})", out, hide)
            _boto_report(_value(shape), v, f"{name}.{k}", out, hide)


def _boto_structure(shape: Shape, value: dict, name: str, out: list[str], hide: bool) -> None:
    for r in shape.required:
        if r not in value:
            out.append(f'Missing required parameter in {_boto_name(name)}: "{r}"')
    members = shape.members
    known = []
    for p in value:
        if p not in members:
            out.append(f'Unknown parameter in {_boto_name(name)}: "{p}", '
                       f"must be one of: {', '.join(members)}")
        else:
            known.append(p)
    for p in known:
        _boto_report(members[p], value[p], f"{name}.{p}", out, hide)


def _boto_list(shape: Shape, value: list, name: str, out: list[str], hide: bool) -> None:
    if shape.min is not None and len(value) < shape.min:
        out.append(f"Invalid length for parameter {_boto_name(name)}, value: {len(value)}, "
                   f"valid min length: {shape.min}")
    m = _member(shape)
    if m.type in _PYTYPES and m.type not in ("structure", "map", "list") and not (
            m.required or m.min is not None):
        mt = _PYTYPES[m.type]
        for i, item in enumerate(value):
            if not isinstance(item, mt):
                shown = "<redacted>" if (hide or m.sensitive) else item
                out.append(f"Invalid type for parameter {_boto_name(f'{name}[{i}]')}, "
                           f"value: {shown}, type: {type(item)}, valid types: {_VALID[m.type]}")
        return
    for i, item in enumerate(value):
        _boto_report(m, item, f"{name}[{i}]", out, hide)


def client_side_report(operation_name: str, params: Any) -> str:
    """botocore's report text for ``params`` ('' when botocore accepts them)."""
    out: list[str] = []
    _boto_report(cast(Any, _operation(operation_name)).input_shape, params, "", out)
    return "\n".join(out)


def check_client_side(operation: str, params: dict) -> None:
    """Reject what botocore's client would, before anything is sent.

    Raises ``botocore.exceptions.ParamValidationError`` whose report is
    botocore's, line for line (blob/sensitive values shown as <redacted>).
    """
    fast = _BOTH.get(operation)
    if fast is None:
        fast = _fast(operation)[1]
    if not fast(params):
        _client_slow(operation, params)


def _client_slow(operation: str, params: Any) -> None:
    report = client_side_report(operation, params)
    if report:
        from botocore.exceptions import ParamValidationError  # noqa: PLC0415 - ~12 ms import: only on failure
        raise ParamValidationError(report=report)


def precompile() -> None:
    """Compile every operation's checks now (e.g. at server start-up) rather
    than on each operation's first call."""
    for name in OPERATIONS:
        _validator(name)
        if name not in _BOTH:
            _fast(name)

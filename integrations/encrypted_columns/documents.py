"""``EncryptedJSON``: JSON documents with per-attribute actions (encrypt and
sign, sign only, nothing), in the AWS Database Encryption SDK's terms.  Format:
docs/encrypted-column-format.md, "EncryptedJSON documents"."""
from __future__ import annotations

import base64
import binascii
import decimal
import json
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from . import codec
from . import format as fmt
from .bound import Bound, check_comparison
from .errors import DecryptionError, SignatureError, UnsupportedComparisonError, UnsupportedValueError
from .keys import DEFAULT_DOCUMENT_KEY, KEYRING

ENCRYPT_AND_SIGN = "ENCRYPT_AND_SIGN"
SIGN_ONLY = "SIGN_ONLY"
DO_NOTHING = "DO_NOTHING"
_ACTIONS = {ENCRYPT_AND_SIGN: "E", SIGN_ONLY: "S", DO_NOTHING: None}
META = "__kms__"
_JSON_ARGS: dict[str, Any] = {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":"),
                              "allow_nan": False}


def _number(x) -> bytes:
    """A JSON number as the database may hand it back: PostgreSQL's jsonb turns
    1e300 into 1000...0 and -0.0 into 0.0, so sign the value, not its spelling."""
    d = decimal.Decimal(repr(x)) if isinstance(x, float) else decimal.Decimal(x)
    sign, digit_tuple, exp = d.as_tuple()
    if not isinstance(exp, int):  # NaN, Infinity: not JSON numbers
        raise UnsupportedValueError(f"{x!r} is not a JSON number")
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return b"0"
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    return f"{'-' if sign else ''}{stripped}e{exp}".encode("ascii")


def canonical_json(value) -> bytes:
    """Unambiguous bytes of a JSON value (docs/encrypted-column-format.md)."""
    if value is None:
        return b"n"
    if value is True or value is False:
        return b"t" if value else b"f"
    if isinstance(value, (int, float)):
        n = _number(value)
        return b"#" + struct.pack(">I", len(n)) + n
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogatepass")
        return b"s" + struct.pack(">I", len(b)) + b
    if isinstance(value, (list, tuple)):
        return b"[" + struct.pack(">I", len(value)) + b"".join(canonical_json(v) for v in value)
    if isinstance(value, Mapping):
        items = sorted((k.encode("utf-8", "surrogatepass"), v) for k, v in value.items())
        return b"{" + struct.pack(">I", len(items)) + b"".join(
            struct.pack(">I", len(k)) + k + canonical_json(v) for k, v in items)
    raise UnsupportedValueError(f"a {type(value).__name__} is not a JSON value")


class EncryptedJSON(Bound, TypeDecorator):
    """A JSON document with per-attribute actions, in the AWS Database
    Encryption SDK's terms.

    ``actions={"ssn": ENCRYPT_AND_SIGN, "name": SIGN_ONLY, "note": DO_NOTHING}``;
    attributes not listed get ``default_action``.  SIGN_ONLY attributes stay
    plain JSON (queryable with the database's JSON operators) and, with the
    encrypted ones, are covered by an HMAC-SHA256 document signature stored
    under ``"__kms__"``.  Default key: the AWS managed ``alias/aws/dynamodb``.
    """

    impl = JSON
    cache_ok = True

    def __init__(self, actions: Mapping[str, str] | None = None, key_id: str | None = None, *,
                 default_action: str = ENCRYPT_AND_SIGN):
        super().__init__()
        acts = dict(actions or {})
        for name, action in [*acts.items(), ("default_action", default_action)]:
            if action not in _ACTIONS:
                raise ValueError(f"unknown action {action!r} for {name!r}; use "
                                 "ENCRYPT_AND_SIGN, SIGN_ONLY or DO_NOTHING")
        if META in acts:
            raise ValueError(f"{META!r} is reserved for the document signature")
        # A tuple of pairs: hashable for SQLAlchemy's cache key, stable for Alembic.
        self.actions = tuple(sorted(acts.items()))
        self.key_id = key_id or DEFAULT_DOCUMENT_KEY
        self.default_action = default_action
        self._actions = dict(self.actions)
        self._mode = fmt.RANDOMIZED
        self.deterministic = False

    def load_dialect_impl(self, dialect):
        # none_as_null: a None document is SQL NULL, not the JSON text 'null'.
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def action(self, name: str) -> str:
        return self._actions.get(name, self.default_action)

    class Comparator(JSON.Comparator):
        _ITEM_OPS: ClassVar[frozenset] = frozenset(
            {operators.getitem, operators.json_getitem_op, operators.json_path_getitem_op})

        def operate(self, op, *other, **kw):
            typ: Any = self.type  # an EncryptedJSON
            if op in self._ITEM_OPS:
                path = other[0] if other else None
                path = getattr(path, "value", path)  # already a bound parameter
                first = path[0] if isinstance(path, (list, tuple)) and path else path
                if isinstance(first, str) and (first == META
                                               or typ.action(first) == ENCRYPT_AND_SIGN):
                    raise UnsupportedComparisonError(
                        f"attribute {first!r} of {typ._where()} is encrypted; SQL can "
                        "only read SIGN_ONLY and DO_NOTHING attributes")
                return super().operate(op, *other, **kw)
            check_comparison(self.type, op, other)
            return super().operate(op, *other, **kw)

    comparator_factory = Comparator

    def _attr_ctx(self, name: str) -> bytes:
        return self._context_with(attribute=name)

    def _signed_bytes(self, doc: Mapping[str, Any], plan: Mapping[str, str], key_hex: str) -> bytes:
        body = {"table": self._table_name, "column": self._column_name, "key": key_hex,
                "actions": dict(sorted(plan.items())),
                "values": {n: doc[n] for n in sorted(plan)}}
        return b"kms-local encrypted-json v1\n" + canonical_json(body)

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise UnsupportedValueError(
                f"{self._where()} stores JSON objects (dict), not {type(value).__name__}")
        self._ctx()
        if META in value:
            raise UnsupportedValueError(f"attribute name {META!r} is reserved")
        key = KEYRING.write_key(dialect, self.key_id, fmt.RANDOMIZED, None)
        out: dict[str, Any] = {}
        plan: dict[str, str] = {}
        for name, v in value.items():
            if not isinstance(name, str):
                raise UnsupportedValueError("document attribute names must be strings")
            action = self.action(name)
            if action == ENCRYPT_AND_SIGN:
                blob = fmt.seal(key, fmt.RANDOMIZED, codec.encode(v, as_json=True),
                                self._attr_ctx(name))
                out[name] = base64.b64encode(blob).decode("ascii")
                plan[name] = "E"
            else:
                try:
                    json.dumps(v, **_JSON_ARGS)
                except (TypeError, ValueError):
                    raise UnsupportedValueError(
                        f"attribute {name!r} is not JSON-serializable") from None
                out[name] = v
                if action == SIGN_ONLY:
                    plan[name] = "S"
        key_hex = key.key_id.hex()
        sig = key.sign(self._signed_bytes(out, plan, key_hex))
        out[META] = {"v": 1, "key": key_hex, "actions": dict(sorted(plan.items())),
                     "sig": base64.b64encode(sig).decode("ascii")}
        return out

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, (str, bytes)):  # drivers that return JSON text
            value = json.loads(value)
        bad = SignatureError(f"a document in {self._where()} failed its signature check: "
                             "a signed attribute was altered, added or removed")
        meta = value.get(META) if isinstance(value, dict) else None
        if not isinstance(meta, dict) or meta.get("v") != 1:
            raise DecryptionError(f"a document in {self._where()} has no valid signature block")
        try:
            key_hex, plan = str(meta["key"]), dict(meta["actions"])
            sig = base64.b64decode(meta["sig"], validate=True)
            key_id = bytes.fromhex(key_hex)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise bad from None
        doc = {k: v for k, v in value.items() if k != META}
        # Every attribute this column signs must be in the signed plan, and vice versa.
        for name in doc:
            if name not in plan and self.action(name) != DO_NOTHING:
                raise bad
        if any(name not in doc or a not in ("E", "S") for name, a in plan.items()):
            raise bad
        if len(key_id) != fmt.KEY_ID_LEN:
            raise bad
        key = KEYRING.read_key(dialect, key_id)
        if not key.verify(self._signed_bytes(doc, plan, key_hex), sig):
            raise bad
        out = {}
        for name, v in doc.items():
            if plan.get(name) == "E":
                try:
                    blob = base64.b64decode(v, validate=True)
                except (TypeError, ValueError, binascii.Error):
                    raise bad from None
                out[name] = codec.decode(self._decrypt(blob, dialect, self._attr_ctx(name)))
            else:
                out[name] = v
        return out

    def _unbound_copy(self):
        return EncryptedJSON(dict(self.actions), self.key_id, default_action=self.default_action)

    def __repr__(self) -> str:
        args = [repr(dict(self.actions))]
        if self.key_id != DEFAULT_DOCUMENT_KEY:
            args.append(f"key_id={self.key_id!r}")
        if self.default_action != ENCRYPT_AND_SIGN:
            args.append(f"default_action={self.default_action!r}")
        return f"EncryptedJSON({', '.join(args)})"

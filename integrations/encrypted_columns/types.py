"""SQLAlchemy column types: ``EncryptedType`` and ``EncryptedJSON``.

Constructor arguments are identifiers only (they join SQLAlchemy's statement
cache key and Alembic's rendering).  No KMS or key-table I/O happens at import,
construction or DDL time: keys are fetched on the first value, or up front by
``warm_up()``.
"""
from __future__ import annotations

import base64
import binascii
import decimal
import itertools
import json
import operator
import struct
import time
import weakref
from typing import Any, Mapping

from sqlalchemy import JSON, LargeBinary, String, types as sa_types
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.sql import operators
from sqlalchemy.sql.base import SchemaEventTarget
from sqlalchemy.types import TypeDecorator, TypeEngine

from cryptography.exceptions import InvalidTag

from kms_core.envelope import encode_context

from . import codec
from . import format as fmt
from .errors import DecryptionError, SignatureError, UnsupportedComparisonError, \
    UnsupportedValueError, EncryptedColumnError
from .rows import RowValue, SealedValue, row_id
from .keys import (DEFAULT_DOCUMENT_KEY, DEFAULT_KEY, FORCED_KEY, KEYRING, install_listeners,
                   key_table)
from .keys import _current as _current_conn

__all__ = ["EncryptedType", "EncryptedJSON", "ENCRYPT_AND_SIGN", "SIGN_ONLY", "DO_NOTHING"]

_NULL_OK = {operators.is_, operators.is_not}
_DETERMINISTIC_OK = {operators.eq, operators.ne, operators.in_op, operators.not_in_op,
                     operators.distinct_op}


def _check_comparison(type_: "_Bound", op, other) -> None:
    if op in _NULL_OK:
        return
    if op in (operators.eq, operators.ne) and other and other[0] is None:
        return  # renders IS [NOT] NULL
    if getattr(type_, "deterministic", False) and op in _DETERMINISTIC_OK:
        return
    where = type_._where()
    if getattr(type_, "deterministic", False):
        raise UnsupportedComparisonError(
            f"{where} is deterministically encrypted: only ==, !=, in_(), not_in() and "
            f"IS NULL work on it, not {getattr(op, '__name__', op)}")
    raise UnsupportedComparisonError(
        f"{where} uses randomized encryption, so SQL cannot compare its values "
        f"({getattr(op, '__name__', op)}); only IS NULL works. Use deterministic=True "
        "for columns you look up by value.")


class _Bound(SchemaEventTarget):
    """Learns its table and column when the column joins a table."""

    _table_name: str | None = None
    _column_name: str | None = None
    _context: bytes | None = None

    _parent = None

    def _set_parent(self, parent, **kw):
        install_listeners()
        if getattr(self, "bind_to_row", False):
            from .rows import install_row_listeners
            install_row_listeners()
        if self._parent is not None and self._parent() is not parent:
            # One instance shared by two columns: give this column its own copy,
            # so each column keeps its own context (and swap detection).
            fresh = self._unbound_copy()
            parent.type = fresh
            fresh._set_parent(parent, **kw)
            return
        self._parent = weakref.ref(parent)
        parent._on_table_attach(self._attach)

    def _attach(self, column, table):
        self._table_name, self._column_name = _qualified(table), column.name
        self._context = encode_context({"table": self._table_name, "column": self._column_name})
        if table.metadata is not None:
            key_table(table.metadata)  # so create_all() and Alembic create the key table

    def _where(self) -> str:
        if self._table_name is None:
            return f"this {type(self).__name__}"
        return f"column {self._table_name}.{self._column_name}"

    def _ctx(self) -> bytes:
        if self._context is None:
            raise EncryptedColumnError(
                f"{type(self).__name__} values are bound to a table column; "
                "use the type on a Column of a Table (or a mapped_column)")
        return self._context

    def key_scope(self) -> str:
        """``table.column``: names a deterministic column's data key in the key table."""
        return f"{self._table_name}.{self._column_name}"

    def _decrypt(self, blob, dialect, context: bytes) -> bytes:
        try:
            return fmt.open_(blob, context, lambda kid: KEYRING.read_key(dialect, kid))
        except DecryptionError as err:
            if type(err) is DecryptionError or isinstance(err, SignatureError):
                raise DecryptionError(
                    f"a value in {self._where()} failed to decrypt: it was altered, copied "
                    "from another column, table or row, or was not written by this column"
                ) from None
            raise


def _qualified(table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


class EncryptedType(_Bound, TypeDecorator):
    """A column whose values are encrypted client-side under a KMS-wrapped data key.

    ``EncryptedType(String(200))`` declares what the values are; storage is
    binary on every backend.  ``key_id``: any KMS key id, alias or ARN (default
    the AWS managed ``alias/aws/rds``).  ``deterministic=True``: AES-SIV, so
    ``==``, ``in_()`` and unique indexes work (equal values are visible as
    equal).  ``encrypt_null=True``: store None encrypted instead of NULL.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, type_: TypeEngine | type | None = None, key_id: str | None = None, *,
                 deterministic: bool = False, encrypt_null: bool = False,
                 bind_to_row: bool = False):
        super().__init__()
        self.type_ = sa_types.to_instance(type_) if type_ is not None else String()
        if isinstance(self.type_, (EncryptedType, EncryptedJSON)):
            raise TypeError("EncryptedType cannot wrap another encrypted type")
        self.key_id = key_id or DEFAULT_KEY
        if not isinstance(self.key_id, str):
            raise TypeError("key_id must be a KMS key id, alias or ARN string")
        self.deterministic = bool(deterministic)
        self.encrypt_null = bool(encrypt_null)
        self._mode = fmt.DETERMINISTIC if self.deterministic else fmt.RANDOMIZED
        self._as_json = isinstance(self.type_, JSON)
        self.should_evaluate_none = self.encrypt_null
        self.bind_to_row = bool(bind_to_row)
        if self.bind_to_row and self.deterministic:
            raise ValueError("bind_to_row makes equal values differ between rows, which "
                             "defeats deterministic=True; choose one")

    @property
    def python_type(self):
        return self.type_.python_type

    def _max_len(self) -> int | None:
        length = getattr(self.type_, "length", None)
        if not length:
            return None
        factor = 4 if isinstance(self.type_, sa_types.String) else 1  # UTF-8 worst case
        return 1 + length * factor + fmt.OVERHEAD[self._mode]

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            n = self._max_len()
            # VARBINARY can be indexed (deterministic lookups, UNIQUE); BLOB cannot.
            if n is not None and n <= 3072:
                return dialect.type_descriptor(mysql.VARBINARY(n))
            return dialect.type_descriptor(mysql.LONGBLOB())
        return dialect.type_descriptor(LargeBinary())

    class Comparator(TypeDecorator.Comparator):
        def operate(self, op, *other, **kw):
            _check_comparison(self.type, op, other)
            return super().operate(op, *other, **kw)

        def reverse_operate(self, op, other, **kw):
            _check_comparison(self.type, op, (other,))
            return super().reverse_operate(op, other, **kw)

    comparator_factory = Comparator

    # The processors below are closures made once per dialect (SQLAlchemy
    # caches them per type and dialect, i.e. per engine).  Everything a value
    # needs (statement token, key, associated data, a block of nonces) sits in
    # one tuple that is replaced whole, never edited: a thread switching
    # statements can never pair one key's header with another key's cipher or
    # nonces.  Per value that leaves one AEAD call, one comparison against the
    # statement token and a next() on a pre-built nonce block.
    def bind_processor(self, dialect):
        impl_proc = self.impl_instance.bind_processor(dialect)
        encrypt = self._encryptor(dialect)
        if impl_proc is None or dialect.name in ("sqlite", "postgresql"):
            return encrypt  # both drivers take bytes as BLOB/bytea as they are
        return lambda value: impl_proc(encrypt(value))

    def result_processor(self, dialect, coltype):
        impl_proc = self.impl_instance.result_processor(dialect, coltype)
        decrypt = self._decryptor(dialect)
        if impl_proc is None:
            return decrypt
        return lambda value: decrypt(impl_proc(value))

    def _encryptor(self, dialect):
        keyring, settings = KEYRING, KEYRING.settings
        current, forced_key = _current_conn, FORCED_KEY
        mode, as_json, encrypt_null = self._mode, self._as_json, self.encrypt_null
        key_id, row_bound = self.key_id, self.bind_to_row
        randomized = mode == fmt.RANDOMIZED
        with_nonces = randomized and not row_bound  # row-bound values go through fmt.seal
        encode, repeat, length_hint = codec.encode, itertools.repeat, operator.length_hint
        fast_str = None if as_json else str  # a JSON inner type JSON-encodes str too
        # sqlite3 binds a bytearray as is, but looks up an adapter for bytes: a
        # failed attribute lookup that formats an exception per value (measured
        # at half the cost of the AES call).  Same BLOB either way.
        to_bytearray = dialect.name == "sqlite"
        stored, join = (bytearray, bytearray().join) if to_bytearray else (bytes, None)
        nonce_ = slice(fmt.HEADER_LEN, None)  # of header+nonce; made once (3.11 builds one per use)
        # (statement token, iterator of header+nonce (randomized) or of headers
        #  (deterministic), seal, associated data, cache entry or None (forced
        #  key), header, data key, own counter?, block size)
        state = (_NEVER, iter(()), None, None, None, b"", None, False, 0)

        def fill(token, seal, aad, entry, head, dk, own, size):
            # Reserve `size` uses of the key at once; their nonces are made in
            # one go: counter nonces for a key this process generated (NIST SP
            # 800-38D 8.2.1, unique by construction), else random ones from one
            # urandom call.  A block outlives neither its statement nor the key.
            nonlocal state
            if entry is not None:
                # at most 1/1024 of a key's uses per block: with small bounds
                # (tests, strict policies) blocks shrink to exact per-value counting
                cap = min(_MAX_BLOCK, settings.write_max_uses >> 10)
                size = max(1, min(size, cap, settings.write_max_uses - entry.uses))
                entry.uses += size
            if with_nonces:  # header+nonce only: bytes, no GC-tracked object per value
                items = iter(dk.counter_nonces(size, head) if own else
                             list(map(head.__add__, fmt.random_nonces(size))))
            else:
                items = repeat(stored(head), size)
            state = st = (token, items, seal, aad, entry, head, dk, own, size)
            return st

        def refresh():
            old = state
            if old[4] is not None:  # give back the unused part of the last block
                old[4].uses -= length_hint(old[1])
            ctx, token = self._ctx(), current.get()
            scope = self.key_scope() if self.deterministic else None
            forced = forced_key.get()
            if forced is not None:  # a rotation tool writing under its target key
                entry, dk = None, forced  # looked up again for every value
            else:  # the cache applies max_age and rollbacks; uses are counted in blocks
                entry = keyring.write_entry(dialect, key_id, mode, scope)
                entry.uses -= 1
                dk = entry.extra
            head = fmt.header(mode, dk.key_id)
            seal = dk._gcm.encrypt if randomized else dk._siv.encrypt
            aad = head + ctx if randomized else [head, ctx]
            # A randomized write key belongs to this process alone (made by
            # GenerateDataKey here, dropped in forked children): counter nonces.
            # Keys read from the key table (forced) get random nonces.
            own = randomized and forced is None
            return fill(token, seal, aad, entry, head, dk, own, _FIRST_BLOCK)

        def next_block(st):
            entry = st[4]
            if entry is None or entry.uses >= settings.write_max_uses:
                return refresh()  # forced key, or this key's uses are spent
            return fill(st[0], st[2], st[3], entry, st[5], st[6], st[7],
                        min(st[8] * 2, _MAX_BLOCK))

        def plaintext(value):
            if type(value) is fast_str:
                try:
                    return ("\x01" + value).encode()
                except UnicodeEncodeError:  # lone surrogates: the codec's surrogatepass
                    pass
            return encode(value, as_json)

        # The per-value paths run once per value of a bulk statement: each
        # operation they skip is measurable (benchmarks/db_bulk.py), and
        # tests/db/test_db_fastpath.py holds them equal to the codec's path.
        def process_randomized(value):
            if type(value) is fast_str:  # the common case: plaintext() inlined
                try:
                    plain = ("\x01" + value).encode()
                except UnicodeEncodeError:
                    plain = encode(value)
            elif value is None and not encrypt_null:
                return None
            else:
                plain = encode(value, as_json)
            st = state
            if st[0] is not current.get():  # a new statement: revalidate the key
                st = refresh()
            for head_nonce in st[1]:  # the block's next item (FOR_ITER, no next() call)
                break
            else:
                st = next_block(st)
                head_nonce = next(st[1])
            body = st[2](head_nonce[nonce_], plain, st[3])
            return join((head_nonce, body)) if to_bytearray else head_nonce + body

        def process_deterministic(value):
            if value is None and not encrypt_null:
                return None
            plain = plaintext(value)
            st = state
            if st[0] is not current.get():
                st = refresh()
            for head in st[1]:  # counts a use
                break
            else:
                st = next_block(st)
                head = next(st[1])
            return head + st[2](plain, st[3])

        def process_row_bound(value):
            if value is None and not encrypt_null:
                return None
            if type(value) is not RowValue or not row_bound:
                raise EncryptedColumnError(
                    f"{self._where()} is bound to its rows: write it through the ORM, or "
                    "wrap each value as bind_row(value, *primary_key)"
                    if row_bound else f"{self._where()} is not bound to rows (bind_to_row=False)")
            st = state
            if st[0] is not current.get():
                st = refresh()
            for _ in st[1]:  # counts a use
                break
            else:
                st = next_block(st)
                next(st[1])
            return fmt.seal(st[6], mode, encode(value.value, as_json), self._row_ctx(value.pk))

        if row_bound:
            return process_row_bound
        return process_randomized if randomized else process_deterministic

    def _row_ctx(self, pk) -> bytes:
        self._ctx()
        return encode_context({"table": self._table_name, "column": self._column_name,
                               "row": row_id(pk)})

    def _decryptor(self, dialect):
        keyring, settings = KEYRING, KEYRING.settings
        decode, monotonic, current = codec.decode, time.monotonic, _current_conn
        # header (version, mode, data-key id) ->
        #   (header, decrypt, associated data, randomized?, deadline)
        keys: dict = {}
        generation = -1
        # (statement token, then a `keys` value): the last value's key, so a
        # column under one data key skips the dict; replaced whole (threads).
        last = (_NEVER, b"\xff" * (fmt.HEADER_LEN + 1), None, None, True, 0.0)

        def lookup(head: bytes):
            mode = head[1] if len(head) > 1 else None
            if head[:1] != b"\x01" or mode not in fmt.OVERHEAD or len(head) < fmt.HEADER_LEN:
                raise DecryptionError(f"a value in {self._where()} is not in a known "
                                      "encrypted-column format")
            entry = keyring.read_entry(dialect, head[2:10])
            dk, ctx = entry.extra, self._ctx()
            if mode == fmt.RANDOMIZED:
                hit = (head, dk._gcm.decrypt, head + ctx, True)
            else:
                hit = (head, dk._siv.decrypt, [head, ctx], False)
            hit += (entry.created + settings.read_max_age,)
            keys[head] = hit
            return hit

        def fail():
            return DecryptionError(
                f"a value in {self._where()} failed to decrypt: it was altered, copied "
                "from another column, table or row, or was not written by this column")

        def open_row(blob: bytes, pk) -> Any:
            return decode(fmt.open_(blob, self._row_ctx(pk),
                                    lambda kid: keyring.read_entry(dialect, kid).extra))

        def process_row_bound(value):
            if value is None:
                return None
            return SealedValue(value if type(value) is bytes else bytes(value), open_row,
                               self._where())

        def switch(blob):
            nonlocal generation, last
            token = current.get()
            if token is not last[0]:  # a new statement: drop stale keys
                if generation != keyring.generation:
                    keys.clear()
                    generation = keyring.generation
                else:
                    now = monotonic()
                    for h, v in list(keys.items()):
                        if v[4] <= now:
                            keys.pop(h, None)
            head = bytes(blob[:fmt.HEADER_LEN])  # any buffer the driver returns
            hit = keys.get(head)
            if hit is None:
                hit = lookup(head)
            last = st = (token,) + hit
            return st

        # Slices and the AEAD take any buffer (bytes, bytearray, memoryview),
        # so the value is never copied first.  A slice compared with == costs
        # less than bytes.startswith (which parses an argument tuple); the
        # slice objects are made once (3.11 builds one per use).
        head_, nonce_, gcm_body, siv_body, text = (
            slice(None, fmt.HEADER_LEN), slice(fmt.HEADER_LEN, fmt.HEADER_LEN + fmt.NONCE_LEN),
            slice(fmt.HEADER_LEN + fmt.NONCE_LEN, None), slice(fmt.HEADER_LEN, None), slice(1, None))

        def process(value):
            if value is None:
                return None
            token, head, open_, aad, randomized, _ = last
            if value[head_] != head or token is not current.get():
                token, head, open_, aad, randomized, _ = switch(value)
            try:  # a truncated value fails here too (short nonce or no tag)
                if randomized:
                    plain = open_(value[nonce_], value[gcm_body], aad)
                else:
                    plain = open_(value[siv_body], aad)
            except (InvalidTag, ValueError):
                raise fail() from None
            try:
                if plain[0] == 1:  # str, the common case
                    return plain[text].decode()
            except (IndexError, UnicodeDecodeError):
                pass  # empty, or lone surrogates (or malformed): the codec decides
            return decode(plain)

        return process_row_bound if self.bind_to_row else process

    def process_bind_param(self, value, dialect):
        return self._encryptor(dialect)(value)

    def process_result_value(self, value, dialect):
        return self._decryptor(dialect)(value)

    def process_literal_param(self, value, dialect):
        raise UnsupportedComparisonError(
            f"{self._where()} cannot be rendered as a SQL literal: values are encrypted in Python")

    def _unbound_copy(self):
        return EncryptedType(self.type_, self.key_id, deterministic=self.deterministic,
                             encrypt_null=self.encrypt_null, bind_to_row=self.bind_to_row)

    def __repr__(self) -> str:
        args = [_repr_inner(self.type_)]
        if self.key_id != DEFAULT_KEY:
            args.append(f"key_id={self.key_id!r}")
        if self.deterministic:
            args.append("deterministic=True")
        if self.encrypt_null:
            args.append("encrypt_null=True")
        if self.bind_to_row:
            args.append("bind_to_row=True")
        return f"EncryptedType({', '.join(args)})"


_NEVER = object()  # a statement token no execution has
_FIRST_BLOCK, _MAX_BLOCK = 8, 1024  # uses (and nonces) reserved at a time; doubling


def _repr_inner(t: TypeEngine) -> str:
    mod = type(t).__module__
    r = repr(t)
    if mod.startswith("sqlalchemy.dialects."):
        return f"sqlalchemy.dialects.{mod.split('.')[2]}.{r}"
    if mod.startswith("sqlalchemy."):
        return f"sa.{r}"
    return f"{mod}.{r}"


# ---------------------------------------------------------------- documents
ENCRYPT_AND_SIGN = "ENCRYPT_AND_SIGN"
SIGN_ONLY = "SIGN_ONLY"
DO_NOTHING = "DO_NOTHING"
_ACTIONS = {ENCRYPT_AND_SIGN: "E", SIGN_ONLY: "S", DO_NOTHING: None}
META = "__kms__"
_JSON_ARGS = dict(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _number(x) -> bytes:
    """A JSON number as the database may hand it back: PostgreSQL's jsonb turns
    1e300 into 1000...0 and -0.0 into 0.0, so sign the value, not its spelling."""
    d = decimal.Decimal(repr(x)) if isinstance(x, float) else decimal.Decimal(x)
    sign, digits, exp = d.as_tuple()
    digits = "".join(map(str, digits)).lstrip("0")
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


class EncryptedJSON(_Bound, TypeDecorator):
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
        for name, action in list(acts.items()) + [("default_action", default_action)]:
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
        _ITEM_OPS = {operators.getitem, operators.json_getitem_op, operators.json_path_getitem_op}

        def operate(self, op, *other, **kw):
            if op in self._ITEM_OPS:
                path = other[0] if other else None
                path = getattr(path, "value", path)  # already a bound parameter
                first = path[0] if isinstance(path, (list, tuple)) and path else path
                if isinstance(first, str) and (first == META
                                               or self.type.action(first) == ENCRYPT_AND_SIGN):
                    raise UnsupportedComparisonError(
                        f"attribute {first!r} of {self.type._where()} is encrypted; SQL can "
                        "only read SIGN_ONLY and DO_NOTHING attributes")
                return super().operate(op, *other, **kw)
            _check_comparison(self.type, op, other)
            return super().operate(op, *other, **kw)

    comparator_factory = Comparator

    def _attr_ctx(self, name: str) -> bytes:
        return encode_context({"table": self._table_name, "column": self._column_name,
                               "attribute": name})

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

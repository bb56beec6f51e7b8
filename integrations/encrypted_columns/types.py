"""SQLAlchemy column types: ``EncryptedType`` (here) and ``EncryptedJSON``
(documents.py, re-exported).

Constructor arguments are identifiers only (they join SQLAlchemy's statement
cache key and Alembic's rendering).  No KMS or key-table I/O happens at import,
construction or DDL time: keys are fetched on the first value, or up front by
``warm_up()``.
"""
from __future__ import annotations

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy import types as sa_types
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

from . import format as fmt
from . import processors
from .bound import Bound, check_comparison
from .documents import DO_NOTHING, ENCRYPT_AND_SIGN, META, SIGN_ONLY, EncryptedJSON, canonical_json
from .errors import UnsupportedComparisonError
from .keys import DEFAULT_KEY
from .rows import row_id

__all__ = ["DO_NOTHING", "ENCRYPT_AND_SIGN", "META", "SIGN_ONLY", "EncryptedJSON", "EncryptedType",
           "canonical_json"]


class EncryptedType(Bound, TypeDecorator):
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
        if isinstance(self.type_, Bound):
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
            check_comparison(self.type, op, other)
            return super().operate(op, *other, **kw)

        def reverse_operate(self, op, other, **kw):
            check_comparison(self.type, op, (other,))
            return super().reverse_operate(op, other, **kw)

    comparator_factory = Comparator

    # The processors (processors.py) are closures made once per dialect:
    # SQLAlchemy caches them per type and dialect, i.e. per engine.
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
        return processors.encryptor(self, dialect)

    def _row_ctx(self, pk) -> bytes:
        return self._context_with(row=row_id(pk))

    def _decryptor(self, dialect):
        return processors.decryptor(self, dialect)

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



def _repr_inner(t: TypeEngine) -> str:
    mod = type(t).__module__
    r = repr(t)
    if mod.startswith("sqlalchemy.dialects."):
        return f"sqlalchemy.dialects.{mod.split('.')[2]}.{r}"
    if mod.startswith("sqlalchemy."):
        return f"sa.{r}"
    return f"{mod}.{r}"



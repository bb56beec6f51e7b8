"""What both encrypted types share: learning their table and column, and
refusing SQL comparisons their mode cannot answer."""
from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.sql import operators
from sqlalchemy.sql.base import SchemaEventTarget

from kms_core.envelope import encode_context

from . import format as fmt
from .errors import DecryptionError, EncryptedColumnError, SignatureError, UnsupportedComparisonError
from .keys import KEYRING, install_listeners, key_table
from .rows import install_row_listeners

_NULL_OK = {operators.is_, operators.is_not}
_DETERMINISTIC_OK = {operators.eq, operators.ne, operators.in_op, operators.not_in_op,
                     operators.distinct_op}


def check_comparison(type_: Any, op, other) -> None:
    """Raise unless SQL can answer ``op`` on this column's stored bytes."""
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


class Bound(SchemaEventTarget):
    """Learns its table and column when the column joins a table."""

    _table_name: str | None = None
    _column_name: str | None = None
    _context: bytes | None = None
    _parent: Any = None
    deterministic = False
    bind_to_row = False
    key_id: str

    # SchemaEventTarget._set_parent is private by name, but it is the hook
    # SQLAlchemy itself gives types to learn their Column (TypeDecorator and
    # SchemaType implement it, "Support SchemaEventTarget"); there is no
    # public equivalent.  tests/db/test_db_types.py covers Core tables,
    # declarative mapped_column, shared instances and Alembic reflection.
    def _set_parent(self, parent: Any, outer: bool = False, **kw: Any) -> None:
        install_listeners()
        if self.bind_to_row:
            install_row_listeners()
        if self._parent is not None and self._parent() is not parent:
            # One instance shared by two columns: give this column its own copy,
            # so each column keeps its own context (and swap detection).
            fresh = self._unbound_copy()
            parent.type = fresh
            fresh._set_parent(parent, **kw)
            return
        self._parent = weakref.ref(parent)
        if parent.table is not None:  # (Column._on_table_attach, with public API)
            self._attach(parent, parent.table)
        else:
            event.listen(parent, "after_parent_attach", self._attach)

    def _unbound_copy(self) -> Bound:
        raise NotImplementedError

    def _attach(self, column, table) -> None:
        self._table_name, self._column_name = qualified(table), column.name
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

    def _context_with(self, **extra: str) -> bytes:
        """The column's context plus ``extra`` pairs (attribute, row)."""
        self._ctx()  # raises unless the type is on a table column
        return encode_context({"table": self._table_name or "", "column": self._column_name or "",
                               **extra})

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


def qualified(table) -> str:
    """The table's name as contexts use it: ``schema.table`` when it has a schema."""
    return f"{table.schema}.{table.name}" if table.schema else table.name


"""Binding values to their row's primary key (``EncryptedType(..., bind_to_row=True)``).

Bind and result processors never see the row, so the ORM carries it: before
an INSERT/UPDATE each row-bound value is wrapped with the row's primary key
(``RowValue``), and after a load the stored value (a ``SealedValue``) is opened
with the loaded identity.  Core users wrap values with ``bind_row(value, *pk)``
and open results with ``sealed.decrypt(*pk)``.  A value copied to another row
fails to decrypt.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import exc as orm_exc

from . import codec
from .errors import DecryptionError, EncryptedColumnError


def row_id(pk) -> str:
    """Canonical text of a primary key: each part's typed encoding, in hex."""
    parts = pk if isinstance(pk, (tuple, list)) else (pk,)
    if not parts or any(p is None for p in parts):
        raise EncryptedColumnError("a row-bound value needs its row's full primary key")
    return ".".join(codec.encode(p).hex() for p in parts)


class RowValue:
    """A value on its way to a row-bound column, with the row's primary key."""

    __slots__ = ("pk", "value")

    def __init__(self, value, pk):
        self.value, self.pk = value, tuple(pk)

    def __eq__(self, other):
        return self.value == (other.value if isinstance(other, RowValue) else other)

    __hash__ = None  # type: ignore[assignment]  # == compares the wrapped value: unhashable

    def __repr__(self) -> str:
        return "RowValue(<hidden>)"


def bind_row(value, *pk) -> RowValue:
    """Core writes to a row-bound column: ``{"ssn": bind_row("123", 7)}``."""
    return RowValue(value, pk)


class SealedValue:
    """A row-bound value as read, until opened with its row's primary key."""

    __slots__ = ("_blob", "_open", "_where")

    def __init__(self, blob: bytes, opener, where: str):
        self._blob, self._open, self._where = blob, opener, where

    def decrypt(self, *pk) -> Any:
        try:
            return self._open(self._blob, tuple(pk))
        except DecryptionError:
            raise DecryptionError(
                f"a value in {self._where} failed to decrypt for this row: it was altered "
                "or copied from another row, column or table") from None

    def __repr__(self) -> str:
        return f"<SealedValue {self._where}>"


_installed = threading.Event()  # set once the listeners are in place
_lock = threading.Lock()
_by_mapper: weakref.WeakKeyDictionary[Mapper, list] = weakref.WeakKeyDictionary()


def _row_bound(mapper) -> list:
    cols = _by_mapper.get(mapper)
    if cols is None:
        cols = [(prop.key, c) for c in mapper.columns
                if getattr(c.type, "bind_to_row", False) is True  # an EncryptedType's flag
                and (prop := _property(mapper, c)) is not None]
        _by_mapper[mapper] = cols
    return cols


def _property(mapper, column):
    """The mapped attribute of ``column``, None if it is not mapped (public API,
    where mapper._columntoproperty would be private)."""
    try:
        return mapper.get_property_by_column(column)
    except orm_exc.UnmappedColumnError:
        return None


def _primary_key(mapper, target) -> tuple:
    pk = []
    for col in mapper.primary_key:
        prop = mapper.get_property_by_column(col)
        value = getattr(target, prop.key)
        if value is None and col.default is not None and not col.default.is_sequence:
            # A client-side default (uuid4, a scalar) is only applied after
            # before_insert: apply it now, since the values are bound to it.
            arg = col.default.arg
            value = arg(None) if callable(arg) else arg
            setattr(target, prop.key, value)
        if value is None:
            raise EncryptedColumnError(
                f"{mapper.class_.__name__} has row-bound encrypted columns, so its primary "
                "key must be known before INSERT (assign it, or give it a Python default); "
                "database-generated keys cannot be bound")
        pk.append(value)
    return tuple(pk)


def _wrap(mapper, connection, target):
    cols = _row_bound(mapper)
    if not cols:
        return
    pk = _primary_key(mapper, target)
    d = target.__dict__
    for key, col in cols:
        if key not in d:
            continue
        v = d[key]
        if (v is not None or col.type.encrypt_null) and not isinstance(v, RowValue):
            d[key] = RowValue(v, pk)


def _unwrap(mapper, connection, target):
    d = target.__dict__
    for key, _ in _row_bound(mapper):
        v = d.get(key)
        if isinstance(v, RowValue):
            d[key] = v.value


def _open(target, context, attrs=None):
    mapper = inspect(target).mapper
    cols = _row_bound(mapper)
    if not cols:
        return
    d = target.__dict__
    pk = None
    for key, _ in cols:
        v = d.get(key)
        if isinstance(v, SealedValue):
            if pk is None:
                pk = tuple(mapper.primary_key_from_instance(target))
            d[key] = v.decrypt(*pk)


def install_row_listeners() -> None:
    if _installed.is_set():
        return
    with _lock:
        if _installed.is_set():
            return
        for name in ("before_insert", "before_update"):
            event.listen(Mapper, name, _wrap)
        for name in ("after_insert", "after_update"):
            event.listen(Mapper, name, _unwrap)
        event.listen(Mapper, "load", _open)
        event.listen(Mapper, "refresh", _open)
        event.listen(Mapper, "refresh_flush", _open)
        _installed.set()

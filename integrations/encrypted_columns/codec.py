"""Typed plaintext encoding: one tag byte, then the value's bytes.

The tag keeps the Python type across the round trip (``Decimal('1.50')`` stays
``1.50``, ``False`` and ``0`` stay distinct, a trailing ``*`` is never
stripped).  Specified in docs/encrypted-column-format.md, section "Plaintext".
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import struct
import uuid
from typing import Any

from .errors import DecryptionError, UnsupportedValueError

NULL, STR, BYTES, INT, FLOAT, DECIMAL, BOOL, DATE, TIME, DATETIME, UUID, JSON = range(12)

_JSON_ARGS: dict[str, Any] = {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":"),
                              "allow_nan": False}


def _int_bytes(value: int) -> bytes:
    n = (value + (value < 0)).bit_length() // 8 + 1  # minimal two's complement
    return value.to_bytes(n, "big", signed=True)


def encode(value, as_json: bool = False) -> bytes:
    """Tagged bytes of ``value``; ``as_json`` forces the JSON tag (JSON columns)."""
    if value is None:
        return bytes([NULL])
    if as_json:
        try:
            return bytes([JSON]) + json.dumps(value, **_JSON_ARGS).encode("utf-8")
        except (TypeError, ValueError):
            raise UnsupportedValueError(
                f"a {type(value).__name__} value is not JSON-serializable") from None
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return bytes([BOOL, 1 if value else 0])
    if isinstance(value, str):
        return bytes([STR]) + value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes([BYTES]) + bytes(value)
    if isinstance(value, int):
        return bytes([INT]) + _int_bytes(value)
    if isinstance(value, float):
        return bytes([FLOAT]) + struct.pack(">d", value)
    if isinstance(value, decimal.Decimal):
        return bytes([DECIMAL]) + str(value).encode("ascii")
    # datetime before date: datetime is a date subclass.
    if isinstance(value, _dt.datetime):
        return bytes([DATETIME]) + value.isoformat().encode("ascii")
    if isinstance(value, _dt.date):
        return bytes([DATE]) + value.isoformat().encode("ascii")
    if isinstance(value, _dt.time):
        return bytes([TIME]) + value.isoformat().encode("ascii")
    if isinstance(value, uuid.UUID):
        return bytes([UUID]) + value.bytes
    if isinstance(value, (dict, list)):
        return encode(value, as_json=True)
    raise UnsupportedValueError(f"cannot encrypt a value of type {type(value).__name__}")


def decode(data: bytes):
    if not data:
        raise DecryptionError("empty plaintext encoding")
    tag, body = data[0], data[1:]
    try:
        if tag == NULL and not body:
            return None
        if tag == STR:
            return body.decode("utf-8", "surrogatepass")
        if tag == BYTES:
            return body
        if tag == INT and body:
            return int.from_bytes(body, "big", signed=True)
        if tag == FLOAT and len(body) == 8:
            return struct.unpack(">d", body)[0]
        if tag == DECIMAL:
            return decimal.Decimal(body.decode("ascii"))
        if tag == BOOL and body in (b"\x00", b"\x01"):
            return body == b"\x01"
        if tag == DATE:
            return _dt.date.fromisoformat(body.decode("ascii"))
        if tag == TIME:
            return _dt.time.fromisoformat(body.decode("ascii"))
        if tag == DATETIME:
            return _dt.datetime.fromisoformat(body.decode("ascii"))
        if tag == UUID and len(body) == 16:
            return uuid.UUID(bytes=body)
        if tag == JSON:
            return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, decimal.InvalidOperation):
        pass
    # Authenticated bytes we cannot parse: a newer format or a bug; never guess.
    raise DecryptionError(f"unknown or malformed plaintext encoding (tag {tag})")

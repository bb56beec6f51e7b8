"""AWS JSON 1.1 bodies <-> the engine's Python form.

The conversions themselves (base64 blobs, epoch-second timestamps, JSON type
checks with AWS's SerializationException messages) are ``kms_core.model``'s,
shared with the in-process client.  This module adds what only the wire
needs: parsing the body bytes, and refusing members the operation's input
shape does not have.  AWS itself drops unknown members, but botocore refuses
them client-side ("Unknown parameter in input"), so for every boto3 or AWS CLI
user nothing changes, while a hand-written client with a typo'd member name
gets an error instead of a silently ignored option (e.g. a misspelled
``EncryptionContext`` would otherwise encrypt without a context).
"""
from __future__ import annotations

import json
import re
from typing import Any

from kms_core import model
from kms_core.errors import KMSError
from kms_core.validation import has_surrogate


def _serialization(message: str) -> KMSError:
    return KMSError("SerializationException", message)


def _unknown_members(shape, value, path: str) -> None:
    t = shape.type
    if t == "structure" and isinstance(value, dict):
        members = shape.members
        for k, v in value.items():
            sub = members.get(k)
            where = f"{path}.{k}" if path else k
            if sub is None:
                raise _serialization(f"Unknown field '{k[:64]}' (at '{path or 'request'}'): "
                                     f"{shape.name or 'the request'} has no such member")
            if sub.type in ("structure", "list", "map"):
                _unknown_members(sub, v, where)
    elif t == "list" and isinstance(value, list) and shape.member.type in ("structure", "list", "map"):
        for i, v in enumerate(value):
            _unknown_members(shape.member, v, f"{path}[{i}]")
    elif t == "map" and isinstance(value, dict) and shape.value.type in ("structure", "list", "map"):
        for k, v in value.items():
            _unknown_members(shape.value, v, f"{path}.{k[:64]}")


def _no_duplicates(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        for k, _ in pairs:
            if k in seen:
                raise _serialization(f"Duplicate field '{k[:64]}' in a JSON object")
            seen.add(k)
    return out


def _has_surrogate(value) -> bool:
    # Iterative: the value's depth is bounded by the parser, but this costs no stack at all.
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is str:
            if has_surrogate(v):
                return True
        elif type(v) is dict:
            stack.extend(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return False


def parse(body: bytes):
    """Body bytes -> JSON value, as strictly as AWS JSON 1.1 reads them.

    UTF-8 only (no BOM, no UTF-16/32, which ``json.loads(bytes)`` would
    otherwise guess), no duplicate keys (a second ``EncryptionContext`` or
    ``KeyId`` must not be read one way here and another by a proxy), no
    ``NaN``/``Infinity``, no lone surrogate escapes, nesting bounded by the
    interpreter (a RecursionError is a SerializationException, not a crash),
    integers bounded by Python's 4,300-digit conversion limit.  Messages give
    positions only: the body may hold plaintext.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _serialization("The request body is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise _serialization("The request body starts with a byte order mark; send UTF-8 without one")
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as e:
        raise _serialization(f"The request body is not valid JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise _serialization("The request body is nested too deeply") from None
    except ValueError:  # an integer literal past Python's conversion limit, a bad constant
        raise _serialization("The request body holds a number that cannot be read") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_surrogate(value):
        raise _serialization("The request body holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)")
    return value


def _no_constant(name: str):
    raise ValueError(name)


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_request(operation: str, body: bytes) -> dict:
    """Request body -> engine params.  Raises SerializationException."""
    if not body.strip():
        return {}
    value = parse(body)
    if type(value) is dict:
        op: Any = model.operation(operation)  # Operation's attributes are set from its __slots__
        _unknown_members(op.input_shape, value, "")
    return model.decode_request(operation, value)


def encode_response(operation: str, result: dict | None) -> bytes:
    if not result:
        return b"{}"
    return json.dumps(model.encode_response(operation, result), separators=(",", ":")).encode("utf-8")


def encode_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}, separators=(",", ":")).encode("utf-8")

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

from kms_core import model
from kms_core.errors import KMSError


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


def decode_request(operation: str, body: bytes) -> dict:
    """Request body -> engine params.  Raises SerializationException."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise _serialization("The request body is not valid UTF-8") from None
    except ValueError as e:
        # Position only: the body may hold plaintext, never echo it.
        raise _serialization(f"The request body is not valid JSON ({e.msg} at character {e.pos})") from None
    if type(value) is dict:
        _unknown_members(model.operation(operation).input_shape, value, "")
    return model.decode_request(operation, value)


def encode_response(operation: str, result: dict | None) -> bytes:
    if not result:
        return b"{}"
    return json.dumps(model.encode_response(operation, result), separators=(",", ":")).encode("utf-8")


def encode_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}, separators=(",", ":")).encode("utf-8")

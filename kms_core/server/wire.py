"""AWS JSON 1.1 bodies <-> the engine's Python form, driven by the service model.

Requests: JSON object -> params with ``bytes`` for blobs (strict base64) and
aware ``datetime`` for timestamps (epoch seconds).  Anything that does not fit
the operation's input shape (malformed JSON, wrong JSON types, bad base64,
unknown members) is a SerializationException that names the member.
Responses: the inverse (bytes -> base64 text, datetime -> epoch seconds).

Shapes are compiled once per operation into small plans so the per-request
walk does no model lookups.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from functools import lru_cache

import botocore.session

from kms_core.errors import KMSError

_UTC = dt.timezone.utc


def _serialization(message: str) -> KMSError:
    return KMSError("SerializationException", message)


@lru_cache(maxsize=1)
def service_model():
    return botocore.session.get_session().get_service_model("kms")


def operation_names() -> list[str]:
    return list(service_model().operation_names)


# A plan is (kind, detail): "structure" -> (shape name, {member: plan});
# "list" -> plan; "map" -> plan of the value; scalars -> None.
def _compile(shape, memo: dict):
    kind = shape.type_name
    if kind == "structure":
        if shape.name in memo:
            return memo[shape.name]
        members: dict = {}
        plan = ("structure", (shape.name, members))
        memo[shape.name] = plan  # recursive shapes refer to the same plan
        for name, m in shape.members.items():
            members[name] = _compile(m, memo)
        return plan
    if kind == "list":
        return ("list", _compile(shape.member, memo))
    if kind == "map":
        return ("map", _compile(shape.value, memo))
    if kind in ("long", "integer"):
        kind = "integer"
    elif kind in ("double", "float"):
        kind = "float"
    return (kind, None)


@lru_cache(maxsize=None)
def _plans(operation: str):
    op = service_model().operation_model(operation)
    memo: dict = {}
    inp = _compile(op.input_shape, memo) if op.input_shape is not None else ("structure", ("Empty", {}))
    out = _compile(op.output_shape, memo) if op.output_shape is not None else None
    return inp, out


_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
              float: "number", type(None): "null"}


def _jtype(v) -> str:
    return _JSON_TYPE.get(type(v), type(v).__name__)


def _decode(plan, value, path: str):
    kind, detail = plan
    if kind == "string":
        if type(value) is not str:
            raise _serialization(f"{path} must be a string, not a JSON {_jtype(value)}.")
        return value
    if kind == "blob":
        if type(value) is not str:
            raise _serialization(f"{path} must be a base64-encoded string, not a JSON {_jtype(value)}.")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _serialization(f"{path} is not valid base64.") from None
    if kind == "integer":
        if type(value) is not int:
            raise _serialization(f"{path} must be an integer, not a JSON {_jtype(value)}.")
        return value
    if kind == "boolean":
        if type(value) is not bool:
            raise _serialization(f"{path} must be a boolean, not a JSON {_jtype(value)}.")
        return value
    if kind == "timestamp":
        if type(value) not in (int, float):
            raise _serialization(f"{path} must be a timestamp in epoch seconds, not a JSON {_jtype(value)}.")
        try:
            return dt.datetime.fromtimestamp(value, _UTC)
        except (OverflowError, OSError, ValueError):
            raise _serialization(f"{path} is not a representable timestamp.") from None
    if kind == "float":
        if type(value) not in (int, float):
            raise _serialization(f"{path} must be a number, not a JSON {_jtype(value)}.")
        return float(value)
    if kind == "structure":
        shape_name, members = detail
        if type(value) is not dict:
            raise _serialization(f"{path} must be a JSON object, not a JSON {_jtype(value)}.")
        out = {}
        for k, v in value.items():
            sub = members.get(k)
            if sub is None:
                raise _serialization(f"Unknown field '{k[:64]}' in {path}; {shape_name} has no such member.")
            if v is None:  # JSON null means "not given", as in AWS SDKs
                continue
            out[k] = _decode(sub, v, f"{path}.{k}" if path != "request" else k)
        return out
    if kind == "list":
        if type(value) is not list:
            raise _serialization(f"{path} must be a JSON array, not a JSON {_jtype(value)}.")
        return [_decode(detail, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        if type(value) is not dict:
            raise _serialization(f"{path} must be a JSON object, not a JSON {_jtype(value)}.")
        return {k: _decode(detail, v, f"{path}.{k[:64]}") for k, v in value.items()}
    raise _serialization(f"{path} has an unsupported type.")


def decode_request(operation: str, body: bytes) -> dict:
    """Request body -> engine params.  Raises SerializationException."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise _serialization("The request body is not valid UTF-8.") from None
    except ValueError as e:
        raise _serialization(f"The request body is not valid JSON ({e.msg} at position {e.pos}).") from None
    if type(value) is not dict:
        raise _serialization(f"The request body must be a JSON object, not a JSON {_jtype(value)}.")
    return _decode(_plans(operation)[0], value, "request")


def _encode(plan, value):
    if value is None:
        return None
    kind, detail = plan
    if kind == "blob":
        return base64.b64encode(value).decode("ascii")
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=_UTC)
            return value.timestamp()
        return value
    if kind == "structure":
        members = detail[1]
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            sub = members.get(k)
            out[k] = _encode(sub, v) if sub is not None else _plain(v)
        return out
    if kind == "list":
        return [_encode(detail, v) for v in value]
    if kind == "map":
        return {k: _encode(detail, v) for k, v in value.items()}
    return value


def _plain(v):
    # A member the model does not know (should not happen): encode generically.
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, dt.datetime):
        return v.timestamp()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def encode_response(operation: str, result: dict | None) -> bytes:
    out_plan = _plans(operation)[1]
    if not result or out_plan is None:
        return b"{}"
    return json.dumps(_encode(out_plan, result), separators=(",", ":")).encode("utf-8")


def encode_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}, separators=(",", ":")).encode("utf-8")

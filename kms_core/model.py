"""The operation table: one source of truth for validation, dispatch and errors.

Built from botocore's KMS service model (``botocore/data/kms/2014-11-01``),
shipped as the compact ``kms_core/data/kms-model.json`` that
``tools/gen_model.py`` generates (loading botocore's own file costs ~370 ms,
this one ~1 ms; a test checks the copy matches the installed botocore).
What the model does not say (which ops accept aliases, IAM permissions, the
key-state rules) is added here from docs/reference facts.

Public API (the engine, server, client and CLI code against exactly this):

* ``OPERATIONS: dict[str, Operation]`` keyed by AWS name (all 54 ops).
* ``SHAPES: dict[str, Shape]`` every named shape; ``shape(name)``.
* ``operation(name)`` / ``by_py_name(py)`` / ``by_cli_name(cli)``.
* ``to_wire(shape, value)`` / ``from_wire(shape, value)``: boto3 Python form
  <-> AWS JSON 1.1 form (base64 blobs, epoch-second timestamps), recursive.
* ``decode_request(op, body)`` / ``encode_response(op, result)`` for the server.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kms_core.errors import KMSError

__all__ = [
    "ALIAS_OPERATIONS",
    "KEY_STATE_RULES",
    "METADATA",
    "OPERATIONS",
    "SHAPES",
    "SOURCE",
    "Operation",
    "Shape",
    "by_cli_name",
    "by_py_name",
    "camel",
    "coerce_input",
    "decode_request",
    "encode_response",
    "from_wire",
    "operation",
    "shape",
    "to_wire",
]

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "kms-model.json")


class Shape:
    """A light botocore shape: type plus the constraints AWS validates.

    ``members`` (structure) maps member name -> Shape; ``member`` (list),
    ``key``/``value`` (map) are Shapes; ``min``/``max`` are lengths for
    strings, blobs and lists and values for integers.
    """

    __slots__ = (
        "_regex",
        "enum",
        "enum_set",
        "exception",
        "key",
        "max",
        "member",
        "members",
        "min",
        "name",
        "pattern",
        "required",
        "sensitive",
        "type",
        "value",
    )

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.type: str = spec["type"]
        self.required: tuple[str, ...] = tuple(spec.get("required", ()))
        self.min: int | None = spec.get("min")
        self.max: int | None = spec.get("max")
        self.enum: tuple[str, ...] | None = tuple(spec["enum"]) if "enum" in spec else None
        self.enum_set = frozenset(self.enum) if self.enum else None
        self.pattern: str | None = spec.get("pattern")
        self.sensitive: bool = bool(spec.get("sensitive"))
        self.exception: bool = bool(spec.get("exception"))
        self.members: dict[str, Shape] = {}
        self.member: Shape | None = None
        self.key: Shape | None = None
        self.value: Shape | None = None
        self._regex: re.Pattern[str] | None = None

    @property
    def regex(self) -> re.Pattern[str] | None:
        """Compiled ``pattern``, anchored (AWS matches the whole value, Java
        semantics: ``\\w``, ``\\d``, ``\\s`` are ASCII-only)."""
        if self._regex is None and self.pattern is not None:
            self._regex = re.compile(self.pattern, re.ASCII)
        return self._regex

    def __repr__(self) -> str:
        return f"Shape({self.name!r}, {self.type!r})"


@dataclass(frozen=True, slots=True)
class KeyRequirement:
    """Which keys an operation accepts; ``None`` accepts any.

    A key whose KeyUsage is not listed gets InvalidKeyUsageException; a KeySpec not listed
    gets ``spec_error``; an Origin not listed gets UnsupportedOperationException."""

    key_usages: tuple[str, ...] | None = None
    key_specs: tuple[str, ...] | None = None
    origins: tuple[str, ...] | None = None
    spec_error: str = "UnsupportedOperationException"


ANY_KEY = KeyRequirement()


class Operation:
    """One KMS operation and everything the project derives from it."""

    __slots__ = ("alias_ok", "aws_managed_ok", "blob_members", "cli_name",
                 "creates_managed_key", "documented_ranges", "errors", "handler",
                 "input_shape", "key_members", "key_policy", "key_state_rule", "name",
                 "output_shape", "paginated", "paginator", "permission", "py_name",
                 "requirement", "summary", "timestamp_members")

    name: str
    py_name: str
    cli_name: str
    input_shape: Shape
    output_shape: Shape
    errors: tuple[str, ...]
    alias_ok: bool                        # its key members accept alias names and alias ARNs
    key_members: tuple[str, ...]
    permission: tuple[str, ...]           # the IAM / key-policy actions it needs
    key_policy: bool                      # False: IAM-only (no key policy or grant applies)
    key_state_rule: str | None            # a KEY_STATE_RULES name; None: names no key
    requirement: KeyRequirement           # which keys it accepts (KeyUsage, KeySpec, Origin)
    aws_managed_ok: bool                  # False: an AWS-managed key's policy never allows it
    creates_managed_key: bool             # naming alias/aws/<service> creates that key
    handler: str | None                   # module of kms_core.engine.handlers serving it
    paginated: bool
    paginator: dict[str, Any] | None
    blob_members: tuple[str, ...]
    timestamp_members: tuple[str, ...]
    summary: str
    documented_ranges: dict[str, tuple[int, int]]

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])

    def __repr__(self) -> str:
        return f"Operation({self.name!r})"


# --- facts the model does not carry (reference kms-api.md §2.1, §2.2, §5.1) ---

# Operations whose key-identifying members accept an alias name or alias ARN.
# The model's KeyId docs say so for all of these except GenerateMac/VerifyMac,
# which the Developer Guide lists among alias-accepting crypto operations.
ALIAS_OPERATIONS = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "DescribeKey", "GetPublicKey",
    "Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
})

# IAM actions that differ from "kms:<Operation>".
_PERMISSIONS = {"ReEncrypt": ("kms:ReEncryptFrom", "kms:ReEncryptTo")}

# IAM-only operations: no key policy or grant applies (reference §5.1).  RetireGrant has
# its own rule (the grant's retiring principal, its grantee, the account).
_NOT_KEY_POLICY = frozenset({"CreateKey", "ListKeys", "ListAliases", "GenerateRandom",
                             "ListRetirableGrants", "RetireGrant"})

# Which keys each operation accepts (reference §2.3 and each operation's docs).
SYMMETRIC_SPECS = ("SYMMETRIC_DEFAULT",)
ASYMMETRIC_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
                    "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519",
                    "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "SM2")
_ENCRYPT = KeyRequirement(key_usages=("ENCRYPT_DECRYPT",))
_DATA_KEY = KeyRequirement(key_usages=("ENCRYPT_DECRYPT",), key_specs=SYMMETRIC_SPECS,
                           spec_error="InvalidKeyUsageException")
_ROTATION = KeyRequirement(key_specs=SYMMETRIC_SPECS, origins=("AWS_KMS", "AWS_CLOUDHSM"))
_REQUIREMENTS: dict[str, KeyRequirement] = {
    "Encrypt": _ENCRYPT, "Decrypt": _ENCRYPT, "ReEncrypt": _ENCRYPT,
    "GenerateDataKey": _DATA_KEY, "GenerateDataKeyWithoutPlaintext": _DATA_KEY,
    "GenerateDataKeyPair": _DATA_KEY, "GenerateDataKeyPairWithoutPlaintext": _DATA_KEY,
    "Sign": KeyRequirement(key_usages=("SIGN_VERIFY",)),
    "Verify": KeyRequirement(key_usages=("SIGN_VERIFY",)),
    "GenerateMac": KeyRequirement(key_usages=("GENERATE_VERIFY_MAC",)),
    "VerifyMac": KeyRequirement(key_usages=("GENERATE_VERIFY_MAC",)),
    "DeriveSharedSecret": KeyRequirement(key_usages=("KEY_AGREEMENT",)),
    "GetPublicKey": KeyRequirement(key_specs=ASYMMETRIC_SPECS),
    "EnableKeyRotation": _ROTATION, "DisableKeyRotation": _ROTATION,
    "GetKeyRotationStatus": KeyRequirement(origins=("AWS_KMS", "AWS_CLOUDHSM")),
    "RotateKeyOnDemand": KeyRequirement(key_specs=SYMMETRIC_SPECS),
    "ListKeyRotations": KeyRequirement(key_specs=SYMMETRIC_SPECS),
    "GetParametersForImport": KeyRequirement(origins=("EXTERNAL",)),
    "ImportKeyMaterial": KeyRequirement(origins=("EXTERNAL",)),
    "DeleteImportedKeyMaterial": KeyRequirement(origins=("EXTERNAL",)),
}

# Administrative operations an AWS-managed key's policy never allows (its keys are
# managed by AWS: no aliases, no policy changes, no state changes).
_NOT_FOR_AWS_MANAGED = frozenset({
    "DisableKey", "EnableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "UpdateKeyDescription",
    "TagResource", "UntagResource", "EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand",
    "CreateAlias", "UpdateAlias", "PutKeyPolicy", "ImportKeyMaterial", "DeleteImportedKeyMaterial"})

# Operations that create the predefined AWS-managed key when they name alias/aws/<service>.
_CREATES_MANAGED = frozenset({"Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                              "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
                              "DescribeKey", "ReEncrypt"})

# Where the engine serves each operation: a module of kms_core.engine.handlers holding a
# function named after the operation's Python name (``encrypt``).  Absent: not served.
_HANDLERS: dict[str, str] = {
    **dict.fromkeys(("CreateKey", "DescribeKey", "ListKeys", "UpdateKeyDescription", "EnableKey",
                     "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "GetKeyLastUsage"),
                    "lifecycle"),
    **dict.fromkeys(("CreateAlias", "UpdateAlias", "DeleteAlias", "ListAliases"), "aliases"),
    **dict.fromkeys(("Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
                     "GenerateDataKeyWithoutPlaintext", "GenerateRandom"), "crypto"),
    **dict.fromkeys(("EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus",
                     "RotateKeyOnDemand", "ListKeyRotations"), "rotation"),
    **dict.fromkeys(("TagResource", "UntagResource", "ListResourceTags", "GetKeyPolicy",
                     "ListKeyPolicies", "PutKeyPolicy"), "tags_policies"),
    **dict.fromkeys(("CreateGrant", "ListGrants", "ListRetirableGrants", "RetireGrant",
                     "RevokeGrant"), "grants"),
    **dict.fromkeys(("GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"),
                    "imports"),
    **dict.fromkeys(("Sign", "Verify", "GetPublicKey"), "signing"),
    **dict.fromkeys(("GenerateMac", "VerifyMac"), "macs"),
    "DeriveSharedSecret": "agreement",
    **dict.fromkeys(("GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"), "keypairs"),
    **dict.fromkeys(("ReplicateKey", "UpdatePrimaryRegion"), "multiregion"),
}

# Key-state rules (reference §2.2, AWS's key-state table).  For each rule: state -> (error
# code, message template with {arn}); states not listed are allowed.  The messages for
# Disabled, PendingImport and PendingDeletion are AWS-recorded; those for Creating/Updating/
# Unavailable are not.  PendingReplicaDeletion (a multi-Region primary waiting for its
# replicas' deletion) follows PendingDeletion everywhere, CancelKeyDeletion included.
# Creating is what ReplicateKey's response shows; no stored key is ever Creating (the
# replica is written whole), the rules are here so that the table is complete.
_PD = ("KMSInvalidStateException", "{arn} is pending deletion.")
_PI = ("KMSInvalidStateException", "{arn} is pending import.")
_CR = ("KMSInvalidStateException", "{arn} is creating.")
_UNUSABLE = {
    "Disabled": ("DisabledException", "{arn} is disabled."),
    "PendingImport": _PI,
    "PendingDeletion": _PD,
    "PendingReplicaDeletion": _PD,
    "Creating": ("KMSInvalidStateException", "{arn} is creating."),
    "Updating": ("KMSInvalidStateException", "{arn} is updating."),
    "Unavailable": ("KeyUnavailableException", "{arn} is unavailable."),
}
KEY_STATE_RULES: dict[str, dict[str, tuple[str, str]]] = {
    # Encrypt/Decrypt/ReEncrypt/GDK*/Sign/Verify/GetPublicKey/CreateGrant/Mac/ECDH
    "usable": _UNUSABLE,
    # DescribeKey, Get/PutKeyPolicy, List*, RetireGrant, RevokeGrant, DeleteAlias
    "any": {},
    # CreateAlias, UpdateKeyDescription, Tag/UntagResource, ScheduleKeyDeletion
    "not_pending_deletion": {"PendingDeletion": _PD, "PendingReplicaDeletion": _PD, "Creating": _CR},
    # EnableKey / DisableKey
    "enable_disable": {"PendingImport": _PI, "PendingDeletion": _PD,
                       "PendingReplicaDeletion": _PD, "Creating": _CR},
    # CancelKeyDeletion: only a key pending deletion
    "pending_deletion_only": dict.fromkeys(
        ("Enabled", "Disabled", "PendingImport", "Creating", "Updating", "Unavailable"),
        ("KMSInvalidStateException", "{arn} is not pending deletion.")),
    # Enable/DisableKeyRotation, RotateKeyOnDemand
    "rotation": {"Disabled": ("DisabledException", "{arn} is disabled."),
                 "PendingImport": _PI, "PendingDeletion": _PD,
                 "PendingReplicaDeletion": _PD, "Creating": _CR},
    # GetParametersForImport / ImportKeyMaterial (DeleteImportedKeyMaterial: any state)
    "import": {"PendingDeletion": _PD, "PendingReplicaDeletion": _PD, "Creating": _CR},
}
_STATE_RULE_OF = {
    **dict.fromkeys((
        "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey",
        "CreateGrant", "GenerateMac", "VerifyMac", "DeriveSharedSecret"), "usable"),
    **dict.fromkeys((
        "CreateAlias", "UpdateKeyDescription", "TagResource", "UntagResource", "ScheduleKeyDeletion",
        "ReplicateKey"), "not_pending_deletion"),
    # "Both the primary key and the replica key must be in the Enabled key state" (AWS).
    "UpdatePrimaryRegion": "usable",
    "EnableKey": "enable_disable", "DisableKey": "enable_disable",
    "CancelKeyDeletion": "pending_deletion_only",
    "EnableKeyRotation": "rotation", "DisableKeyRotation": "rotation",
    "RotateKeyOnDemand": "rotation",
    "GetParametersForImport": "import", "ImportKeyMaterial": "import",
    "UpdateAlias": "not_pending_deletion",  # the new target; the old one may be in any state
}


def camel(name: str) -> str:
    """AWS's member path form in validation messages: ``NumberOfBytes`` -> ``numberOfBytes``."""
    return name[:1].lower() + name[1:]


def _load():
    with open(_DATA, encoding="utf-8") as f:
        raw = json.load(f)
    shapes = {n: Shape(n, s) for n, s in raw["shapes"].items()}
    for n, s in raw["shapes"].items():
        sh = shapes[n]
        if "members" in s:
            sh.members = {m: shapes[t] for m, t in s["members"].items()}
        if "member" in s:
            sh.member = shapes[s["member"]]
        if "key" in s:
            sh.key, sh.value = shapes[s["key"]], shapes[s["value"]]
    empty = Shape("", {"type": "structure"})
    ops = {}
    for name, o in raw["operations"].items():
        ins = shapes[o["input"]] if o["input"] else empty
        outs = shapes[o["output"]] if o["output"] else empty
        key_members = tuple(m for m, s in ins.members.items() if s.name == "KeyIdType")
        alias_ok = name in ALIAS_OPERATIONS
        ops[name] = Operation(
            name=name, py_name=o["py_name"], cli_name=o["cli_name"],
            input_shape=ins, output_shape=outs, errors=tuple(o["errors"]),
            alias_ok=alias_ok,
            key_members=key_members,
            permission=_PERMISSIONS.get(name, (f"kms:{name}",)),
            paginated="paginator" in o, paginator=o.get("paginator"),
            blob_members=tuple(m for m, s in ins.members.items() if s.type == "blob"),
            timestamp_members=tuple(m for m, s in ins.members.items() if s.type == "timestamp"),
            summary=o.get("summary", ""),
            documented_ranges={m: tuple(r) for m, r in o.get("documented_ranges", {}).items()},
            key_state_rule=_STATE_RULE_OF.get(name, "any" if key_members else None),
            key_policy=name not in _NOT_KEY_POLICY,
            requirement=_REQUIREMENTS.get(name, ANY_KEY),
            aws_managed_ok=name not in _NOT_FOR_AWS_MANAGED,
            creates_managed_key=name in _CREATES_MANAGED,
            handler=_HANDLERS.get(name),
        )
    return raw["metadata"], raw["source"], shapes, ops


METADATA, SOURCE, SHAPES, OPERATIONS = _load()
_BY_PY = {o.py_name: o for o in OPERATIONS.values()}
_BY_CLI = {o.cli_name: o for o in OPERATIONS.values()}


def operation(name: str) -> Operation:
    """The operation by AWS name; UnknownOperationException otherwise."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KMSError("UnknownOperationException", "") from None


def shape(name: str) -> Shape:
    return SHAPES[name]


def by_py_name(py_name: str) -> Operation | None:
    return _BY_PY.get(py_name)


def by_cli_name(cli_name: str) -> Operation | None:
    return _BY_CLI.get(cli_name)


# --- wire conversion (AWS JSON 1.1 <-> boto3 Python form) ---

def _ser(message: str) -> KMSError:
    return KMSError("SerializationException", message)


def _json_kind(value: Any) -> str:
    # Names in the style of AWS's Coral JSON deserializer messages.
    if isinstance(value, bool):
        return "TRUE_VALUE" if value else "FALSE_VALUE"
    if isinstance(value, (int, float)):
        return "NUMBER_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, dict):
        return "START_OBJECT"
    return type(value).__name__


_TARGET = {"string": "a String", "integer": "an Integer", "long": "a Long",
           "boolean": "a Boolean", "blob": "a Blob", "timestamp": "a Date",
           "structure": "a Structure", "list": "a List", "map": "a Map",
           "double": "a Double", "float": "a Float"}


def _mismatch(shape: Shape, value: Any, path: str) -> KMSError:
    return _ser(f"{_json_kind(value)} can not be converted to {_TARGET.get(shape.type, shape.type)}"
                f" (at '{path or 'request'}')")


def _structure_members(shape: Shape, value: Any, path: str, convert: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _mismatch(shape, value, path)
    out = {}
    members = shape.members
    for k, v in value.items():
        sub = members.get(k)
        if sub is None or v is None:
            continue
        out[k] = convert(sub, v, f"{path}.{k}" if path else k)
    return out


def _null_member(shape: Shape, path: str) -> KMSError:
    return _ser(f"null can not be converted to {_TARGET.get(shape.type, shape.type)} (at '{path}')")


def _from_structure(shape: Shape, value: Any, path: str) -> Any:
    return _structure_members(shape, value, path, from_wire)


def _from_string(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        raise _mismatch(shape, value, path)
    return value


def _from_blob(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        raise _mismatch(shape, value, path)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # Never echo the value: it may be (part of) plaintext or a secret.
        raise _ser(f"Base64 encoded blob is invalid (at '{path}')") from None


def _from_integer(shape: Shape, value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _mismatch(shape, value, path)
    if isinstance(value, float):
        if not value.is_integer():
            raise _ser(f"NUMBER_VALUE {value!r} can not be converted to an Integer (at '{path}')")
        value = int(value)
    # AWS deserializes into Java int/long: anything wider cannot be read.
    bits = 31 if shape.type == "integer" else 63
    if not -(1 << bits) <= value < (1 << bits):
        raise _ser(f"NUMBER_VALUE is out of range for {_TARGET[shape.type]} (at '{path}')")
    return value


def _from_boolean(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, bool):
        raise _mismatch(shape, value, path)
    return value


def _from_timestamp(shape: Shape, value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _mismatch(shape, value, path)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _ser(f"NUMBER_VALUE is not a valid timestamp (at '{path}')") from None


def _from_list(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, list):
        raise _mismatch(shape, value, path)
    m = shape.member
    assert m is not None  # every list shape has a member shape
    out = []
    for i, v in enumerate(value):
        if v is None:
            raise _null_member(m, f"{path}[{i}]")
        out.append(from_wire(m, v, f"{path}[{i}]"))
    return out


def _from_map(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _mismatch(shape, value, path)
    vs = shape.value
    assert vs is not None  # every map shape has a value shape
    out = {}
    for k, v in value.items():
        if v is None:
            raise _null_member(vs, f"{path}.{k}")
        out[k] = from_wire(vs, v, f"{path}.{k}")
    return out


def _from_double(shape: Shape, value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _mismatch(shape, value, path)
    return float(value)


_FROM_WIRE = {"structure": _from_structure, "string": _from_string, "blob": _from_blob,
              "integer": _from_integer, "long": _from_integer, "boolean": _from_boolean,
              "timestamp": _from_timestamp, "list": _from_list, "map": _from_map,
              "double": _from_double, "float": _from_double}


def from_wire(shape: Shape, value: Any, path: str = "") -> Any:
    """Decoded JSON -> boto3 Python form (bytes for blobs, aware datetimes).

    Wrong JSON types and bad base64 raise SerializationException.  JSON
    ``null`` members are treated as absent and unknown structure members are
    dropped, so a client built from a newer model still works (callers that
    want to refuse unknown members check them first).
    """
    convert = _FROM_WIRE.get(shape.type)
    if convert is None:
        raise _ser(f"unsupported shape type {shape.type} (at '{path}')")
    return convert(shape, value, path)


def _epoch(dt: datetime) -> float | int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    # AWS sends epoch seconds with millisecond fractions; whole seconds as ints.
    ts = round(ts, 3)
    return int(ts) if ts.is_integer() else ts


def _to_structure(shape: Shape, value: Any, path: str) -> Any:
    return _structure_members(shape, value, path, to_wire)


def _to_blob(shape: Shape, value: Any, path: str) -> Any:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _ser(f"{type(value).__name__} can not be converted to a Blob (at '{path}')")
    return base64.b64encode(value).decode("ascii")


def _to_timestamp(shape: Shape, value: Any, path: str) -> Any:
    if isinstance(value, datetime):
        return _epoch(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise _ser(f"{type(value).__name__} can not be converted to a Date (at '{path}')")


def _to_checked(kind: type, target: str) -> Any:
    """A converter that passes values of ``kind`` through (bool is no int here)."""
    def convert(shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise _ser(f"{type(value).__name__} can not be converted to {target} (at '{path}')")
        return value
    return convert


def _to_list(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _ser(f"{type(value).__name__} can not be converted to a List (at '{path}')")
    m = shape.member
    assert m is not None  # every list shape has a member shape
    return [to_wire(m, v, f"{path}[{i}]") for i, v in enumerate(value)]


def _to_map(shape: Shape, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _ser(f"{type(value).__name__} can not be converted to a Map (at '{path}')")
    vs = shape.value
    assert vs is not None  # every map shape has a value shape
    return {k: to_wire(vs, v, f"{path}.{k}") for k, v in value.items()}


def _to_double(shape: Shape, value: Any, path: str) -> Any:
    return float(value)


_TO_WIRE = {"structure": _to_structure, "blob": _to_blob, "timestamp": _to_timestamp,
            "string": _to_checked(str, "a String"), "integer": _to_checked(int, "an Integer"),
            "long": _to_checked(int, "an Integer"), "boolean": _to_checked(bool, "a Boolean"),
            "list": _to_list, "map": _to_map, "double": _to_double, "float": _to_double}


def to_wire(shape: Shape, value: Any, path: str = "") -> Any:
    """boto3 Python form -> JSON-ready value (base64 strings, epoch seconds).

    Members the shape does not know (e.g. ``ResponseMetadata``) and ``None``
    values are dropped.  Wrong Python types raise SerializationException.
    """
    convert = _TO_WIRE.get(shape.type)
    if convert is None:
        raise _ser(f"unsupported shape type {shape.type} (at '{path}')")
    return convert(shape, value, path)


def decode_request(operation_name: str, body: Any) -> dict:
    """Server side: decoded JSON body -> engine params (see ``from_wire``)."""
    op = operation(operation_name)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _ser(f"{_json_kind(body)} can not be converted to a Structure (at 'request')")
    return from_wire(op.input_shape, body)


def encode_response(operation_name: str, result: dict | None) -> dict:
    """Server side: engine result -> JSON-ready dict (see ``to_wire``)."""
    if not result:
        return {}
    return to_wire(operation(operation_name).output_shape, result)


def coerce_input(operation_name: str, params: dict) -> dict:
    """In-process client: what botocore's serializer would do to the params.

    botocore accepts ``str`` (encoded UTF-8) and file-like objects for blobs
    and datetimes or timestamp strings/epochs for timestamps; the engine only
    sees bytes and aware datetimes.  Returns ``params`` itself when nothing
    needs converting (the common case, kept allocation-free).
    """
    op = OPERATIONS[operation_name]
    out = None
    for name in op.blob_members:
        v = params.get(name)
        if v is None or type(v) is bytes:
            continue
        if isinstance(v, str):
            v = v.encode("utf-8")
        elif isinstance(v, (bytearray, memoryview)):
            v = bytes(v)
        elif hasattr(v, "read"):
            v = v.read()
            if isinstance(v, str):
                v = v.encode("utf-8")
        else:
            continue
        if out is None:
            out = dict(params)
        out[name] = v
    for name in op.timestamp_members:
        v = params.get(name)
        if v is None or (isinstance(v, datetime) and v.tzinfo is not None):
            continue
        from botocore.utils import parse_to_aware_datetime  # noqa: PLC0415 - rare path; botocore is a cold-start cost
        try:
            v = parse_to_aware_datetime(v)
        except (TypeError, ValueError, AttributeError):
            continue
        if out is None:
            out = dict(params)
        out[name] = v
    return params if out is None else out

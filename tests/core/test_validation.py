"""Parameter validation (kms_core.validation).

* every limit of every operation, generated from the operation table, with
  AWS's message form (reference kms-api.md §1.12-1.14);
* the AWS-recorded messages quoted in the reference, verbatim;
* check_client_side agrees with botocore's real ParamValidator (hypothesis);
* no message ever contains a blob's bytes (hypothesis).
"""
from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core import model, validation
from kms_core.errors import KMSError
from kms_core.model import OPERATIONS, camel
from kms_core.validation import check_client_side, check_params, check_wire_types, validate

SVC = botocore.session.get_session().get_service_model("kms")
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime(2026, 11, 28, tzinfo=UTC)

# A valid value for each patterned string shape, and a character that can be
# appended to it without leaving the pattern (None: the pattern fixes the form).
PATTERN_SAMPLES = {
    "AccountIdType": ("111122223333", None),
    "AliasNameType": ("alias/x", "a"),
    "BackingKeyIdResponseType": ("ab", "a"),
    "BackingKeyIdType": ("a" * 64, None),
    "CloudHsmClusterIdType": ("cluster-234567abcde", "a"),
    "GrantNameType": ("g", "g"),
    "KeyMaterialDescriptionType": ("d", "d"),
    "MarkerType": ("m", "m"),
    "PolicyNameType": ("default", "a"),
    "PolicyType": ("{}", " "),
    "PrincipalIdType": ("p", "p"),
    "RegionType": ("us-east-1", None),
    "XksKeyIdType": ("k", "k"),
    "XksProxyAuthenticationAccessKeyIdType": ("A" * 20, "A"),
    "XksProxyAuthenticationRawSecretAccessKeyType": ("a" * 43, "a"),
    "XksProxyUriEndpointType": ("https://x.example", "a"),
    "XksProxyUriPathType": ("/kms/xks/v1", None),
    "XksProxyVpcEndpointServiceNameType": ("com.amazonaws.vpce.us-east-1.vpce-svc-0abc", "a"),
}
# Values the service-side rules need on top of the required members.
EXTRAS = {"GenerateDataKey": {"NumberOfBytes": 32},
          "GenerateDataKeyWithoutPlaintext": {"NumberOfBytes": 32},
          "GenerateRandom": {"NumberOfBytes": 1}}


def valid(shape, rng=None):
    t = shape.type
    lo = (rng or (shape.min, shape.max))[0]
    if t == "string":
        if shape.enum:
            return shape.enum[0]
        if shape.pattern:
            return PATTERN_SAMPLES[shape.name][0]
        return "a" * max(lo or 0, 1)
    if t == "blob":
        return b"\x01" * max(lo or 0, 1)
    if t in ("integer", "long"):
        return lo if lo is not None else 1
    if t == "boolean":
        return False
    if t == "timestamp":
        return NOW
    if t == "list":
        return [valid(shape.member)] * (lo or 0)
    if t == "map":
        return {}
    if t == "structure":
        return {r: valid(shape.members[r]) for r in shape.required}
    raise AssertionError(t)


def baseline(op_name):
    op = OPERATIONS[op_name]
    p = {r: valid(op.input_shape.members[r], op.documented_ranges.get(r)) for r in op.input_shape.required}
    p.update(EXTRAS.get(op_name, {}))
    return p


def hidden(shape):
    return shape.type == "blob" or shape.sensitive


def java(v):
    if isinstance(v, list):
        return "[" + ", ".join(java(x) for x in v) + "]"
    return str(v)


def msg(shape, value, path, constraint):
    if hidden(shape):
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    return f"Value '{java(value)}' at '{path}' failed to satisfy constraint: {constraint}"


def one(m):
    return f"1 validation error detected: {m}"


def expect_messages(op, params, messages):
    with pytest.raises(KMSError) as e:
        validate(op, params)
    assert e.value.code == "ValidationException"
    n = len(messages)
    head = "1 validation error detected: " if n == 1 else f"{n} validation errors detected: "
    assert e.value.message == head + "; ".join(messages)


# --- the sites: every constrained member of every operation -----------------

def _sites():
    """(op, params-path, message-path, shape, documented range) for every
    member that carries a constraint, top level and inside list elements."""
    out = []

    def walk(op, shape, ppath, mpath, rng):
        t = shape.type
        if t == "structure":
            for n, s in shape.members.items():
                r = OPERATIONS[op].documented_ranges.get(n) if not ppath else None
                walk(op, s, ppath + [n], (mpath + "." if mpath else "") + camel(n), r)
            return
        assert t != "map" or not (validation._scalar_constraints(shape.key)
                                  or validation._scalar_constraints(shape.value)), \
            "constrained maps need their own cases"
        if shape.min is not None or shape.max is not None or shape.enum or shape.pattern or rng:
            out.append((op, ppath, mpath, shape, rng))
        if t == "list" and shape.member.type == "structure":
            walk(op, shape.member, ppath + [0], mpath + ".1.member", None)
        elif t == "list" and (validation._scalar_constraints(shape.member)):
            out.append((op, ppath + ["*"], mpath, shape.member, None))

    for op in sorted(OPERATIONS):
        walk(op, OPERATIONS[op].input_shape, [], "", None)
    return out


SITES = _sites()


def _with(op, ppath, value):
    """The op's baseline params with ``value`` placed at ``ppath``."""
    p = baseline(op)
    cur, shape = p, OPERATIONS[op].input_shape
    for i, k in enumerate(ppath[:-1]):
        if k == 0:
            shape = shape.member
            cur[ppath[i - 1]] = [valid(shape)] if not cur.get(ppath[i - 1]) else cur[ppath[i - 1]]
            cur = cur[ppath[i - 1]][0]
        elif ppath[i + 1] == 0 or ppath[i + 1] == "*":
            shape = shape.members[k]
            cur.setdefault(k, [])
        else:
            shape = shape.members[k]
            cur = cur.setdefault(k, valid(shape))
    last = ppath[-1]
    if last == "*":
        cur[ppath[-2]] = [value]
    elif isinstance(cur, dict) and ppath[-1] != 0:
        cur[last] = value
    return p


def _site_id(site):
    op, _, mpath, shape, _ = site
    return f"{op}.{mpath}:{shape.name}"


def test_sites_cover_the_interesting_limits():
    ids = {(s[0], s[2]) for s in SITES}
    for case in [("Encrypt", "plaintext"), ("Decrypt", "ciphertextBlob"),
                 ("GenerateDataKey", "numberOfBytes"), ("GenerateRandom", "numberOfBytes"),
                 ("EnableKeyRotation", "rotationPeriodInDays"),
                 ("ScheduleKeyDeletion", "pendingWindowInDays"), ("ListAliases", "limit"),
                 ("CreateKey", "description"), ("TagResource", "tags.1.member.tagKey"),
                 ("TagResource", "tags.1.member.tagValue"), ("Encrypt", "grantTokens"),
                 ("CreateAlias", "aliasName"), ("CreateGrant", "operations")]:
        assert case in ids, case
    assert len(SITES) > 200


def _value(shape, length, filler=None):
    if shape.type == "blob":
        return b"\x01" * length
    sample, fill = PATTERN_SAMPLES.get(shape.name, ("", "a"))
    fill = filler or fill or "a"
    if len(sample) > length:
        return sample[:length]
    return sample + fill * (length - len(sample))


def _string_msgs(shape, v, path, lo, hi):
    out = []
    if shape.pattern and not re.fullmatch(shape.pattern, v, re.ASCII):
        out.append(msg(shape, v, path, f"Member must satisfy regular expression pattern: {shape.pattern}"))
    if lo is not None and len(v) < lo:
        out.append(msg(shape, v, path, f"Member must have length greater than or equal to {lo}"))
    elif hi is not None and len(v) > hi:
        out.append(msg(shape, v, path, f"Member must have length less than or equal to {hi}"))
    return out


def accepts(op, params):
    # Model-level only: cross-member rules (e.g. CreateKey KeySpec/KeyUsage)
    # have their own cases below.
    assert validation.validation_messages(op, params) == []


@pytest.mark.parametrize("site", [s for s in SITES if s[1][-1] != "*"], ids=_site_id)
def test_every_limit(site):
    op, ppath, mpath, shape, rng = site
    lo, hi = rng or (shape.min, shape.max)
    accepts(op, _with(op, ppath, valid(shape, rng)))  # the baseline itself is valid
    t = shape.type
    if t in ("integer", "long"):
        accepts(op, _with(op, ppath, lo))
        accepts(op, _with(op, ppath, hi))
        expect_messages(op, _with(op, ppath, hi + 1),
                        [msg(shape, hi + 1, mpath, f"Member must have value less than or equal to {hi}")])
        expect_messages(op, _with(op, ppath, lo - 1),
                        [msg(shape, lo - 1, mpath, f"Member must have value greater than or equal to {lo}")])
    elif t == "list":
        item = valid(shape.member)
        if hi is not None:
            too_many = [item] * (hi + 1)
            accepts(op, _with(op, ppath, [item] * hi))
            expect_messages(op, _with(op, ppath, too_many),
                            [msg(shape, too_many, mpath, f"Member must have length less than or equal to {hi}")])
        if lo:
            expect_messages(op, _with(op, ppath, []),
                            [msg(shape, [], mpath, f"Member must have length greater than or equal to {lo}")])
    elif shape.enum:
        expect_messages(op, _with(op, ppath, "NOT_A_VALUE"), [msg(
            shape, "NOT_A_VALUE", mpath, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")])
        for e in shape.enum:
            accepts(op, _with(op, ppath, e))
    else:  # string or blob with lengths and maybe a pattern
        fill_ok = shape.type == "blob" or PATTERN_SAMPLES.get(shape.name, ("", "a"))[1] is not None
        if hi is not None and fill_ok:
            accepts(op, _with(op, ppath, _value(shape, hi)))
            v = _value(shape, hi + 1)
            want = ([msg(shape, v, mpath, f"Member must have length less than or equal to {hi}")]
                    if t == "blob" else _string_msgs(shape, v, mpath, lo, hi))
            assert want
            expect_messages(op, _with(op, ppath, v), want)
        if lo:
            v = _value(shape, lo - 1)
            want = ([msg(shape, v, mpath, f"Member must have length greater than or equal to {lo}")]
                    if t == "blob" else _string_msgs(shape, v, mpath, lo, hi))
            expect_messages(op, _with(op, ppath, v), want)
            at_min = _value(shape, lo)
            if fill_ok and (t == "blob" or not _string_msgs(shape, at_min, mpath, lo, hi)):
                accepts(op, _with(op, ppath, at_min))
        if shape.pattern:
            good = valid(shape)
            bad = good[:-1] + "\u2603"
            expect_messages(op, _with(op, ppath, bad), _string_msgs(shape, bad, mpath, lo, hi))


def _inner(shape):
    parts = []
    if shape.enum:
        parts.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
    if shape.max is not None:
        parts.append(f"Member must have length less than or equal to {shape.max}")
    if shape.min is not None:
        parts.append(f"Member must have length greater than or equal to {shape.min}")
    if shape.pattern:
        parts.append(f"Member must satisfy regular expression pattern: {shape.pattern}")
    return ", ".join(parts)


@pytest.mark.parametrize("site", [s for s in SITES if s[1][-1] == "*"], ids=_site_id)
def test_every_list_member_limit(site):
    op, ppath, mpath, shape, _ = site
    list_shape = OPERATIONS[op].input_shape
    for k in ppath[:-1]:
        list_shape = list_shape.members[k] if k != 0 else list_shape.member
    good = valid(shape)
    bad = "NOT_A_VALUE" if shape.enum else ("" if shape.min else "x" * (shape.max + 1))
    accepts(op, _with(op, ppath, good))
    # AWS reports the whole list once, listing every constraint of the member.
    expect_messages(op, _with(op, ppath, bad), [msg(
        list_shape, [bad], mpath, f"Member must satisfy constraint: [{_inner(shape)}]")])


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_required_member(op):
    shape = OPERATIONS[op].input_shape
    validate(op, baseline(op))
    for r in shape.required:
        p = baseline(op)
        del p[r]
        expect_messages(op, p, [f"Value null at '{camel(r)}' failed to satisfy constraint: Member must not be null"])
        p[r] = None  # JSON null / None is absent
        expect_messages(op, p, [f"Value null at '{camel(r)}' failed to satisfy constraint: Member must not be null"])


# The ranges AWS documents (issue 2, reference §1.1-1.8, §1.13), pinned so a
# botocore update that changes one cannot slip through unnoticed.
DOCUMENTED = [
    ("GenerateDataKey", "NumberOfBytes", 1, 1024), ("GenerateRandom", "NumberOfBytes", 1, 1024),
    ("GenerateDataKeyWithoutPlaintext", "NumberOfBytes", 1, 1024),
    ("Encrypt", "Plaintext", 1, 4096), ("Decrypt", "CiphertextBlob", 1, 6144),
    ("ReEncrypt", "CiphertextBlob", 1, 6144), ("CreateKey", "Description", 0, 8192),
    ("UpdateKeyDescription", "Description", 0, 8192),
    ("EnableKeyRotation", "RotationPeriodInDays", 90, 2560),
    ("ScheduleKeyDeletion", "PendingWindowInDays", 7, 30),
    ("ListAliases", "Limit", 1, 100), ("ListGrants", "Limit", 1, 100),
    ("ListRetirableGrants", "Limit", 1, 100), ("ListResourceTags", "Limit", 1, 50),
    ("ListKeys", "Limit", 1, 1000), ("ListKeyRotations", "Limit", 1, 1000),
    ("ListKeyPolicies", "Limit", 1, 1000), ("Encrypt", "GrantTokens", 0, 10),
    ("CreateGrant", "GrantTokens", 0, 10), ("CreateAlias", "AliasName", 1, 256),
    ("PutKeyPolicy", "Policy", 1, 131072), ("CreateGrant", "Name", 1, 256),
]


@pytest.mark.parametrize("op,member,lo,hi", DOCUMENTED)
def test_documented_ranges(op, member, lo, hi):
    shape = OPERATIONS[op].input_shape.members[member]
    assert OPERATIONS[op].documented_ranges.get(member, (shape.min, shape.max)) == (lo, hi)
    if shape.type in ("integer", "long"):
        at, over = hi, hi + 1
    elif shape.type == "list":
        at, over = ["t"] * hi, ["t"] * (hi + 1)
    else:
        at, over = _value(shape, hi), _value(shape, hi + 1)
    accepts(op, {**baseline(op), member: at})
    with pytest.raises(KMSError) as e:
        validate(op, {**baseline(op), member: over})
    assert f"at '{camel(member)}' failed to satisfy constraint: Member must have " in e.value.message
    assert e.value.message.endswith(f"less than or equal to {hi}")


# --- AWS's recorded messages (reference §1.3, §1.12-1.14) --------------------

@pytest.mark.parametrize("op,params,message", [
    ("GenerateRandom", {"NumberOfBytes": 1025},
     "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
     "Member must have value less than or equal to 1024"),
    ("GenerateRandom", {"NumberOfBytes": 0},
     "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: "
     "Member must have value greater than or equal to 1"),
    ("GenerateRandom", {}, "NumberOfBytes is required."),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"a" * 4097},
     "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
     "Member must have length less than or equal to 4096"),
    ("Encrypt", {"KeyId": "k", "Plaintext": b""},
     "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
     "Member must have length greater than or equal to 1"),
    ("GenerateDataKey", {"KeyId": "k"}, "Please specify either number of bytes or key spec."),
    ("GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_256", "NumberOfBytes": 32},
     "Please specify either number of bytes or key spec."),
    ("GenerateDataKeyWithoutPlaintext", {"KeyId": "k"}, "Please specify either number of bytes or key spec."),
    ("GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_512"},
     "1 validation error detected: Value 'AES_512' at 'keySpec' failed to satisfy constraint: "
     "Member must satisfy enum value set: [AES_256, AES_128]"),
    ("CreateKey", {"KeySpec": "RSA_2048"},
     "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."),
    ("CreateKey", {"KeySpec": "RSA_2048", "KeyUsage": "KEY_AGREEMENT"},
     "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048"),
    ("CreateKey", {"KeyUsage": "SIGN_VERIFY"},
     "KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT"),
    ("ImportKeyMaterial", {"KeyId": "k", "ImportToken": b"t", "EncryptedKeyMaterial": b"m",
                           "ExpirationModel": "KEY_MATERIAL_EXPIRES"},
     "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"),
    ("ScheduleKeyDeletion", {"KeyId": "k", "PendingWindowInDays": 6},
     "1 validation error detected: Value '6' at 'pendingWindowInDays' failed to satisfy constraint: "
     "Member must have value greater than or equal to 7"),
    ("ScheduleKeyDeletion", {"KeyId": "k", "PendingWindowInDays": 31},
     "1 validation error detected: Value '31' at 'pendingWindowInDays' failed to satisfy constraint: "
     "Member must have value less than or equal to 30"),
    ("ListAliases", {"Limit": 101},
     "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
     "Member must have value less than or equal to 100"),
    ("ListResourceTags", {"KeyId": "k", "Limit": 51},
     "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: "
     "Member must have value less than or equal to 50"),
    ("DescribeCustomKeyStores", {"Limit": 1001},
     "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: "
     "Member must have value less than or equal to 1000"),
])
def test_aws_messages(op, params, message):
    with pytest.raises(KMSError) as e:
        validate(op, params)
    assert (e.value.code, e.value.message) == ("ValidationException", message)
    assert e.value.status == 400


@pytest.mark.parametrize("op,params", [
    ("GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_128"}),
    ("GenerateDataKey", {"KeyId": "k", "NumberOfBytes": 1024}),
    ("CreateKey", {}), ("CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    ("CreateKey", {"CustomerMasterKeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    ("ImportKeyMaterial", {"KeyId": "k", "ImportToken": b"t", "EncryptedKeyMaterial": b"m",
                           "ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": NOW}),
    ("ScheduleKeyDeletion", {"KeyId": "k", "PendingWindowInDays": 7}),
    ("ScheduleKeyDeletion", {"KeyId": "k", "PendingWindowInDays": 30}),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"a" * 4096, "EncryptionContext": {"": ""}}),
    ("Encrypt", {"KeyId": "k", "Plaintext": bytearray(b"x"), "NotInModel": object()}),
])
def test_accepted(op, params):
    validate(op, params)


def test_several_errors_in_model_order_with_nested_paths():
    expect_messages("TagResource", {"Tags": [{"TagKey": "k" * 129, "TagValue": "v"},
                                             {"TagKey": "", "TagValue": "v" * 257},
                                             {"TagValue": "x"}]}, [
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null",
        f"Value '{'k' * 129}' at 'tags.1.member.tagKey' failed to satisfy constraint: "
        "Member must have length less than or equal to 128",
        "Value '' at 'tags.2.member.tagKey' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
        f"Value '{'v' * 257}' at 'tags.2.member.tagValue' failed to satisfy constraint: "
        "Member must have length less than or equal to 256",
        "Value null at 'tags.3.member.tagKey' failed to satisfy constraint: Member must not be null",
    ])
    # dict order of the request does not matter: AWS reports in model order
    expect_messages("Encrypt", {"Plaintext": b"", "GrantTokens": ["t"] * 11}, [
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null",
        "Value at 'plaintext' failed to satisfy constraint: Member must have length greater than or equal to 1",
        f"Value '[{', '.join(['t'] * 11)}]' at 'grantTokens' failed to satisfy constraint: "
        "Member must have length less than or equal to 10",
    ])


def test_alias_name_errors_pattern_before_length():
    expect_messages("CreateAlias", {"AliasName": "", "TargetKeyId": "k"}, [
        "Value '' at 'aliasName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        "Value '' at 'aliasName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    ])


def test_rules_run_only_after_the_model_constraints():
    expect_messages("GenerateDataKey", {"KeyId": "k" * 2049}, [
        f"Value '{'k' * 2049}' at 'keyId' failed to satisfy constraint: "
        "Member must have length less than or equal to 2048"])


def test_unknown_operation():
    with pytest.raises(KMSError) as e:
        validate("NoSuchOp", {})
    assert e.value.code == "UnknownOperationException"


@pytest.mark.parametrize("op,params,where", [
    ("Encrypt", {"KeyId": 5, "Plaintext": b"x"}, "keyId"),
    ("Encrypt", {"KeyId": "k", "Plaintext": 5}, "plaintext"),
    ("GenerateRandom", {"NumberOfBytes": "5"}, "numberOfBytes"),
    ("GenerateRandom", {"NumberOfBytes": True}, "numberOfBytes"),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "GrantTokens": "t"}, "grantTokens"),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "DryRun": 1}, "dryRun"),
    ("TagResource", {"KeyId": "k", "Tags": [5]}, "tags.1.member"),
    ("ImportKeyMaterial", {"KeyId": "k", "ImportToken": b"t", "EncryptedKeyMaterial": b"m",
                           "ValidTo": "2026-01-01"}, "validTo"),
])
def test_wrong_python_types_are_typed_errors(op, params, where):
    with pytest.raises(KMSError) as e:
        validate(op, params)
    assert e.value.code == "SerializationException"
    assert f"'{where}'" in e.value.message


# --- client side: botocore's ParamValidator, exactly -------------------------

_BOTO = ParamValidator()


def botocore_report(op, params):
    return _BOTO.validate(params, SVC.operation_model(op).input_shape).generate_report()


def ours(op, params):
    try:
        check_client_side(op, params)
    except ParamValidationError as e:
        return e.kwargs["report"]
    return ""


def _same_report(mine, theirs):
    a, b = mine.splitlines(), theirs.splitlines()
    assert len(a) == len(b), (mine, theirs)
    for x, y in zip(a, b):
        if "<redacted>" in x:  # blob/sensitive values are not echoed by us
            y = re.sub(r"value: .*, type: <class", "value: <redacted>, type: <class", y, flags=re.S)
        assert x == y


@pytest.mark.parametrize("op,params", [
    ("Encrypt", {}),
    ("Encrypt", {"KeyId": "", "Plaintext": b"x", "Bogus": 1, "Other": 2}),
    ("Encrypt", {"KeyId": None, "Plaintext": b"x"}),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "EncryptionContext": {"a": 1, 2: "b"}}),
    ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "GrantTokens": ["", 5]}),
    ("GenerateRandom", {"NumberOfBytes": 0}),
    ("GenerateRandom", {"NumberOfBytes": True}),
    ("CreateGrant", {"KeyId": "k", "GranteePrincipal": "p", "Operations": ("Encrypt", 5),
                     "Constraints": {"EncryptionContextSubset": {"a": "b"}, "X": 1}}),
    ("TagResource", {"KeyId": "k", "Tags": [{"TagKey": "", "TagValue": ""}, {}, "x"]}),
    ("ImportKeyMaterial", {"KeyId": "k", "ImportToken": b"t", "EncryptedKeyMaterial": b"m",
                           "ValidTo": "not a date"}),
    ("ImportKeyMaterial", {"KeyId": "k", "ImportToken": b"t", "EncryptedKeyMaterial": b"m",
                           "ValidTo": "2026-01-01T00:00:00Z"}),
    ("ListKeys", []),
    ("ListKeys", {"Limit": 5000, "Marker": "m" * 2000}),
])
def test_client_side_matches_botocore(op, params):
    _same_report(ours(op, params), botocore_report(op, params))


def test_client_side_report_text():
    with pytest.raises(ParamValidationError) as e:
        check_client_side("Encrypt", {"Plaintext": 5, "Foo": 1})
    assert str(e.value) == (
        "Parameter validation failed:\n"
        'Missing required parameter in input: "KeyId"\n'
        'Unknown parameter in input: "Foo", must be one of: KeyId, Plaintext, '
        "EncryptionContext, GrantTokens, EncryptionAlgorithm, DryRun\n"
        "Invalid type for parameter Plaintext, value: <redacted>, type: <class 'int'>, "
        "valid types: <class 'bytes'>, <class 'bytearray'>, file-like object")


def test_client_side_lets_through_what_botocore_sends():
    # reference §1.12: over-max values, bad enums and empty blobs reach the service
    for op, p in [("GenerateRandom", {"NumberOfBytes": 1025}), ("ListKeys", {"Limit": 5000}),
                  ("GenerateDataKey", {"KeyId": "k", "KeySpec": "NOPE"}),
                  ("Encrypt", {"KeyId": "k", "Plaintext": b""}),
                  ("CreateAlias", {"AliasName": "bad name!", "TargetKeyId": "k"})]:
        check_client_side(op, p)
        assert botocore_report(op, p) == ""


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16),
                  st.text(max_size=3), st.binary(max_size=3), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def wild(shape, depth=0):
    """Values near every boundary botocore checks, plus wrong types."""
    t = shape.type
    if t == "string":
        lo = shape.min or 0
        options = [st.text(alphabet="ab", min_size=max(lo - 1, 0), max_size=lo + 2)]
        if shape.enum:
            options = [st.sampled_from(shape.enum), st.just("NOPE")]
        if shape.max is not None:
            options.append(st.just("a" * (shape.max + 1)))
        if shape.pattern:
            options.append(st.just("\u2603" * max(lo, 1)))
        good = st.one_of(*options)
    elif t == "blob":
        good = st.one_of(st.binary(max_size=3), st.text(max_size=2), st.binary(max_size=3).map(bytearray),
                         st.just(b"\x01" * ((shape.max or 8) + 1)))
    elif t in ("integer", "long"):
        lo, hi = shape.min or 0, shape.max if shape.max is not None else 100
        good = st.sampled_from([lo - 2, lo - 1, lo, lo + 1, 7, 30, 31, 50, 51, 100, 101, hi, hi + 1])
    elif t == "boolean":
        good = st.booleans()
    elif t == "timestamp":
        good = st.one_of(st.just(NOW), st.just("2026-01-01"), st.just(NOW.replace(tzinfo=None)))
    elif t == "list":
        good = st.lists(wild(shape.member, depth + 1), max_size=3) if depth < 3 else st.just([])
    elif t == "map":
        good = st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 2)),
                               wild(shape.value, depth + 1), max_size=2)
    else:
        good = structure(shape, depth + 1) if depth < 3 else st.just({})
    # mostly well-typed values (so that accepted requests are common too)
    return st.integers(0, 9).flatmap(lambda i: _JUNK if i == 0 else good)


def structure(shape, depth=0):
    members = {n: wild(s, depth) for n, s in shape.members.items()}
    plain = st.fixed_dictionaries({}, optional=members)
    odd = st.fixed_dictionaries({}, optional={**members, "Unknown": _JUNK})
    return st.integers(0, 3).flatmap(lambda i: odd if i == 0 else plain)


@st.composite
def op_and_params(draw):
    name = draw(st.sampled_from(sorted(OPERATIONS)))
    op = OPERATIONS[name]
    if draw(st.integers(0, 3)) == 0:
        params = baseline(name)  # mostly-valid requests too
        params.update(draw(st.fixed_dictionaries({}, optional={
            n: wild(s) for n, s in op.input_shape.members.items()})))
    else:
        params = draw(structure(op.input_shape))
    return name, params


@PROPERTY
@given(op_and_params())
def test_client_side_agrees_with_botocore_on_random_params(case):
    name, params = case
    _same_report(ours(name, params), botocore_report(name, params))


@PROPERTY
@given(op_and_params())
def test_validate_never_crashes_and_check_params_is_client_then_service(case):
    name, params = case
    try:
        validate(name, params)
        service = None
    except KMSError as e:
        assert e.code in ("ValidationException", "SerializationException")
        service = (e.code, e.message)
    client = ours(name, params)
    try:
        check_params(name, params)
        got = None
    except ParamValidationError as e:
        got = "client"
        assert client and e.kwargs["report"] == client
    except KMSError as e:
        got = (e.code, e.message)
    assert got == ("client" if client else service)


@PROPERTY
@given(op_and_params())
def test_fast_path_agrees_with_the_full_check(case):
    name, params = case
    validation.precompile()
    server, both = validation._SERVER[name], validation._BOTH[name]
    try:
        msgs = validation.validation_messages(name, params)
    except KMSError:
        msgs = None  # wrong Python types
    if server(params):
        assert msgs == []
    if both(params):
        assert msgs == [] and ours(name, params) == ""


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_fast_path_takes_valid_requests(op):
    validation.precompile()
    assert validation._SERVER[op](baseline(op)) and validation._BOTH[op](baseline(op))
    assert not validation._BOTH[op]({**baseline(op), "Unknown": 1})


# --- secrets never in messages ----------------------------------------------

def _forms(secret: bytes):
    forms = {secret.hex(), base64.b64encode(secret).decode(), repr(secret), str(list(secret))}
    try:
        forms.add(secret.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    forms.add(secret.decode("latin-1"))
    return forms


BLOB_SITES = [(op.name, m, s) for op in OPERATIONS.values()
              for m, s in op.input_shape.members.items() if s.type == "blob" or s.sensitive]


@PROPERTY
@given(site=st.sampled_from(BLOB_SITES), secret=st.binary(min_size=6, max_size=40),
       variant=st.integers(0, 4))
def test_no_message_echoes_a_blob_or_secret(site, secret, variant):
    op, member, shape = site
    hi = shape.max or 8192
    if shape.type == "blob":
        value = [secret * (hi // len(secret) + 1), b"", bytearray(secret * (hi // len(secret) + 1)),
                 list(secret), secret.decode("latin-1") * (hi // len(secret) + 1)][variant]
    else:
        s = secret.hex()
        value = [s * (hi // len(s) + 1), "", s[:1], list(secret), {"s": s}][variant]
    params = {**baseline(op), member: value, "KeyId": None}
    texts = []
    for check in (validate, check_client_side, check_params):
        try:
            check(op, params)
        except (KMSError, ParamValidationError) as e:
            texts.append(str(e))
    body = {member: ("!" + secret.hex() if variant % 2 else list(secret))}
    try:
        check_wire_types(op, body)
    except KMSError as e:
        texts.append(str(e))
    assert texts
    for text in texts:
        for form in _forms(secret) | ({secret.hex()} if shape.type != "blob" else set()):
            if len(form) >= 6:
                assert form not in text


# --- the server's wire check -------------------------------------------------

def test_check_wire_types_converts_and_ignores_unknown_fields():
    assert check_wire_types("Encrypt", {"KeyId": "k", "Plaintext": "aGk=", "Future": 1}) == {
        "KeyId": "k", "Plaintext": b"hi"}
    with pytest.raises(KMSError) as e:
        check_wire_types("Encrypt", {"KeyId": "k", "Plaintext": 12})
    assert e.value.code == "SerializationException"
    with pytest.raises(KMSError) as e:
        check_wire_types("Encrypt", "x")
    assert e.value.code == "SerializationException"
    with pytest.raises(KMSError) as e:
        check_wire_types("Nope", {})
    assert e.value.code == "UnknownOperationException"


def test_every_operation_compiles():
    validation.precompile()
    assert set(validation._BOTH) == set(OPERATIONS) == set(validation._SERVER)
    assert model.OPERATIONS is OPERATIONS

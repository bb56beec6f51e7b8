"""Key lifecycle operations and their response shapes (CreateKey, DescribeKey,
ListKeys, UpdateKeyDescription, EnableKey, DisableKey, ScheduleKeyDeletion,
CancelKeyDeletion), as AWS KMS answers them."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from botocore.exceptions import ClientError

ARN_RE = re.compile(r"^arn:aws:kms:([a-z]{2}(?:-[a-z]+)+-\d+):(\d{12}):key/(.+)$")


# Every test makes its own keys (aliases are unique): one store per module,
# run on SQLite and on PostgreSQL.
@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def clock(shared_store):
    return shared_store.clock


def _all_keys(kms, limit=1000):
    """ListKeys followed to the end."""
    keys, marker = [], None
    while True:
        resp = kms.list_keys(Limit=limit, **({"Marker": marker} if marker else {}))
        for entry in resp["Keys"]:
            assert set(entry) == {"KeyId", "KeyArn"}
        keys += resp["Keys"]
        if not resp["Truncated"]:
            assert "NextMarker" not in resp
            return keys
        marker = resp["NextMarker"]


def _aware(value):
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def _meta_ok(meta, helpers):
    m = ARN_RE.match(meta["Arn"])
    assert m, meta["Arn"]
    assert m.group(3) == meta["KeyId"]
    assert m.group(2) == meta["AWSAccountId"]
    assert helpers.UUID_RE.match(meta["KeyId"])
    assert _aware(meta["CreationDate"])


def test_create_key_metadata_shape(kms, clock, helpers):
    resp = kms.create_key(Description="orders")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"]["RequestId"]
    meta = resp["KeyMetadata"]
    _meta_ok(meta, helpers)
    expected = {
        "Description": "orders",
        "Enabled": True,
        "KeyState": "Enabled",
        "KeyManager": "CUSTOMER",
        "Origin": "AWS_KMS",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": False,
    }
    assert {k: meta.get(k) for k in expected} == expected
    assert helpers.MATERIAL_ID_RE.match(meta["CurrentKeyMaterialId"])
    assert abs((meta["CreationDate"] - clock.now()).total_seconds()) < 60
    # A fresh key has no deletion date; asymmetric/HMAC-only fields are absent.
    for absent in ("DeletionDate", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms"):
        assert absent not in meta


def test_create_key_defaults_and_ids_unique(kms):
    a = kms.create_key()["KeyMetadata"]
    b = kms.create_key()["KeyMetadata"]
    assert a["Description"] == ""
    assert a["KeyId"] != b["KeyId"]
    assert a["CurrentKeyMaterialId"] != b["CurrentKeyMaterialId"]


def test_create_key_explicit_symmetric_defaults_accepted(kms):
    meta = kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT",
                          Origin="AWS_KMS")["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"], meta["Origin"]) == (
        "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS")


def test_create_key_bad_enum_is_validation_error(raises, kms):
    with raises("ValidationException", match="keySpec"):
        kms.create_key(KeySpec="AES_512")
    with raises("ValidationException", match="keyUsage"):
        kms.create_key(KeyUsage="RANDOM")


@pytest.mark.parametrize("form", ["id", "arn"])
def test_describe_key_by_id_and_arn(kms, key, form):
    ref = key["KeyId"] if form == "id" else key["Arn"]
    resp = kms.describe_key(KeyId=ref)
    assert resp["KeyMetadata"] == key


def test_describe_key_has_no_aliases_tags_or_policy(kms, key, helpers):
    alias = helpers.unique_alias("describe-shape")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "a", "TagValue": "b"}])
    meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    for absent in ("Aliases", "Tags", "Policy", "KeyRotationEnabled"):
        assert absent not in meta
    assert set(kms.describe_key(KeyId=alias)) == {"KeyMetadata", "ResponseMetadata"}


def test_unknown_key_id_not_found_names_the_arn(raises, kms, arn_prefix, helpers):
    kid = helpers.unknown_key_id()
    with raises("NotFoundException", message=f"Key '{arn_prefix}:key/{kid}' does not exist"):
        kms.describe_key(KeyId=kid)
    with raises("NotFoundException", message=f"Key '{arn_prefix}:key/{kid}' does not exist"):
        kms.describe_key(KeyId=f"{arn_prefix}:key/{kid}")


@pytest.mark.parametrize("bad", ["fake-key-id", "134f2428cec14b25a1ae9048164dba47"])
def test_malformed_key_id(raises, kms, bad):
    with raises("NotFoundException", message=f"Invalid keyId '{bad}'"):
        kms.describe_key(KeyId=bad)


def test_unknown_alias_not_found(raises, kms, arn_prefix):
    with raises("NotFoundException", message=f"Alias {arn_prefix}:alias/nope-missing is not found."):
        kms.describe_key(KeyId="alias/nope-missing")


def test_list_keys_shape(kms, new_key):
    made = {new_key()["KeyId"] for _ in range(3)}
    listed = {k["KeyId"]: k["KeyArn"] for k in _all_keys(kms)}
    assert made <= set(listed)
    for kid in made:
        assert listed[kid] == kms.describe_key(KeyId=kid)["KeyMetadata"]["Arn"]


def test_update_key_description(kms, key):
    resp = kms.update_key_description(KeyId=key["KeyId"], Description="new text")
    assert set(resp) == {"ResponseMetadata"}
    assert kms.describe_key(KeyId=key["Arn"])["KeyMetadata"]["Description"] == "new text"
    kms.update_key_description(KeyId=key["Arn"], Description="")
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == ""


def test_disable_enable_round_trip_and_idempotent(kms, key):
    kid = key["KeyId"]
    assert set(kms.disable_key(KeyId=kid)) == {"ResponseMetadata"}
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Disabled", False)
    kms.disable_key(KeyId=key["Arn"])  # idempotent, ARN accepted
    assert set(kms.enable_key(KeyId=kid)) == {"ResponseMetadata"}
    kms.enable_key(KeyId=key["Arn"])
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Enabled", True)


def test_schedule_key_deletion_default_window_is_30_days(kms, clock, key):
    resp = kms.schedule_key_deletion(KeyId=key["KeyId"])
    assert resp["KeyId"] == key["Arn"]
    assert resp["KeyState"] == "PendingDeletion"
    assert resp["PendingWindowInDays"] == 30
    assert _aware(resp["DeletionDate"])
    expected = clock.now() + timedelta(days=30)
    assert abs((resp["DeletionDate"] - expected).total_seconds()) < 60
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("PendingDeletion", False)
    assert meta["DeletionDate"] == resp["DeletionDate"]


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_window_bounds_accepted(kms, clock, key, days):
    resp = kms.schedule_key_deletion(KeyId=key["Arn"], PendingWindowInDays=days)
    assert resp["PendingWindowInDays"] == days
    expected = clock.now() + timedelta(days=days)
    assert abs((resp["DeletionDate"] - expected).total_seconds()) < 60


@pytest.mark.parametrize("days", [1, 6, 31, 365])
def test_schedule_key_deletion_window_outside_7_to_30(raises, kms, key, days):
    # The model allows 1-365 (botocore sends these); the service enforces 7-30.
    with raises("ValidationException", match="pendingWindowInDays"):
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=days)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


@pytest.mark.parametrize("start", ["Enabled", "Disabled"])
def test_cancel_key_deletion_leaves_key_disabled(kms, key, helpers, start):
    helpers.put_in_state(kms, key["KeyId"], start)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    resp = kms.cancel_key_deletion(KeyId=key["KeyId"])
    assert resp["KeyId"] == key["Arn"]
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Disabled", False)
    assert "DeletionDate" not in meta
    kms.enable_key(KeyId=key["KeyId"])
    assert kms.encrypt(KeyId=key["KeyId"], Plaintext=b"back")["KeyId"] == key["Arn"]


def test_key_is_really_deleted_when_window_passes(raises, kms, clock, key, helpers):
    kid = key["KeyId"]
    alias = helpers.unique_alias("doomed")
    kms.create_alias(AliasName=alias, TargetKeyId=kid)
    blob = kms.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    clock.advance(days=6, seconds=86399)
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    clock.advance(seconds=2)
    with raises("NotFoundException", message=f"Key '{key['Arn']}' does not exist"):
        kms.describe_key(KeyId=kid)
    assert kid not in {k["KeyId"] for k in _all_keys(kms)}
    # Its aliases go with it; its ciphertexts can no longer be decrypted.
    with raises("NotFoundException"):
        kms.list_aliases(KeyId=kid)
    with raises("NotFoundException"):
        kms.describe_key(KeyId=alias)
    with pytest.raises(ClientError) as info:
        kms.decrypt(CiphertextBlob=blob)
    assert info.value.response["Error"]["Code"] in ("NotFoundException", "InvalidCiphertextException")
    # The name is free again.
    other = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=other["KeyId"])


def test_cancelled_deletion_survives_the_old_date(kms, clock, key):
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    clock.advance(days=8)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


@pytest.mark.parametrize("op", ["enable_key", "disable_key", "schedule_key_deletion",
                                "cancel_key_deletion", "update_key_description",
                                "get_key_rotation_status", "enable_key_rotation",
                                "disable_key_rotation", "rotate_key_on_demand",
                                "list_key_rotations", "list_resource_tags",
                                "tag_resource", "untag_resource"])
@pytest.mark.parametrize("form", ["alias_name", "alias_arn"])
def test_id_or_arn_only_ops_reject_aliases(kms, key, helpers, op, form):
    """These operations take a key ID or key ARN only (botocore's KeyId docs)."""
    alias = helpers.unique_alias("id-only")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    ref = alias if form == "alias_name" else key["Arn"].replace(f"key/{key['KeyId']}", alias)
    extra = {
        "update_key_description": {"Description": "changed"},
        "tag_resource": {"Tags": [{"TagKey": "k", "TagValue": "v"}]},
        "untag_resource": {"TagKeys": ["k"]},
        "schedule_key_deletion": {"PendingWindowInDays": 7},
    }.get(op, {})
    with pytest.raises(ClientError) as info:
        getattr(kms, op)(KeyId=ref, **extra)
    # AWS: NotFoundException ("Invalid keyId ...") for a name; an alias ARN may
    # also be refused as InvalidArnException.
    assert info.value.response["Error"]["Code"] in ("NotFoundException", "InvalidArnException")
    assert info.value.response["Error"]["Message"]
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Description"]) == ("Enabled", "conformance")
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []


def test_key_in_other_region_is_not_found(raises, kms, key):
    region = key["Arn"].split(":")[3]
    other = "eu-west-1" if region != "eu-west-1" else "us-west-2"
    with raises("NotFoundException", message=f"Invalid arn {other}"):
        kms.describe_key(KeyId=key["Arn"].replace(f":{region}:", f":{other}:"))

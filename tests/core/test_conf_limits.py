"""Limits the engine must enforce itself.

boto3 sends values above a model maximum, bad enum values and empty blobs
without complaint (reference §1.12), so these reach the engine and must come
back as ValidationException naming the camelCase member, as AWS does.  Values
below a model minimum are refused by botocore before sending; for those the
in-process client may raise botocore's ParamValidationError instead.
"""
from __future__ import annotations

import pytest


# Every test makes its own keys: one store for the module.
@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def clock(shared_store):
    return shared_store.clock


def _all_key_ids(kms):
    ids, marker = set(), None
    while True:
        resp = kms.list_keys(Limit=1000, **({"Marker": marker} if marker else {}))
        ids |= {k["KeyId"] for k in resp["Keys"]}
        if not resp["Truncated"]:
            return ids
        marker = resp["NextMarker"]


def _ve(raises, field):
    return raises("ValidationException", match=field)


# --- Encrypt / Decrypt sizes --------------------------------------------------

def test_encrypt_plaintext_over_4096(raises, kms, key):
    with raises("ValidationException",
                message="1 validation error detected: Value at 'plaintext' failed to satisfy "
                        "constraint: Member must have length less than or equal to 4096"):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"a" * 4097)


def test_encrypt_empty_plaintext(raises, rejects, kms, key):
    with rejects("plaintext"):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"")


def test_decrypt_ciphertext_over_6144(raises, kms, key):
    with _ve(raises, "ciphertextBlob"):
        kms.decrypt(CiphertextBlob=b"\x01" * 6145)


def test_decrypt_empty_ciphertext(rejects, kms):
    with rejects("ciphertextBlob"):
        kms.decrypt(CiphertextBlob=b"")


def test_reencrypt_ciphertext_over_6144(raises, kms, key):
    with _ve(raises, "ciphertextBlob"):
        kms.re_encrypt(CiphertextBlob=b"\x01" * 6145, DestinationKeyId=key["KeyId"])


# --- data key and random sizes ------------------------------------------------

@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
def test_data_key_number_of_bytes_over_1024(raises, kms, key, op):
    with _ve(raises, "numberOfBytes"):
        getattr(kms, op)(KeyId=key["KeyId"], NumberOfBytes=1025)


@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
def test_data_key_number_of_bytes_zero(rejects, kms, key, op):
    with rejects("numberOfBytes"):
        getattr(kms, op)(KeyId=key["KeyId"], NumberOfBytes=0)


@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
def test_data_key_bad_key_spec(raises, kms, key, op):
    with _ve(raises, "keySpec"):
        getattr(kms, op)(KeyId=key["KeyId"], KeySpec="AES_512")


def test_generate_random_over_1024(raises, kms):
    with raises("ValidationException",
                message="1 validation error detected: Value '1025' at 'numberOfBytes' failed to "
                        "satisfy constraint: Member must have value less than or equal to 1024"):
        kms.generate_random(NumberOfBytes=1025)


def test_generate_random_zero(rejects, kms):
    with rejects("numberOfBytes"):
        kms.generate_random(NumberOfBytes=0)


# --- rotation period ----------------------------------------------------------

@pytest.mark.parametrize("days", [2561, 10000])
def test_rotation_period_over_2560(raises, kms, key, days):
    with _ve(raises, "rotationPeriodInDays"):
        kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=days)
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False


@pytest.mark.parametrize("days", [0, 89])
def test_rotation_period_under_90(rejects, kms, key, days):
    with rejects("rotationPeriodInDays"):
        kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=days)
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False


@pytest.mark.parametrize("days", [90, 2560])
def test_rotation_period_bounds_accepted(kms, key, days):
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=days)
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["RotationPeriodInDays"] == days


# --- list Limit ranges --------------------------------------------------------

LIST_LIMITS = [("list_keys", 1000), ("list_aliases", 100), ("list_resource_tags", 50),
               ("list_key_rotations", 1000)]


def _list_args(op, key):
    return {"KeyId": key["KeyId"]} if op in ("list_resource_tags", "list_key_rotations") else {}


@pytest.mark.parametrize("op,top", LIST_LIMITS)
def test_list_limit_above_range(raises, kms, key, op, top):
    with _ve(raises, "limit"):
        getattr(kms, op)(Limit=top + 1, **_list_args(op, key))


@pytest.mark.parametrize("op,top", LIST_LIMITS)
def test_list_limit_range_ends_accepted(kms, key, op, top):
    for limit in (1, top):
        resp = getattr(kms, op)(Limit=limit, **_list_args(op, key))
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("op,top", LIST_LIMITS)
def test_list_limit_zero(rejects, kms, key, op, top):
    with rejects("limit"):
        getattr(kms, op)(Limit=0, **_list_args(op, key))


# --- descriptions -------------------------------------------------------------

def test_description_length(raises, kms, key):
    kms.update_key_description(KeyId=key["KeyId"], Description="d" * 8192)
    assert len(kms.create_key(Description="d" * 8192)["KeyMetadata"]["Description"]) == 8192
    with _ve(raises, "description"):
        kms.create_key(Description="d" * 8193)
    with _ve(raises, "description"):
        kms.update_key_description(KeyId=key["KeyId"], Description="d" * 8193)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "d" * 8192


def test_create_key_rejected_creates_nothing(raises, kms):
    before = _all_key_ids(kms)
    with _ve(raises, "description"):
        kms.create_key(Description="d" * 8193)
    with raises("TagException"):
        kms.create_key(Tags=[{"TagKey": "aws:x", "TagValue": "y"}])
    assert _all_key_ids(kms) == before


# --- tags ---------------------------------------------------------------------

def _tags(n, prefix="k"):
    return [{"TagKey": f"{prefix}{i}", "TagValue": f"v{i}"} for i in range(n)]


def test_tag_round_trip_and_overwrite(kms, key):
    assert kms.tag_resource(KeyId=key["KeyId"], Tags=_tags(3)).keys() == {"ResponseMetadata"}
    kms.tag_resource(KeyId=key["Arn"], Tags=[{"TagKey": "k1", "TagValue": "new"}, {"TagKey": "e", "TagValue": ""}])
    tags = kms.list_resource_tags(KeyId=key["KeyId"])
    assert tags["Truncated"] is False
    assert sorted(tags["Tags"], key=lambda t: t["TagKey"]) == [
        {"TagKey": "e", "TagValue": ""}, {"TagKey": "k0", "TagValue": "v0"},
        {"TagKey": "k1", "TagValue": "new"}, {"TagKey": "k2", "TagValue": "v2"}]
    assert kms.untag_resource(KeyId=key["KeyId"], TagKeys=["k0", "e", "absent"]).keys() == {"ResponseMetadata"}
    assert sorted(t["TagKey"] for t in kms.list_resource_tags(KeyId=key["Arn"])["Tags"]) == ["k1", "k2"]


def test_create_key_with_tags(kms):
    kid = kms.create_key(Tags=_tags(2))["KeyMetadata"]["KeyId"]
    assert sorted(kms.list_resource_tags(KeyId=kid)["Tags"], key=lambda t: t["TagKey"]) == _tags(2)


def test_fifty_tags_allowed_fifty_one_refused(raises, kms, key):
    kms.tag_resource(KeyId=key["KeyId"], Tags=_tags(50))
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "k0", "TagValue": "overwrite is fine"}])
    with raises("TagException", message="Too many tags"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "one-more", "TagValue": "x"}])
    assert len(kms.list_resource_tags(KeyId=key["KeyId"], Limit=50)["Tags"]) == 50


def test_too_many_tags_at_create(raises, kms):
    with raises("TagException", message="Too many tags"):
        kms.create_key(Tags=_tags(51))


@pytest.mark.parametrize("tag_key", ["aws:owner", "aws:"])
def test_aws_prefix_reserved(raises, kms, key, tag_key):
    with raises("TagException", message="Tags beginning with aws: are reserved"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": tag_key, "TagValue": "x"}])
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []


def test_duplicate_tag_keys(raises, kms, key):
    with raises("TagException", message="Duplicate tag keys"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "a", "TagValue": "1"},
                                                   {"TagKey": "a", "TagValue": "2"}])
    with raises("TagException", message="Duplicate tag keys"):
        kms.create_key(Tags=[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}])
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []


def test_tag_key_and_value_lengths(raises, kms, key):
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "k" * 128, "TagValue": "v" * 256}])
    with _ve(raises, "tagKey"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "k" * 129, "TagValue": "v"}])
    with _ve(raises, "tagValue"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "k", "TagValue": "v" * 257}])
    assert len(kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]) == 1


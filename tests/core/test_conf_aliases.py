"""Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases and alias use
in cryptographic operations, with AWS's naming rules and errors."""
from __future__ import annotations

from datetime import datetime

import pytest
from botocore.exceptions import ClientError

PREFIX_MESSAGE = ('Alias must start with the prefix "alias/". Please see '
                  'https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html')


def _aliases(kms, **kwargs):
    return {a["AliasName"]: a for a in kms.list_aliases(**kwargs)["Aliases"]}


def test_create_alias_and_list_entry(kms, clock, key, arn_prefix):
    resp = kms.create_alias(AliasName="alias/orders", TargetKeyId=key["KeyId"])
    assert set(resp) == {"ResponseMetadata"}
    entry = _aliases(kms)["alias/orders"]
    assert entry["AliasArn"] == f"{arn_prefix}:alias/orders"
    assert entry["TargetKeyId"] == key["KeyId"]
    for field in ("CreationDate", "LastUpdatedDate"):
        assert isinstance(entry[field], datetime) and entry[field].tzinfo is not None
        assert abs((entry[field] - clock.now()).total_seconds()) < 60


def test_create_alias_with_key_arn(kms, key):
    kms.create_alias(AliasName="alias/by-arn", TargetKeyId=key["Arn"])
    assert _aliases(kms)["alias/by-arn"]["TargetKeyId"] == key["KeyId"]
    assert kms.describe_key(KeyId="alias/by-arn")["KeyMetadata"]["KeyId"] == key["KeyId"]


def test_several_aliases_for_one_key(kms, key):
    for name in ("alias/a", "alias/b/c", "alias/d_e-f:g"):
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        assert kms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == key["Arn"]
    assert set(_aliases(kms, KeyId=key["KeyId"])) == {"alias/a", "alias/b/c", "alias/d_e-f:g"}


@pytest.mark.parametrize("name", ["orders", "Alias/orders", "aliasorders", "key/orders"])
def test_alias_prefix_required(raises, kms, key, name):
    with raises("ValidationException", message=PREFIX_MESSAGE):
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    assert name not in _aliases(kms)


@pytest.mark.parametrize("name", ["alias/has space", "alias/semi;colon", "alias/dot.ted",
                                  "alias/ünïcode", "alias/star*"])
def test_alias_pattern(raises, kms, key, name):
    with raises("ValidationException", match="aliasName"):
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    assert name not in _aliases(kms)


def test_alias_length(raises, kms, key):
    longest = "alias/" + "a" * 250
    kms.create_alias(AliasName=longest, TargetKeyId=key["KeyId"])
    assert kms.describe_key(KeyId=longest)["KeyMetadata"]["KeyId"] == key["KeyId"]
    with raises("ValidationException", match="aliasName"):
        kms.create_alias(AliasName=longest + "b", TargetKeyId=key["KeyId"])


@pytest.mark.parametrize("name", ["alias/aws/mine", "alias/aws/s3"])
def test_alias_aws_prefix_reserved(kms, key, name):
    before = _aliases(kms)
    with pytest.raises(ClientError) as info:
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    # AWS's exact code here is not recorded (reference §7); any refusal with a
    # message is acceptable, but nothing may be created.
    assert info.value.response["Error"]["Code"] in (
        "ValidationException", "InvalidAliasNameException", "NotAuthorizedException",
        "AccessDeniedException", "UnsupportedOperationException")
    assert info.value.response["Error"]["Message"]
    after = _aliases(kms)
    assert after.get(name, {}).get("TargetKeyId") != key["KeyId"]
    assert set(after) - set(before) <= {name}


def test_duplicate_alias(raises, kms, key, new_key, arn_prefix):
    kms.create_alias(AliasName="alias/dup", TargetKeyId=key["KeyId"])
    msg = f"An alias with the name {arn_prefix}:alias/dup already exists"
    with raises("AlreadyExistsException", message=msg):
        kms.create_alias(AliasName="alias/dup", TargetKeyId=new_key()["KeyId"])
    with raises("AlreadyExistsException", message=msg):
        kms.create_alias(AliasName="alias/dup", TargetKeyId=key["KeyId"])
    assert _aliases(kms)["alias/dup"]["TargetKeyId"] == key["KeyId"]


def test_create_alias_unknown_target(raises, kms, arn_prefix, helpers):
    kid = helpers.unknown_key_id()
    with raises("NotFoundException", message=f"Key '{arn_prefix}:key/{kid}' does not exist"):
        kms.create_alias(AliasName="alias/orphan", TargetKeyId=kid)
    assert "alias/orphan" not in _aliases(kms)


@pytest.mark.parametrize("op", ["create_alias", "update_alias"])
def test_alias_target_must_be_key_id_or_arn(kms, key, new_key, op):
    kms.create_alias(AliasName="alias/first", TargetKeyId=key["KeyId"])
    name = "alias/second" if op == "create_alias" else "alias/first"
    if op == "update_alias":
        other = new_key()
        kms.create_alias(AliasName="alias/points-at-other", TargetKeyId=other["KeyId"])
        target = "alias/points-at-other"
    else:
        target = "alias/first"
    with pytest.raises(ClientError) as info:
        getattr(kms, op)(AliasName=name, TargetKeyId=target)
    assert info.value.response["Error"]["Code"] in ("NotFoundException", "InvalidArnException",
                                                    "ValidationException")
    assert _aliases(kms)["alias/first"]["TargetKeyId"] == key["KeyId"]
    assert "alias/second" not in _aliases(kms)


def test_update_alias_retargets(kms, clock, key, new_key):
    other = new_key()
    kms.create_alias(AliasName="alias/moving", TargetKeyId=key["KeyId"])
    old_blob = kms.encrypt(KeyId="alias/moving", Plaintext=b"old")["CiphertextBlob"]
    created = _aliases(kms)["alias/moving"]["CreationDate"]
    clock.advance(seconds=3600)
    assert set(kms.update_alias(AliasName="alias/moving", TargetKeyId=other["Arn"])) == {"ResponseMetadata"}
    entry = _aliases(kms)["alias/moving"]
    assert entry["TargetKeyId"] == other["KeyId"]
    assert entry["CreationDate"] == created
    assert entry["LastUpdatedDate"] > created
    assert kms.encrypt(KeyId="alias/moving", Plaintext=b"new")["KeyId"] == other["Arn"]
    # Old ciphertexts still name their own key.
    assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"old"
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=old_blob, KeyId="alias/moving")


def test_update_alias_unknown(raises, kms, key, arn_prefix):
    with raises("NotFoundException", message=f"Alias {arn_prefix}:alias/ghost is not found."):
        kms.update_alias(AliasName="alias/ghost", TargetKeyId=key["KeyId"])


def test_update_alias_unknown_target(raises, kms, key, helpers):
    kms.create_alias(AliasName="alias/stay", TargetKeyId=key["KeyId"])
    with raises("NotFoundException"):
        kms.update_alias(AliasName="alias/stay", TargetKeyId=helpers.unknown_key_id())
    assert _aliases(kms)["alias/stay"]["TargetKeyId"] == key["KeyId"]


def test_delete_alias(raises, kms, key, arn_prefix):
    kms.create_alias(AliasName="alias/gone", TargetKeyId=key["KeyId"])
    assert set(kms.delete_alias(AliasName="alias/gone")) == {"ResponseMetadata"}
    assert "alias/gone" not in _aliases(kms)
    missing = f"Alias {arn_prefix}:alias/gone is not found."
    with raises("NotFoundException", message=missing):
        kms.encrypt(KeyId="alias/gone", Plaintext=b"x")
    with raises("NotFoundException", message=missing):
        kms.delete_alias(AliasName="alias/gone")
    # The key itself is untouched.
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_list_aliases_key_filter(raises, kms, key, new_key, helpers):
    other = new_key()
    kms.create_alias(AliasName="alias/mine-1", TargetKeyId=key["KeyId"])
    kms.create_alias(AliasName="alias/mine-2", TargetKeyId=key["KeyId"])
    kms.create_alias(AliasName="alias/theirs", TargetKeyId=other["KeyId"])
    assert set(_aliases(kms, KeyId=key["KeyId"])) == {"alias/mine-1", "alias/mine-2"}
    assert set(_aliases(kms, KeyId=other["Arn"])) == {"alias/theirs"}
    assert _aliases(kms, KeyId=new_key()["KeyId"]) == {}
    with raises("NotFoundException"):
        kms.list_aliases(KeyId=helpers.unknown_key_id())


def test_list_aliases_includes_every_alias(kms, key):
    names = {f"alias/all-{i}" for i in range(4)}
    for name in names:
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    listed = _aliases(kms)
    assert names <= set(listed)
    # Anything else listed is an AWS alias (predefined ones may have no target).
    assert all(n in names or n.startswith("alias/aws/") for n in listed)


@pytest.mark.parametrize("op", ["describe_key", "encrypt", "generate_data_key"])
def test_alias_arn_in_crypto_ops(kms, key, op):
    kms.create_alias(AliasName="alias/by-alias-arn", TargetKeyId=key["KeyId"])
    alias_arn = key["Arn"].replace(f"key/{key['KeyId']}", "alias/by-alias-arn")
    kwargs = {"encrypt": {"Plaintext": b"x"}, "generate_data_key": {"KeySpec": "AES_256"}}.get(op, {})
    resp = getattr(kms, op)(KeyId=alias_arn, **kwargs)
    got = resp["KeyMetadata"]["Arn"] if op == "describe_key" else resp["KeyId"]
    assert got == key["Arn"]


def test_alias_arn_for_another_region_not_found(raises, kms, key):
    kms.create_alias(AliasName="alias/regional", TargetKeyId=key["KeyId"])
    region = key["Arn"].split(":")[3]
    other = "eu-west-1" if region != "eu-west-1" else "us-west-2"
    alias_arn = key["Arn"].replace(f"key/{key['KeyId']}", "alias/regional").replace(f":{region}:", f":{other}:")
    with raises("NotFoundException"):
        kms.encrypt(KeyId=alias_arn, Plaintext=b"x")


def test_alias_on_pending_deletion_key_is_kept_until_deleted(kms, key):
    kms.create_alias(AliasName="alias/pending", TargetKeyId=key["KeyId"])
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert _aliases(kms)["alias/pending"]["TargetKeyId"] == key["KeyId"]
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.encrypt(KeyId="alias/pending", Plaintext=b"x")

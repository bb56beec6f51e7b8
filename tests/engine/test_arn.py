"""The one key-id / ARN / alias parser (kms_core.arn), and upper-case key ids as AWS
treats them: well formed, but no key has that id."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from kms_core import arn
from kms_core.errors import KMSError

KID = "1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize("ref,expected", [
    (KID, arn.KeyRef("key", KID)),
    (f"arn:aws:kms:us-east-1:111122223333:key/{KID}", arn.KeyRef("key", KID, "us-east-1", "111122223333")),
    (f"arn:aws-cn:kms:cn-north-1:111122223333:key/{KID}", arn.KeyRef("key", KID, "cn-north-1", "111122223333")),
    ("alias/app", arn.KeyRef("alias", "alias/app")),
    ("arn:aws:kms:eu-west-1:111122223333:alias/a/b", arn.KeyRef("alias", "alias/a/b", "eu-west-1", "111122223333")),
    (KID.upper(), arn.KeyRef("key", KID.upper())),
])
def test_parse(ref, expected):
    assert arn.parse_key_ref(ref) == expected


@pytest.mark.parametrize("ref,message", [
    ("fake-key-id", "Invalid keyId 'fake-key-id'"),
    (KID + "0", f"Invalid keyId '{KID}0'"),
    ("arn:aws:kms:us-east-1:1234:key/x", "Invalid arn arn:aws:kms:us-east-1:1234:key/x"),
    ("arn:aws:s3:::bucket", "Invalid keyId 'arn:aws:s3:::bucket'"),
    ("arn:aws:kms:us-east-1:111122223333:key/nope", "Invalid keyId 'arn:aws:kms:us-east-1:111122223333:key/nope'"),
])
def test_malformed(ref, message):
    with pytest.raises(KMSError) as e:
        arn.parse_key_ref(ref)
    assert (e.value.code, e.value.message) == ("NotFoundException", message)


@given(st.uuids())
def test_only_lower_case_ids_are_key_ids(u):
    assert arn.is_key_id(str(u))
    assert not arn.is_key_id(str(u).upper()) or str(u) == str(u).upper()


def test_helpers():
    assert arn.alias_of("alias/x") == "alias/x"
    assert arn.alias_of("arn:aws:kms:us-east-1:111122223333:alias/x/y") == "alias/x/y"
    assert arn.alias_of(KID) is None
    assert arn.principal_account("arn:aws:sts::111122223333:assumed-role/r/s") == "111122223333"
    assert arn.principal_account("bob") is None
    assert arn.root_account("arn:aws:iam::111122223333:root") == "111122223333"
    assert arn.root_account("111122223333") == "111122223333"
    assert arn.root_account("arn:aws:iam::111122223333:user/x") is None


@pytest.mark.parametrize("form", ["id", "arn"])
def test_upper_case_key_id_names_no_key(kms, form):
    meta = kms.create_key()["KeyMetadata"]
    upper = meta["KeyId"].upper()
    ref = upper if form == "id" else meta["Arn"].replace(meta["KeyId"], upper)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=ref)
    err = e.value.response["Error"]
    assert err["Code"] == "NotFoundException"
    assert err["Message"] == f"Key '{meta['Arn'].replace(meta['KeyId'], upper)}' does not exist"
    with pytest.raises(ClientError):
        kms.encrypt(KeyId=ref, Plaintext=b"x")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyId"] == meta["KeyId"]

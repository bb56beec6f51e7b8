"""CreateGrant accepts only principals a grant can name (issue #15): an account, an IAM
user or role, an assumed-role or federated-user session.  Anything else used to be
stored as a grant nobody could ever use."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

ACCOUNT = "111122223333"
GOOD = [f"arn:aws:iam::{ACCOUNT}:user/app", f"arn:aws:iam::{ACCOUNT}:role/service",
        f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:sts::{ACCOUNT}:assumed-role/service/session",
        f"arn:aws:sts::{ACCOUNT}:federated-user/bob", f"arn:aws:iam::{ACCOUNT}:user/path/to/app"]
BAD = ["bob", f"arn:aws:iam::{ACCOUNT}:group/admins", "arn:aws:iam::12345:user/app",
       f"arn:aws:s3:::{ACCOUNT}", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/x", "s3.amazonaws.com",
       f"arn:aws:iam::{ACCOUNT}:", f"arn:aws:iam::{ACCOUNT}:user/"]


@pytest.fixture
def key(kms):
    return kms.create_key()["KeyMetadata"]["KeyId"]


@pytest.mark.parametrize("principal", GOOD)
def test_valid_grantees(kms, key, principal):
    g = kms.create_grant(KeyId=key, GranteePrincipal=principal, RetiringPrincipal=principal,
                         Operations=["Encrypt"])
    assert [x["GranteePrincipal"] for x in kms.list_grants(KeyId=key)["Grants"]] == [principal]
    kms.revoke_grant(KeyId=key, GrantId=g["GrantId"])


@pytest.mark.parametrize("field", ["GranteePrincipal", "RetiringPrincipal"])
@pytest.mark.parametrize("principal", BAD)
def test_invalid_principals_are_refused(kms, key, field, principal):
    params = {"GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:user/app", field: principal}
    with pytest.raises(ClientError) as e:
        kms.create_grant(KeyId=key, Operations=["Encrypt"], **params)
    assert e.value.response["Error"]["Code"] == "InvalidArnException"
    assert principal in e.value.response["Error"]["Message"]
    assert kms.list_grants(KeyId=key)["Grants"] == []


def test_pattern_violations_stay_validation_errors(kms, key):
    with pytest.raises(ClientError) as e:
        kms.create_grant(KeyId=key, GranteePrincipal="bob smith", Operations=["Encrypt"])
    assert e.value.response["Error"]["Code"] == "ValidationException"

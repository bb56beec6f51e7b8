"""Operations that involve two keys (or an alias and its key) are authorized on both
(issue #15): CreateAlias, UpdateAlias, DeleteAlias and ReEncrypt, for the console's
administrators, users and a principal the key policies do not name."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kms_core.policy import console_policy

ACCOUNT = "111122223333"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"
USER = f"arn:aws:iam::{ACCOUNT}:user/app"
OUTSIDER = f"arn:aws:iam::{ACCOUNT}:user/outsider"
PRINCIPALS = {"admin": ADMIN, "user": USER, "outsider": OUTSIDER}


def code(call) -> str | None:
    try:
        call()
    except ClientError as e:
        return str(e.response["Error"]["Code"])
    return None


@pytest.fixture
def keys(kms, make_client):
    """Two keys with the console's policy (one administrator, one user, no account
    statement), an alias on the first, and a key of the outsider's own (which only the
    outsider may manage and use)."""
    policy = console_policy(ACCOUNT, administrators=[ADMIN], users=[USER], allow_account=False)
    app = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    app2 = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=app)
    own_policy = console_policy(ACCOUNT, administrators=[OUTSIDER], users=[OUTSIDER], allow_account=False)
    own = make_client(principal=OUTSIDER).create_key(Policy=own_policy)["KeyMetadata"]["KeyId"]
    return {"app": app, "app2": app2, "own": own, "client": lambda who: make_client(principal=PRINCIPALS[who])}


def test_alias_hijack_is_refused(kms, keys):
    """The attack in #15: any principal repoints an alias the application uses to a key of
    its own, then decrypts what the application encrypts next."""
    outsider = keys["client"]("outsider")
    assert code(lambda: outsider.update_alias(AliasName="alias/app", TargetKeyId=keys["own"])) \
        == "AccessDeniedException"
    assert kms.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"] == keys["app"]
    with pytest.raises(ClientError) as e:
        outsider.update_alias(AliasName="alias/app", TargetKeyId=keys["own"])
    msg = e.value.response["Error"]["Message"]
    assert f"kms:UpdateAlias on resource: arn:aws:kms:us-east-1:{ACCOUNT}:key/{keys['app']}" in msg


# (who, which key the alias moves to) -> expected error code (None: allowed)
UPDATE = {
    ("admin", "app2"): None,                      # UpdateAlias on both keys (kms:Update*)
    ("user", "app2"): "AccessDeniedException",    # users may not manage aliases
    ("outsider", "app2"): "AccessDeniedException",
    ("outsider", "own"): "AccessDeniedException",  # allowed on the new key, not on the current one
    ("admin", "own"): "AccessDeniedException",    # allowed on the current key, not on the new one
}


@pytest.mark.parametrize("who,target", list(UPDATE), ids=[f"{w}-{t}" for w, t in UPDATE])
def test_update_alias_needs_both_keys(kms, keys, who, target):
    client = keys["client"](who)
    expected = UPDATE[(who, target)]
    assert code(lambda: client.update_alias(AliasName="alias/app", TargetKeyId=keys[target])) == expected
    now = kms.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"]
    assert now == (keys["app"] if expected else keys[target])


def test_update_alias_needs_the_new_key_too(kms, keys, make_client):
    """An administrator of the current key may not point the alias at a key it cannot manage."""
    other_admin = f"arn:aws:iam::{ACCOUNT}:user/other-admin"
    policy = console_policy(ACCOUNT, administrators=[other_admin], allow_account=False)
    foreign = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    admin = keys["client"]("admin")
    assert code(lambda: admin.update_alias(AliasName="alias/app", TargetKeyId=foreign)) == "AccessDeniedException"


@pytest.mark.parametrize("who,expected", [("admin", None), ("user", "AccessDeniedException"),
                                          ("outsider", "AccessDeniedException")])
def test_create_alias_needs_the_key(kms, keys, who, expected):
    client = keys["client"](who)
    assert code(lambda: client.create_alias(AliasName=f"alias/new-{who}", TargetKeyId=keys["app"])) == expected


@pytest.mark.parametrize("who,expected", [("admin", None), ("user", "AccessDeniedException"),
                                          ("outsider", "AccessDeniedException")])
def test_delete_alias_needs_its_key(kms, keys, who, expected):
    client = keys["client"](who)
    assert code(lambda: client.delete_alias(AliasName="alias/app")) == expected
    names = {a["AliasName"] for a in kms.list_aliases(KeyId=keys["app"])["Aliases"]}
    assert ("alias/app" in names) == (expected is not None)


def test_outsider_cannot_delete_then_recreate_the_alias(kms, keys):
    outsider = keys["client"]("outsider")
    assert code(lambda: outsider.delete_alias(AliasName="alias/app")) == "AccessDeniedException"
    assert code(lambda: outsider.create_alias(AliasName="alias/app", TargetKeyId=keys["own"])) \
        == "AlreadyExistsException"


@pytest.mark.parametrize("who,source,destination,expected", [
    ("user", "app", "app2", None),
    ("user", "app", "own", "AccessDeniedException"),   # the user has no ReEncryptTo on `own`
    ("outsider", "app", "own", "AccessDeniedException"),  # nor the outsider ReEncryptFrom on `app`
    ("admin", "app", "app2", "AccessDeniedException"),  # administrators cannot use the keys
])
def test_reencrypt_needs_from_and_to(kms, keys, who, source, destination, expected):
    blob = kms.encrypt(KeyId=keys[source], Plaintext=b"x")["CiphertextBlob"]
    client = keys["client"](who)
    with_error = code(lambda: client.re_encrypt(CiphertextBlob=blob, DestinationKeyId=keys[destination]))
    assert with_error == expected


def test_reencrypt_denial_names_the_permission(kms, keys):
    blob = kms.encrypt(KeyId=keys["own"], Plaintext=b"x")["CiphertextBlob"]
    user = keys["client"]("user")
    with pytest.raises(ClientError) as e:  # the user may not read from `own`
        user.re_encrypt(CiphertextBlob=blob, DestinationKeyId=keys["app"])
    assert "kms:ReEncryptFrom" in e.value.response["Error"]["Message"]
    blob = kms.encrypt(KeyId=keys["app"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        user.re_encrypt(CiphertextBlob=blob, DestinationKeyId=keys["own"])
    assert "kms:ReEncryptTo" in e.value.response["Error"]["Message"]

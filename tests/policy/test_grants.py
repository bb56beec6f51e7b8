"""Grants: creation rules, idempotency, constraints, tokens, retire and revoke,
and that they open and close access on the operations they cover."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kms_core.policy import console_policy

ACCOUNT = "111122223333"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"
APP = f"arn:aws:iam::{ACCOUNT}:user/app"
RETIRER = f"arn:aws:iam::{ACCOUNT}:user/retirer"


def code(e):
    return e.value.response["Error"]["Code"]


@pytest.fixture
def setup(make_client):
    admin = make_client(principal=ADMIN)
    app = make_client(principal=APP)
    retirer = make_client(principal=RETIRER)
    policy = console_policy(ACCOUNT, administrators=[ADMIN], allow_account=False)
    key = admin.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    return admin, app, retirer, key


def test_grant_opens_and_revoke_closes_access(setup):
    admin, app, _, key = setup
    with pytest.raises(ClientError) as e:
        app.encrypt(KeyId=key, Plaintext=b"x")
    assert code(e) == "AccessDeniedException"
    g = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt", "Decrypt"])
    blob = app.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    with pytest.raises(ClientError):  # not granted
        app.generate_data_key(KeyId=key, KeySpec="AES_256")
    listed = admin.list_grants(KeyId=key)["Grants"]
    assert [x["GrantId"] for x in listed] == [g["GrantId"]]
    assert listed[0]["GranteePrincipal"] == APP and "GrantToken" not in listed[0]
    admin.revoke_grant(KeyId=key, GrantId=g["GrantId"])
    with pytest.raises(ClientError) as e:
        app.decrypt(CiphertextBlob=blob)
    assert code(e) == "AccessDeniedException"


def test_constraints(setup):
    admin, app, _, key = setup
    admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"],
                       Constraints={"EncryptionContextSubset": {"dept": "it"}})
    admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"],
                       Constraints={"EncryptionContextEquals": {"dept": "it"}})
    blob = app.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"dept": "it", "x": "1"})["CiphertextBlob"]
    with pytest.raises(ClientError):
        app.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"dept": "hr"})
    with pytest.raises(ClientError):  # Equals: the extra pair is not allowed
        app.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "it", "x": "1"})
    blob2 = app.encrypt(KeyId=key, Plaintext=b"y", EncryptionContext={"dept": "it"})["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob2, EncryptionContext={"dept": "it"})["Plaintext"] == b"y"


def test_name_idempotency_and_tokens(setup):
    admin, _, _, key = setup
    a = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"], Name="nightly")
    b = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"], Name="nightly")
    assert a["GrantId"] == b["GrantId"] and a["GrantToken"] != b["GrantToken"]
    c = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], Name="nightly")
    assert c["GrantId"] != a["GrantId"]
    other = admin.create_key(Policy=console_policy(ACCOUNT, administrators=[ADMIN], allow_account=False))
    d = admin.create_grant(KeyId=other["KeyMetadata"]["KeyId"], GranteePrincipal=APP,
                           Operations=["Encrypt"], Name="nightly")
    assert d["GrantId"] != a["GrantId"]  # names are per key (LocalStack #7910)
    admin.describe_key(KeyId=key, GrantTokens=[a["GrantToken"]])
    with pytest.raises(ClientError) as e:
        admin.describe_key(KeyId=key, GrantTokens=["not-a-token"])
    assert code(e) == "InvalidGrantTokenException"


@pytest.mark.parametrize("ops", [["Sign"], ["GenerateMac"], ["Bogus"], []])
def test_operations_must_suit_the_key(setup, ops):
    admin, _, _, key = setup
    with pytest.raises(ClientError) as e:
        admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=ops)
    assert code(e) == "ValidationException"


def test_retire_rules(setup):
    admin, app, retirer, key = setup
    g = admin.create_grant(KeyId=key, GranteePrincipal=APP, RetiringPrincipal=RETIRER,
                           Operations=["Encrypt"])
    assert [x["GrantId"] for x in retirer.list_retirable_grants(RetiringPrincipal=RETIRER)["Grants"]] == [g["GrantId"]]
    with pytest.raises(ClientError) as e:  # the grantee lacks RetireGrant
        app.retire_grant(GrantToken=g["GrantToken"])
    assert code(e) == "AccessDeniedException"
    retirer.retire_grant(GrantToken=g["GrantToken"])
    assert admin.list_grants(KeyId=key)["Grants"] == []
    g2 = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt", "RetireGrant"])
    app.retire_grant(KeyId=key, GrantId=g2["GrantId"])
    with pytest.raises(ClientError) as e:
        admin.revoke_grant(KeyId=key, GrantId=g2["GrantId"])
    assert code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        admin.revoke_grant(KeyId=key, GrantId="zz")
    assert code(e) == "InvalidGrantIdException"


def test_grantee_with_create_grant_may_only_narrow(setup, make_client):
    admin, app, _, key = setup
    admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt", "CreateGrant"],
                       Constraints={"EncryptionContextSubset": {"dept": "it"}})
    app.create_grant(KeyId=key, GranteePrincipal=RETIRER, Operations=["Encrypt"],
                     Constraints={"EncryptionContextSubset": {"dept": "it", "team": "a"}})
    for ops, cons in ((["Decrypt"], {"EncryptionContextSubset": {"dept": "it"}}),
                      (["Encrypt"], None),
                      (["Encrypt"], {"EncryptionContextSubset": {"dept": "hr"}})):
        kwargs = {"Constraints": cons} if cons else {}
        with pytest.raises(ClientError) as e:
            app.create_grant(KeyId=key, GranteePrincipal=RETIRER, Operations=ops, **kwargs)
        assert code(e) == "AccessDeniedException"


def test_grants_state_and_pagination(setup):
    admin, _, _, key = setup
    ids = {admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"],
                              Name=f"g{i}")["GrantId"] for i in range(5)}
    seen, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        r = admin.list_grants(KeyId=key, Limit=2, **kw)
        seen += [g["GrantId"] for g in r["Grants"]]
        if not r["Truncated"]:
            break
        marker = r["NextMarker"]
    assert set(seen) == ids and len(seen) == 5
    admin.disable_key(KeyId=key)
    with pytest.raises(ClientError) as e:
        admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"])
    assert code(e) == "DisabledException"
    assert len(admin.list_grants(KeyId=key)["Grants"]) == 5

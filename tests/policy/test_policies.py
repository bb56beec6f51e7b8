"""Key policies: separate admin and usage permissions, Deny wins, conditions,
the lockout check, and grants opening and closing access."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from kms_core.errors import KMSError
from kms_core.policy import condition_holds, console_policy, parse_policy

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"
USER = f"arn:aws:iam::{ACCOUNT}:user/app"
OTHER = f"arn:aws:iam::{ACCOUNT}:user/other"


def code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


@pytest.fixture
def as_(make_client):
    cache = {}

    def get(principal):
        if principal not in cache:
            cache[principal] = make_client(principal=principal)
        return cache[principal]
    return get


@pytest.fixture
def console_key(kms):
    """A key with the console's policy: no account statement, one admin, one user."""
    policy = console_policy(ACCOUNT, administrators=[ADMIN], users=[USER], allow_account=False)
    return kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]


def test_default_policy_lets_every_account_principal_manage_and_use(kms, as_):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    c = as_(OTHER)
    blob = c.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    c.disable_key(KeyId=key)
    c.enable_key(KeyId=key)
    doc = json.loads(c.get_key_policy(KeyId=key)["Policy"])
    assert doc["Statement"][0]["Principal"] == {"AWS": ROOT} and doc["Statement"][0]["Action"] == "kms:*"
    assert c.list_key_policies(KeyId=key)["PolicyNames"] == ["default"]


def test_administrator_cannot_use_the_key(console_key, as_):
    admin = as_(ADMIN)
    admin.describe_key(KeyId=console_key)
    admin.disable_key(KeyId=console_key)
    admin.enable_key(KeyId=console_key)
    admin.tag_resource(KeyId=console_key, Tags=[{"TagKey": "team", "TagValue": "a"}])
    for call in (lambda: admin.encrypt(KeyId=console_key, Plaintext=b"x"),
                 lambda: admin.generate_data_key(KeyId=console_key, KeySpec="AES_256")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == "AccessDeniedException"
        msg = e.value.response["Error"]["Message"]
        assert msg.startswith(f"User: {ADMIN} is not authorized to perform: kms:")
        assert "because no resource-based policy allows" in msg
    blob = as_(USER).encrypt(KeyId=console_key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        admin.decrypt(CiphertextBlob=blob)
    assert code(e.value) == "AccessDeniedException"


def test_user_cannot_administer_the_key(console_key, as_):
    user = as_(USER)
    blob = user.encrypt(KeyId=console_key, Plaintext=b"secret")["CiphertextBlob"]
    assert user.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    user.describe_key(KeyId=console_key)
    for call in (lambda: user.disable_key(KeyId=console_key),
                 lambda: user.schedule_key_deletion(KeyId=console_key, PendingWindowInDays=7),
                 lambda: user.put_key_policy(KeyId=console_key, Policy=console_policy(ACCOUNT))):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == "AccessDeniedException"


def test_principal_not_named_is_denied_everything(console_key, as_):
    with pytest.raises(ClientError) as e:
        as_(OTHER).describe_key(KeyId=console_key)
    assert code(e.value) == "AccessDeniedException"


def test_explicit_deny_wins(kms, as_):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": USER}, "Action": "kms:Decrypt", "Resource": "*"}]}
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    blob = as_(USER).encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        as_(USER).decrypt(CiphertextBlob=blob)
    assert code(e.value) == "AccessDeniedException"
    assert "explicit deny" in e.value.response["Error"]["Message"]
    assert as_(OTHER).decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_encryption_context_conditions(kms, as_):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": ["kms:Encrypt", "kms:Decrypt"],
         "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blue"}}},
        {"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "kms:GenerateDataKey*",
         "Resource": "*", "Condition": {"ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["app*"]},
                                        "Null": {"kms:EncryptionContextKeys": "false"}}}]}
    key = as_(ADMIN).create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    user = as_(USER)
    blob = user.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "blue"})["CiphertextBlob"]
    assert user.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "blue"})["Plaintext"] == b"x"
    # Condition key names are case-insensitive in IAM, values are not.
    user.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"Tenant": "blue"})
    for ec in ({"tenant": "red"}, {}, {"tenant": "Blue"}):
        with pytest.raises(ClientError) as e:
            user.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=ec)
        assert code(e.value) == "AccessDeniedException"
    other = as_(OTHER)
    other.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"app": "1", "appx": "2"})
    for ec in ({"app": "1", "user": "2"}, {}):
        with pytest.raises(ClientError):
            other.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=ec)


def test_caller_account_and_wildcard_principal(kms, as_):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Describe*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT}}}]}
    key = as_(ADMIN).create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    as_(OTHER).describe_key(KeyId=key)
    with pytest.raises(ClientError):
        as_("arn:aws:iam::999999999999:user/x").describe_key(KeyId=key)
    with pytest.raises(ClientError):
        as_(OTHER).encrypt(KeyId=key, Plaintext=b"x")


def test_lockout_safety_check(kms, as_):
    locked = console_policy(ACCOUNT, users=[USER], allow_account=False)
    with pytest.raises(ClientError) as e:
        as_(ADMIN).create_key(Policy=locked)
    assert code(e.value) == "MalformedPolicyDocumentException"
    key = as_(ADMIN).create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        as_(ADMIN).put_key_policy(KeyId=key, Policy=locked)
    assert code(e.value) == "MalformedPolicyDocumentException"
    as_(ADMIN).put_key_policy(KeyId=key, Policy=locked, BypassPolicyLockoutSafetyCheck=True)
    with pytest.raises(ClientError) as e:
        as_(ADMIN).get_key_policy(KeyId=key)
    assert code(e.value) == "AccessDeniedException"


@pytest.mark.parametrize("bad", [
    "not json", "[]", json.dumps({"Statement": []}),
    json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kms:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "kms:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*",
                               "Condition": {"StringSorta": {"kms:CallerAccount": "1"}}}]}),
])
def test_malformed_policies(kms, bad):
    with pytest.raises(ClientError) as e:
        kms.create_key(Policy=bad)
    assert code(e.value) == "MalformedPolicyDocumentException"
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.put_key_policy(KeyId=key, Policy=bad)
    assert code(e.value) == "MalformedPolicyDocumentException"


def test_action_wildcards():
    pol = parse_policy(json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": ["kms:Describe*", "kms:ReEncrypt*"]}]}))
    for action, want in (("kms:DescribeKey", "Allow"), ("kms:ReEncryptFrom", "Allow"),
                         ("kms:reencryptto", "Allow"), ("kms:Decrypt", "Implicit")):
        assert pol.decide(USER, ACCOUNT, action, {}) == want


@pytest.mark.parametrize("op,key,expected,ctx,want", [
    ("StringEquals", "k", ["a"], {"k": "a"}, True),
    ("StringEquals", "k", ["a"], {"k": "A"}, False),
    ("StringEqualsIgnoreCase", "k", ["a"], {"k": "A"}, True),
    ("StringNotEquals", "k", ["a"], {"k": "b"}, True),
    ("StringLike", "k", ["a*"], {"k": "abc"}, True),
    ("StringNotLike", "k", ["a*"], {"k": "abc"}, False),
    ("Bool", "k", ["true"], {"k": "true"}, True),
    ("Null", "k", ["true"], {}, True),
    ("Null", "k", ["false"], {"k": "x"}, True),
    ("StringEqualsIfExists", "k", ["a"], {}, True),
    ("StringEquals", "k", ["a"], {}, False),
    ("ForAnyValue:StringEquals", "k", ["a"], {"k": ["b", "a"]}, True),
    ("ForAllValues:StringEquals", "k", ["a"], {"k": ["b", "a"]}, False),
    ("NumericLessThanEquals", "k", ["30"], {"k": "7"}, True),
])
def test_condition_operators(op, key, expected, ctx, want):
    assert condition_holds(op, key, expected, ctx) is want


def test_managed_key_refuses_direct_use_by_principals_and_administration(kms, as_):
    """As AWS: an AWS-managed key is used through its service (kms:ViaService), never
    directly; the trusted local application is not evaluated (docs/policies.md)."""
    blob = kms.encrypt(KeyId="alias/aws/s3", Plaintext=b"x")["CiphertextBlob"]
    c = as_(USER)
    key = c.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]  # metadata: the account's
    for call in (lambda: c.encrypt(KeyId="alias/aws/s3", Plaintext=b"x"),
                 lambda: c.decrypt(CiphertextBlob=blob),
                 lambda: c.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256"),
                 lambda: c.disable_key(KeyId=key)):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == "AccessDeniedException"
        assert "because no resource-based policy allows the kms:" in e.value.response["Error"]["Message"]


S3_VIA = "s3.us-east-1.amazonaws.com"
MANAGED_MATRIX = [  # (principal, via service, managed key's alias, allowed?)
    (USER, S3_VIA, "alias/aws/s3", True),
    (ROOT, S3_VIA, "alias/aws/s3", True),
    (USER, "lambda.us-east-1.amazonaws.com", "alias/aws/s3", False),   # another service's key
    (USER, "s3.eu-west-1.amazonaws.com", "alias/aws/s3", False),       # the service in another Region
    (USER, None, "alias/aws/s3", False),                               # direct use
    ("arn:aws:iam::444455556666:user/x", S3_VIA, "alias/aws/s3", False),  # another account
    (USER, "lambda.us-east-1.amazonaws.com", "alias/aws/lambda", True),
]


@pytest.mark.parametrize("principal,via,alias,allowed", MANAGED_MATRIX,
                         ids=[f"{p.rsplit(':', 1)[-1]}-{v}-{a}" for p, v, a, _ in MANAGED_MATRIX])
def test_managed_key_through_its_service_only(engine, kms, principal, via, alias, allowed):
    from kms_core.engine import RequestContext

    blob = kms.encrypt(KeyId=alias, Plaintext=b"x")["CiphertextBlob"]
    ctx = RequestContext(principal=principal, via_service=via)
    calls = [("Encrypt", {"KeyId": alias, "Plaintext": b"x"}), ("Decrypt", {"CiphertextBlob": blob}),
             ("GenerateDataKey", {"KeyId": alias, "KeySpec": "AES_256"}),
             ("ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": alias})]
    for operation, params in calls:
        if allowed:
            engine.call(operation, params, ctx)
        else:
            with pytest.raises(KMSError) as e:
                engine.call(operation, params, ctx)
            assert e.value.code == "AccessDeniedException", operation


def test_via_service_condition_on_a_customer_key(engine, kms):
    """kms:ViaService is what the request says (a service access key), for any key's policy."""
    from kms_core.engine import RequestContext

    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": S3_VIA}}}]})
    key = kms.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x"}, RequestContext(principal=USER, via_service=S3_VIA))
    with pytest.raises(KMSError) as e:
        engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x"}, RequestContext(principal=USER))
    assert e.value.code == "AccessDeniedException"


CLI_MATRIX = [  # (principal, kms command, allowed?) on a key with the console's policy
    (ADMIN, ["get-key-policy", "--policy-name", "default"], True),
    (ADMIN, ["encrypt", "--plaintext", "aGk="], False),
    (USER, ["encrypt", "--plaintext", "aGk="], True),
    (USER, ["get-key-policy", "--policy-name", "default"], False),
    (OTHER, ["describe-key"], False),
    (None, ["encrypt", "--plaintext", "aGk="], True),  # no --principal: the trusted local application
]


@pytest.mark.parametrize("principal,command,allowed", CLI_MATRIX,
                         ids=[f"{(p or 'local').rsplit('/', 1)[-1]}-{c[0]}" for p, c, _ in CLI_MATRIX])
def test_cli_principal_is_evaluated_like_a_client(console_key, as_, capsys, principal, command, allowed):
    """`kms --principal ARN` gets the key policy's decision an in-process client gets (#15.4)."""
    from kms_core.cli import main

    argv = (["--principal", principal] if principal else []) + command + ["--key-id", console_key]
    capsys.readouterr()
    rc = main(argv)
    _, err = capsys.readouterr()
    if allowed:
        assert rc == 0, err
    else:
        action = "kms:" + "".join(w.capitalize() for w in command[0].split("-"))
        assert rc == 255 and err.strip().endswith(
            f"User: {principal} is not authorized to perform: {action} on resource: "
            f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{console_key} because no resource-based policy "
            f"allows the {action} action"), err
        client = as_(principal)
        with pytest.raises(ClientError) as e:
            getattr(client, command[0].replace("-", "_"))(KeyId=console_key, **(
                {"Plaintext": b"hi"} if command[0] == "encrypt" else
                {"PolicyName": "default"} if command[0] == "get-key-policy" else {}))
        assert code(e.value) == "AccessDeniedException"

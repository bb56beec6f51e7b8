"""Every `kms` call on the embedded engine is in the audit trail (issue #15.4): as the
trusted local application or as `--principal` / KMS_PRINCIPAL, with the OS user and the
CLI's user agent; a key policy's denial reaches the user in AWS's words and is audited."""
from __future__ import annotations

import json
import os
import platform
import pwd

import pytest

from kms_core import __version__

ACCOUNT = "111122223333"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
OS_USER = pwd.getpwuid(os.geteuid()).pw_name


def _events(kms_proc) -> list[dict]:
    tail = kms_proc("audit", "tail", "-n", "100")
    assert tail.rc == 0, tail
    return [json.loads(line) for line in tail.out.splitlines() if line.strip()]


def _deny_bob_policy() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "No encryption for bob", "Effect": "Deny", "Principal": {"AWS": BOB},
         "Action": "kms:Encrypt", "Resource": "*"}]})


def test_create_disable_enable_are_audited_with_os_user_and_cli_user_agent(kms_proc):
    created = kms_proc("create-key", "--query", "KeyMetadata.KeyId", "--output", "text")
    assert created.rc == 0, created
    key = created.out.strip()
    for op in ("disable-key", "enable-key"):
        assert kms_proc(op, "--key-id", key).rc == 0
    verify = kms_proc("audit", "verify")
    assert verify.rc == 0 and verify.out.startswith("OK: 3 records verified"), verify
    events = _events(kms_proc)
    assert [e["eventName"] for e in events] == ["CreateKey", "DisableKey", "EnableKey"]
    agent = f"kms-cli/{__version__} Python/{platform.python_version()} {platform.system()}/"
    for e in events:
        ui = e["userIdentity"]
        # the trusted local application, recorded as every in-process caller: the account root
        assert ui["type"] == "Root" and ui["arn"] == ROOT and "accessKeyId" not in ui
        assert ui["sessionContext"] == {"sourceIdentity": OS_USER}
        assert e["userAgent"].startswith(agent) and e["sourceIPAddress"] == "in-process"
        assert e["resources"][0]["ARN"].endswith(key)
    assert events[1]["requestParameters"] == {"keyId": key}


def test_principal_denied_by_key_policy_in_aws_words_and_audited(kms_proc):
    made = kms_proc("create-key", "--policy", _deny_bob_policy(), "--query", "KeyMetadata.Arn",
                    "--output", "text")
    assert made.rc == 0, made
    key_arn = made.out.strip()
    denied = kms_proc("--principal", BOB, "encrypt", "--key-id", key_arn, "--plaintext", "aGk=")
    assert denied.rc == 255 and denied.out == ""
    assert denied.err.strip() == (
        "An error occurred (AccessDeniedException) when calling the Encrypt operation: "
        f"User: {BOB} is not authorized to perform: kms:Encrypt on resource: {key_arn} "
        "with an explicit deny in a resource-based policy")
    # The same principal from the environment; what the policy allows still works.
    allowed = kms_proc("describe-key", "--key-id", key_arn, env={"KMS_PRINCIPAL": BOB})
    assert allowed.rc == 0, allowed
    assert kms_proc("audit", "verify").rc == 0
    events = _events(kms_proc)
    assert [e["eventName"] for e in events] == ["CreateKey", "Encrypt", "DescribeKey"]
    refused = events[1]
    assert refused["errorCode"] == "AccessDeniedException"
    assert refused["userIdentity"]["arn"] == BOB and refused["userIdentity"]["type"] == "IAMUser"
    assert refused["userIdentity"]["sessionContext"] == {"sourceIdentity": OS_USER}
    assert events[2]["userIdentity"]["arn"] == BOB and "errorCode" not in events[2]


def test_principal_on_a_managed_key_is_refused_like_a_direct_caller(kms_proc):
    out = kms_proc("--principal", BOB, "encrypt", "--key-id", "alias/aws/s3", "--plaintext", "aGk=")
    assert out.rc == 255 and "(AccessDeniedException)" in out.err
    assert "because no resource-based policy allows the kms:Encrypt action" in out.err
    # The trusted local application (no principal) keeps using it as before.
    assert kms_proc("encrypt", "--key-id", "alias/aws/s3", "--plaintext", "aGk=").rc == 0


@pytest.mark.parametrize("bad", ["bob", "arn:aws:iam::1234:user/bob", "arn:aws:s3:::bucket", "*"])
def test_bad_principal_is_one_line_and_changes_nothing(cli, bad):
    out = cli("--principal", bad, "list-keys")
    assert out.rc == 255 and out.err.startswith("Bad value for --principal") and out.err.count("\n") == 1
    assert "Traceback" not in out.err


def test_principal_with_an_endpoint_is_refused(cli):
    out = cli("--principal", BOB, "--endpoint-url", "http://127.0.0.1:9", "list-keys")
    assert out.rc == 255 and "--principal applies to the embedded engine only" in out.err


def test_in_process_cli_commits_each_call(cli):
    """`kms` run in-process (main()) too: its event is committed when main returns."""
    from kms_core.audit import AuditReader
    from kms_core.settings import Settings
    from kms_core.store import Store

    assert cli("list-keys").rc == 0
    assert cli("--principal", BOB, "list-aliases").rc == 0
    store = Store(Settings.from_env())
    try:
        bodies = [json.loads(b) for _, b in AuditReader(store).events()]
    finally:
        store.dispose()
    assert [(e["eventName"], e["userIdentity"]["arn"]) for e in bodies] == [("ListKeys", ROOT),
                                                                             ("ListAliases", BOB)]


def test_in_process_client_with_a_principal_is_audited(kms_home):
    """kms_core.client(principal=...) (opening its own engine) records every call."""
    import kms_core
    from kms_core.audit import AuditReader

    carol = f"arn:aws:iam::{ACCOUNT}:user/carol"
    c = kms_core.client(principal=carol)
    key = c.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(c.exceptions.AccessDeniedException):
        c.encrypt(KeyId="alias/aws/lambda", Plaintext=b"x")
    log = c.engine.auditor
    assert log is not None and log.flush(30)
    bodies = [json.loads(b) for _, b in AuditReader(log.store).events()]
    log.close()
    assert [(e["eventName"], e["userIdentity"]["arn"], e.get("errorCode")) for e in bodies] == [
        ("CreateKey", carol, None), ("Encrypt", carol, "AccessDeniedException")]
    assert bodies[0]["resources"][0]["ARN"].endswith(key)

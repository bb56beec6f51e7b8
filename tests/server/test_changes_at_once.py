"""On a `kms serve` with two workers, a change is in force when the call that made it returns (#15.2).

Each check is followed at once by requests on several fresh connections (spread over both
workers), and every one of them must see the change: a new grant's token works, a retired or
revoked grant, a disabled key and a deleted access key stop working — also when the change is
made by another process (the `kms` CLI on the same store).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from kms_core.policy import console_policy

ACCOUNT = "111122223333"
FANOUT = 12  # fresh clients (connections) per check


def _code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def _outcomes(make_client, call) -> list[str]:
    out = []
    for _ in range(FANOUT):
        try:
            call(make_client())
            out.append("ok")
        except ClientError as e:
            out.append(_code(e))
    return out


def _kms_cli(srv, *args: str) -> None:
    env = dict(srv.env)
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kms"), *args], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def two_workers(make_server):
    srv = make_server(workers=2)
    admin_key = srv.create_access_key("admin")
    app_key = srv.create_access_key("app")
    admin = srv.client(admin_key)
    policy = console_policy(ACCOUNT, administrators=[f"arn:aws:iam::{ACCOUNT}:user/admin"], allow_account=False)
    key = admin.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    return srv, admin, app_key, key


def test_grants_and_key_state_on_every_worker_when_the_call_returns(two_workers):
    srv, admin, app_key, key = two_workers
    app_arn = f"arn:aws:iam::{ACCOUNT}:user/app"
    grant = admin.create_grant(KeyId=key, GranteePrincipal=app_arn, Operations=["Encrypt", "Decrypt"],
                               RetiringPrincipal=f"arn:aws:iam::{ACCOUNT}:user/admin")
    token = grant["GrantToken"]
    # A grant token makes the grant usable at once on every worker.
    assert set(_outcomes(lambda: srv.client(app_key),
                         lambda c: c.encrypt(KeyId=key, Plaintext=b"card", GrantTokens=[token]))) == {"ok"}
    blob = srv.client(app_key).encrypt(KeyId=key, Plaintext=b"card")["CiphertextBlob"]
    assert set(_outcomes(lambda: srv.client(app_key), lambda c: c.decrypt(CiphertextBlob=blob))) == {"ok"}

    admin.retire_grant(KeyId=key, GrantId=grant["GrantId"])
    assert set(_outcomes(lambda: srv.client(app_key),
                         lambda c: c.decrypt(CiphertextBlob=blob))) == {"AccessDeniedException"}

    # Revoked by another process (the CLI on the same store), then disabled from the server.
    grant = admin.create_grant(KeyId=key, GranteePrincipal=app_arn, Operations=["Decrypt"])
    assert set(_outcomes(lambda: srv.client(app_key), lambda c: c.decrypt(CiphertextBlob=blob))) == {"ok"}
    _kms_cli(srv, "revoke-grant", "--key-id", key, "--grant-id", grant["GrantId"])
    assert set(_outcomes(lambda: srv.client(app_key),
                         lambda c: c.decrypt(CiphertextBlob=blob))) == {"AccessDeniedException"}

    admin.create_grant(KeyId=key, GranteePrincipal=app_arn, Operations=["Decrypt"])
    admin.disable_key(KeyId=key)
    assert set(_outcomes(lambda: srv.client(app_key),
                         lambda c: c.decrypt(CiphertextBlob=blob))) == {"DisabledException"}
    _kms_cli(srv, "enable-key", "--key-id", key)
    assert set(_outcomes(lambda: srv.client(app_key), lambda c: c.decrypt(CiphertextBlob=blob))) == {"ok"}


def test_a_deleted_access_key_stops_working_when_the_command_returns(two_workers):
    srv, _, app_key, _ = two_workers
    assert set(_outcomes(lambda: srv.client(app_key), lambda c: c.list_keys())) == {"ok"}
    _kms_cli(srv, "delete-access-key", "--access-key-id", app_key["AccessKeyId"])
    assert set(_outcomes(lambda: srv.client(app_key),
                         lambda c: c.list_keys())) == {"UnrecognizedClientException"}

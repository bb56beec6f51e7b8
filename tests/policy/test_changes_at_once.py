"""Grants and key-state changes take effect when the call returns, in every process (#15.2).

Each engine below stands for another process (its own caches, with a cache_ttl far longer
than the test, so only the change signal can make it see a change).  On one host they share
the shared-memory change counter; "another host" is simulated with its own signal directory
(``KMS_CHANGE_SIGNAL_DIR``) and must learn of changes from PostgreSQL's NOTIFY — or, for a
grant token, by reading the grant through.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

import kms_core
from kms_core.changes import ChangeSignal, store_identity
from kms_core.policy import console_policy

ACCOUNT = "111122223333"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"
APP = f"arn:aws:iam::{ACCOUNT}:user/app"
LONG_TTL = 3600.0  # nothing may depend on the periodic check


def code(e) -> str:
    return e.value.response["Error"]["Code"]


@pytest.fixture
def two_processes(make_engine, tmp_path, monkeypatch):
    """(writer engine, reader engine) on one store, like two workers of one host."""

    def make(store_url=None, *, other_host=False):
        a = make_engine(store_url, cache_ttl=LONG_TTL)
        if other_host:
            monkeypatch.setenv("KMS_CHANGE_SIGNAL_DIR", str(tmp_path / "other-host"))
            (tmp_path / "other-host").mkdir(exist_ok=True)
        b = make_engine(store_url, cache_ttl=LONG_TTL)
        monkeypatch.delenv("KMS_CHANGE_SIGNAL_DIR", raising=False)
        return a, b

    return make


def _setup(a, b):
    admin = kms_core.client(engine=a, principal=ADMIN)
    key = admin.create_key(Policy=console_policy(ACCOUNT, administrators=[ADMIN], allow_account=False))
    key_id = key["KeyMetadata"]["KeyId"]
    return admin, kms_core.client(engine=b, principal=APP), kms_core.client(engine=b), key_id


def test_signal_is_shared_by_processes_on_one_host(tmp_path):
    ident = store_identity(f"sqlite:///{tmp_path}/kms.db")
    mine = ChangeSignal(ident)
    try:
        before = mine.value()
        code_ = ("import sys; from kms_core.changes import ChangeSignal; "
                 f"s = ChangeSignal({ident!r}); [s.bump() for _ in range(3)]")
        subprocess.run([sys.executable, "-c", code_], check=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert mine.value() == before + 3
        assert (os.stat(mine.path).st_mode & 0o777) == 0o600
    finally:
        mine.close()
    assert store_identity("sqlite://") is None  # a private in-memory store has nobody to tell


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_state_and_grant_changes_reach_another_process_before_the_call_returns(two_processes, backend,
                                                                               request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    a, b = two_processes(url)
    admin, app, local_b, key = _setup(a, b)
    blob = local_b.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]  # b caches the key

    grant = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], RetiringPrincipal=ADMIN)
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"  # b saw the new grant at once
    admin.retire_grant(KeyId=key, GrantId=grant["GrantId"])
    with pytest.raises(ClientError) as e:
        app.decrypt(CiphertextBlob=blob)
    assert code(e) == "AccessDeniedException"

    grant = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"])
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    with pytest.raises(ClientError) as e:
        app.decrypt(CiphertextBlob=blob)
    assert code(e) == "AccessDeniedException"

    admin.disable_key(KeyId=key)
    with pytest.raises(ClientError) as e:
        local_b.decrypt(CiphertextBlob=blob)
    assert code(e) == "DisabledException"
    admin.enable_key(KeyId=key)
    assert local_b.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_a_grant_token_works_at_once_on_another_host(two_processes):
    # No shared signal, no notification (SQLite), a one-hour cache: only the token can help.
    a, b = two_processes(other_host=True)
    admin, app, local_b, key = _setup(a, b)
    blob = local_b.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError):
        app.decrypt(CiphertextBlob=blob)  # b now caches "no grants" for the key
    grant = admin.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"])
    with pytest.raises(ClientError) as e:
        app.decrypt(CiphertextBlob=blob)  # without the token: eventual, as in AWS
    assert code(e) == "AccessDeniedException"
    out = app.decrypt(CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])
    assert out["Plaintext"] == b"x"


def test_another_host_on_postgresql_learns_of_changes_by_notification(two_processes, pg_url):
    a, b = two_processes(pg_url, other_host=True)
    admin, _, local_b, key = _setup(a, b)
    blob = local_b.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert b.store.wait_listening(10)
    with pytest.raises(ClientError):  # the client's first error loads botocore's exception classes (~0.5 s)
        local_b.describe_key(KeyId="alias/none")
    delays = []
    for _ in range(5):
        admin.disable_key(KeyId=key)
        t0 = time.monotonic()
        while True:
            try:
                local_b.decrypt(CiphertextBlob=blob)
            except ClientError as e:
                assert e.response["Error"]["Code"] == "DisabledException"
                break
            assert time.monotonic() - t0 < 10, "the other host never learnt of the change"
            time.sleep(0.001)
        delays.append(time.monotonic() - t0)
        admin.enable_key(KeyId=key)
        while True:
            try:
                local_b.decrypt(CiphertextBlob=blob)
                break
            except ClientError:
                assert time.monotonic() - t0 < 10
                time.sleep(0.001)
    print(f"NOTIFY delay to another host: {min(delays) * 1e3:.1f}–{max(delays) * 1e3:.1f} ms")

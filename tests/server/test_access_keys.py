"""`kms create-access-key` / `list-access-keys` / `delete-access-key` and how the server uses them."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time

import botocore.exceptions
import pytest
import sqlalchemy as sa

from kms_core.server import cli
from kms_core.server.credentials import AccessKeys, CredentialCache, access_keys


@pytest.fixture
def store_env(kms_home):
    return kms_home


def _run(capsys, fn, *argv):
    code = fn(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_delete(store_env, capsys):
    code, out, err = _run(capsys, cli.create_access_key_main, "--user-name", "alice")
    assert code == 0, err
    made = json.loads(out)["AccessKey"]
    assert set(made) == {"UserName", "AccessKeyId", "SecretAccessKey", "Status", "CreateDate"}
    assert made["UserName"] == "alice" and made["Status"] == "Active"
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", made["AccessKeyId"])
    assert len(made["SecretAccessKey"]) == 40
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", made["CreateDate"])

    _run(capsys, cli.create_access_key_main, "--user-name", "bob")
    code, out, _ = _run(capsys, cli.list_access_keys_main)
    listed = json.loads(out)["AccessKeyMetadata"]
    assert [k["UserName"] for k in listed] == ["alice", "bob"]
    assert "SecretAccessKey" not in out and made["SecretAccessKey"] not in out
    code, out, _ = _run(capsys, cli.list_access_keys_main, "--user-name", "alice")
    assert [k["AccessKeyId"] for k in json.loads(out)["AccessKeyMetadata"]] == [made["AccessKeyId"]]

    assert _run(capsys, cli.delete_access_key_main, "--access-key-id", made["AccessKeyId"])[0] == 0
    code, out, _ = _run(capsys, cli.list_access_keys_main)
    assert [k["UserName"] for k in json.loads(out)["AccessKeyMetadata"]] == ["bob"]
    code, out, err = _run(capsys, cli.delete_access_key_main, "--access-key-id", made["AccessKeyId"])
    assert code == 255
    assert err.strip() == (f"An error occurred (NoSuchEntity) when calling the DeleteAccessKey operation: "
                           f"The Access Key with id {made['AccessKeyId']} cannot be found.")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon"])
def test_user_name_rules(store_env, capsys, name):
    code, out, err = _run(capsys, cli.create_access_key_main, "--user-name", name)
    assert code == 255 and out == ""
    assert "(ValidationException)" in err and "Traceback" not in err


def test_secret_is_stored_sealed(store_env, capsys):
    from kms_core.settings import Settings
    from kms_core.store import Store

    _, out, _ = _run(capsys, cli.create_access_key_main, "--user-name", "carol")
    made = json.loads(out)["AccessKey"]
    secret = made["SecretAccessKey"].encode()
    db = store_env / "kms.db"
    raw = b"".join(p.read_bytes() for p in store_env.iterdir() if p.name.startswith("kms.db"))
    assert secret not in raw and base64.b64encode(secret) not in raw
    store = Store(Settings.from_env())
    try:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(access_keys)).one()
        assert secret not in row.sealed_secret
        # Bound to its row: the sealed secret does not open under another key id.
        with store.engine.begin() as conn:
            conn.execute(sa.update(access_keys).values(access_key_id="AKIAMOVEDMOVEDMOVED2"))
        with pytest.raises(Exception) as e:
            AccessKeys(store, "111122223333").resolve("AKIAMOVEDMOVEDMOVED2")
        assert made["SecretAccessKey"] not in str(e.value)
    finally:
        store.dispose()
    assert db.exists()


def test_credential_cache_expires(store_env):
    from kms_core.settings import Settings
    from kms_core.store import Store

    now = [0.0]
    store = Store(Settings.from_env())
    try:
        keys = AccessKeys(store, "111122223333")
        made = keys.create("dave")["AccessKey"]
        cache = CredentialCache(keys, ttl=1.0, clock=lambda: now[0])
        assert cache.peek(made["AccessKeyId"]) == (False, None)
        cred = cache.load(made["AccessKeyId"])
        assert cred.principal == "arn:aws:iam::111122223333:user/dave"
        assert made["SecretAccessKey"] not in repr(cred) and made["SecretAccessKey"] not in repr(cache)
        assert cache.peek(made["AccessKeyId"]) == (True, cred)
        now[0] = 1.01
        assert cache.peek(made["AccessKeyId"]) == (False, None)  # past its ttl
        assert cache.load(made["AccessKeyId"]) == cred
        keys.delete(made["AccessKeyId"])
        # A deletion empties the cache before it returns (#15.2), whatever the ttl says.
        assert cache.peek(made["AccessKeyId"]) == (False, None)
        assert cache.load(made["AccessKeyId"]) is None
        assert cache.peek(made["AccessKeyId"]) == (True, None)  # misses are cached too
    finally:
        store.dispose()


def test_deleted_key_stops_working_on_the_server(server):
    key = server.create_access_key("temp")
    kms = server.client(key)
    assert "Keys" in kms.list_keys()
    from kms_core.store import Store

    store = Store(server.settings())
    try:
        AccessKeys(store, "111122223333").delete(key["AccessKeyId"])
    finally:
        store.dispose()
    time.sleep(1.1)  # the server's credential cache TTL
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kms.list_keys()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_kms_command_entry_points(store_env):
    kms = shutil.which("kms") or pytest.fail("the `kms` console script is not installed")
    env = {**os.environ}
    out = subprocess.run([kms, "create-access-key", "--user-name", "erin"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["AccessKey"]["UserName"] == "erin"
    out = subprocess.run([kms, "serve", "--help"], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0 and "--dev-credentials" in out.stdout


def test_credential_cache_reloads_ahead_once(store_env):
    from kms_core.settings import Settings
    from kms_core.store import Store

    now = [0.0]
    store = Store(Settings.from_env())
    try:
        keys = AccessKeys(store, "111122223333")
        made = keys.create("erin")["AccessKey"]
        akid = made["AccessKeyId"]
        cache = CredentialCache(keys, ttl=1.0, clock=lambda: now[0])
        assert cache.lookup(akid) == (False, None, False)
        cred = cache.load(akid)
        now[0] = 0.4
        assert cache.lookup(akid) == (True, cred, False)  # young entry: no reload
        now[0] = 0.6
        assert cache.lookup(akid) == (True, cred, True)   # past half its ttl: one caller reloads
        assert cache.lookup(akid) == (True, cred, False)  # the others do not, meanwhile
        assert cache.peek(akid) == (True, cred)
        keys.delete(akid)
        assert cache.load(akid) is None                   # the reload sees the deletion
        assert cache.lookup(akid) == (True, None, False)  # and its result is a fresh entry
        now[0] = 1.2                                      # that entry, too, is reloaded ahead
        assert cache.lookup(akid) == (True, None, True)
        now[0] = 1.61
        assert cache.lookup(akid) == (False, None, False)  # never served past its ttl
    finally:
        store.dispose()

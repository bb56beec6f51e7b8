"""Files under KMS_HOME are private: the home 0700, every file in it 0600 (the
SQLite store and its -wal/-shm, root.key, exports), whatever the umask; wider
existing ones are reported once."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import stat

import pytest

import kms_core
from kms_core.audit import attach
from kms_core.settings import Settings


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # the usual default: files 0644, directories 0755
    yield
    os.umask(old)


def _modes(home) -> dict[str, int]:
    out = {}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, home)] = stat.S_IMODE(os.lstat(p).st_mode)
    out["."] = stat.S_IMODE(os.stat(home).st_mode)
    return out


def test_demo_like_workload_leaves_only_private_files(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "fresh-home"  # does not exist yet: kms-local creates it
    monkeypatch.setenv("KMS_HOME", str(home))
    for var in ("KMS_ROOT_KEY", "KMS_ROOT_KEY_FILE", "KMS_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    kms = kms_core.client(home=str(home))  # a new store and a new root.key
    log = attach(kms.engine)
    key = kms.create_key(Description="modes")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/modes", TargetKeyId=key)
    blob = kms.encrypt(KeyId="alias/modes", Plaintext=b"secret")["CiphertextBlob"]
    kms.decrypt(CiphertextBlob=blob)
    kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    from kms_core.server.cli import create_access_key_main
    with contextlib.redirect_stdout(io.StringIO()):
        assert create_access_key_main(["--user-name", "alice"]) == 0
    assert log.flush(30)
    from kms_core.audit_cli import main as audit_main
    with contextlib.redirect_stdout(io.StringIO()):
        assert audit_main(["export", "--output", str(home / "audit-export.jsonl")]) == 0
    modes = _modes(home)
    assert {"kms.db", "root.key", "audit-export.jsonl"} <= set(modes), modes
    assert any(name.endswith("-wal") for name in modes), modes  # the WAL exists while open
    wide = {name: oct(m) for name, m in modes.items()
            if m != (0o700 if os.path.isdir(home / name) else 0o600)}
    assert not wide, wide
    log.close()


def test_wider_existing_home_and_store_are_reported_once(tmp_path, caplog):
    home = tmp_path / "shared-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    db = home / "kms.db"
    db.touch()
    os.chmod(db, 0o644)
    caplog.set_level(logging.WARNING, logger="kms_core.settings")
    Settings.from_env(home=home, root_key=b"\0" * 32)
    Settings.from_env(home=home, root_key=b"\0" * 32)
    msgs = [r.getMessage() for r in caplog.records if r.name == "kms_core.settings"]
    assert sum(str(home) + " is accessible" in m for m in msgs) == 1, msgs
    assert sum(str(db) + " is accessible" in m for m in msgs) == 1, msgs
    assert all("0755" in m or "0644" in m for m in msgs)
    # left as they were: the owner decides
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o755

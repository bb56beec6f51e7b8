"""The in-memory store: KMS_STORE_URL=sqlite:// (or sqlite:///:memory:)."""
from __future__ import annotations

import threading

import pytest

import kms_core
from kms_core.clock import FakeClock
from kms_core.engine import Engine
from kms_core.settings import Settings


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_store_from_the_environment(url, tmp_path, monkeypatch, capfd):
    home = tmp_path / "home"
    monkeypatch.setenv("KMS_HOME", str(home))
    monkeypatch.setenv("KMS_STORE_URL", url)
    for var in ("KMS_ROOT_KEY", "KMS_ROOT_KEY_FILE", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(var, raising=False)
    kms = kms_core.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
    assert not home.exists()  # no files: no database, no root key file
    out, err = capfd.readouterr()
    assert "root key" not in err + out


def _engine() -> Engine:
    return Engine.open(Settings.from_env(store_url="sqlite://"), FakeClock())


def test_each_memory_store_is_its_own():
    a, b = _engine(), _engine()
    try:
        key_id = a.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        assert b.call("ListKeys", {})["Keys"] == []
        assert [k["KeyId"] for k in a.call("ListKeys", {})["Keys"]] == [key_id]
    finally:
        a.close()
        b.close()


def test_memory_store_is_thread_safe():
    engine = _engine()
    errors: list[BaseException] = []

    def work():
        try:
            for i in range(15):
                key_id = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
                engine.call("CreateAlias", {"AliasName": f"alias/{key_id}-{i}", "TargetKeyId": key_id})
                engine.call("TagResource", {"KeyId": key_id, "Tags": [{"TagKey": "t", "TagValue": "v"}]})
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(engine.call("ListKeys", {"Limit": 1000})["Keys"]) == 90
    finally:
        engine.close()


def test_closed_memory_store_frees_its_database():
    engine = _engine()
    engine.call("CreateKey", {})
    engine.close()
    fresh = _engine()  # a new store never sees an old one's keys
    try:
        assert fresh.call("ListKeys", {})["Keys"] == []
    finally:
        fresh.close()

"""The read-only cold-start Decrypt path (kms_core.light) agrees with the
engine, falls back to it for everything but the plain case, and keeps
SQLAlchemy and botocore out of a process that only decrypts."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

import kms_core
from kms_core.light import LightDecryptor
from kms_core.model import OPERATIONS
from kms_core.operation_names import OPERATION_NAMES
from kms_core.settings import Settings


def test_operation_names_match_the_model():
    assert list(OPERATION_NAMES) == list(OPERATIONS)


@pytest.fixture
def store(kms_home, root_key):
    """A default-style store: a full client to write, a light one to read."""
    writer = kms_core.client(home=kms_home, root_key=root_key, cache_ttl=0.05)
    key = writer.create_key()["KeyMetadata"]["KeyId"]
    reader = kms_core.client(home=kms_home, root_key=root_key, cache_ttl=0.05)
    assert reader._light is not None
    return writer, reader, key


def test_light_path_matches_the_engine(store, kms_home, root_key):
    writer, _, key = store
    light = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key))

    @settings(max_examples=40, deadline=None)
    @given(pt=st.binary(min_size=1, max_size=300),
           ec=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3))
    def check(pt, ec):
        blob = writer.encrypt(KeyId=key, Plaintext=pt, EncryptionContext=ec)["CiphertextBlob"]
        got = light.decrypt({"CiphertextBlob": blob, "EncryptionContext": ec})
        want = writer.decrypt(CiphertextBlob=blob, EncryptionContext=ec)
        assert got == {k: want[k] for k in ("KeyId", "Plaintext", "EncryptionAlgorithm", "KeyMaterialId")}
        assert light.decrypt({"CiphertextBlob": blob, "EncryptionContext": {**ec, "x": "y"}}) is None

    check()


def test_errors_come_from_the_engine(store):
    writer, reader, key = store
    blob = writer.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"a": "b"})["CiphertextBlob"]
    with pytest.raises(reader.exceptions.InvalidCiphertextException):
        reader.decrypt(CiphertextBlob=blob)
    writer.disable_key(KeyId=key)
    time.sleep(0.1)  # past both clients' cache TTL
    fresh = kms_core.client(home=writer._settings.home, root_key=writer._settings.root_key)
    with pytest.raises(ClientError) as e:
        fresh.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert e.value.response["Error"]["Code"] == "DisabledException"


def test_changes_by_another_process_are_honoured_within_the_ttl(store, kms_home, root_key):
    writer, _, key = store
    blob = writer.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    light = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key, cache_ttl=0.05))
    assert light.decrypt({"CiphertextBlob": blob})["Plaintext"] == b"x"
    writer.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    time.sleep(0.06)
    assert light.decrypt({"CiphertextBlob": blob}) is None


def test_wrong_root_key_is_never_used(store, kms_home):
    writer, _, key = store
    blob = writer.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    light = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=os.urandom(32)))
    assert light.decrypt({"CiphertextBlob": blob}) is None


def test_a_decrypt_only_process_imports_no_sqlalchemy_or_botocore(store, kms_home, root_key):
    writer, _, key = store
    blob = writer.encrypt(KeyId=key, Plaintext=b"cold", EncryptionContext={"f": "g"})["CiphertextBlob"]
    code = (
        "import sys, kms_core\n"
        f"k = kms_core.client(home={str(kms_home)!r})\n"
        f"assert k.decrypt(CiphertextBlob={blob!r}, EncryptionContext={{'f': 'g'}})['Plaintext'] == b'cold'\n"
        "heavy = [m for m in ('sqlalchemy', 'botocore', 'boto3') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    env = dict(os.environ, KMS_ROOT_KEY=__import__("base64").b64encode(root_key).decode())
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_multi_region_key_in_the_primary_and_a_replica_region(kms_home, root_key):
    """A multi-Region key's blob (format v2) opens on the light path in every Region that has
    the key: each Region reads its own row (``mrk-…/<region>``) and the shared material.  A
    Region without a replica, or a replica that is not Enabled, falls back to the engine."""
    us_w = kms_core.client(home=kms_home, root_key=root_key, region_name="us-east-1", cache_ttl=0.05)
    kid = us_w.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us_w.replicate_key(KeyId=kid, ReplicaRegion="eu-west-1")
    eu_w = kms_core.client(home=kms_home, root_key=root_key, region_name="eu-west-1", cache_ttl=0.05)
    from_us = us_w.encrypt(KeyId=kid, Plaintext=b"from us", EncryptionContext={"a": "b"})["CiphertextBlob"]
    from_eu = eu_w.encrypt(KeyId=kid, Plaintext=b"from eu")["CiphertextBlob"]
    assert from_us[0] == from_eu[0] == 2
    fields = ("KeyId", "Plaintext", "EncryptionAlgorithm", "KeyMaterialId")
    for region, writer in (("us-east-1", us_w), ("eu-west-1", eu_w)):
        light = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key, region=region,
                                                              cache_ttl=0.05))
        for blob, ec in ((from_us, {"a": "b"}), (from_eu, None)):
            got = light.decrypt({"CiphertextBlob": blob, **({"EncryptionContext": ec} if ec else {})})
            want = writer.decrypt(CiphertextBlob=blob, **({"EncryptionContext": ec} if ec else {}))
            assert got is not None, region
            assert got == {k: want[k] for k in fields}
            assert got["KeyId"] == f"arn:aws:kms:{region}:111122223333:key/{kid}"
        # Through a cold client of that Region: answered without opening the engine.
        cold = kms_core.client(home=kms_home, root_key=root_key, region_name=region)
        assert cold.decrypt(CiphertextBlob=from_eu)["Plaintext"] == b"from eu"
        assert cold._engine is None
    ap = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key, region="ap-southeast-2"))
    assert ap.decrypt({"CiphertextBlob": from_eu}) is None
    eu_w.disable_key(KeyId=kid)
    time.sleep(0.06)
    eu = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key, region="eu-west-1"))
    assert eu.decrypt({"CiphertextBlob": from_eu}) is None
    us = LightDecryptor.for_settings(Settings.from_env(home=kms_home, root_key=root_key, region="us-east-1"))
    assert us.decrypt({"CiphertextBlob": from_eu})["Plaintext"] == b"from eu"


def test_light_row_id_is_the_repository_row_id(tmp_path):
    from kms_core.engine.repository import row_id

    kid = "mrk-" + "ab" * 16
    for region in ("us-east-1", "x" * 40):
        light = LightDecryptor(tmp_path / "none.db", bytes(32), "111122223333", region, 1.0)
        assert light._row_id(kid) == row_id(kid, region)
        assert light._row_id("1234abcd-12ab-34cd-56ef-1234567890ab") == "1234abcd-12ab-34cd-56ef-1234567890ab"

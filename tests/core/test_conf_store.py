"""The sealed store, on SQLite and PostgreSQL: a wrong root key is refused
before anything is written, reopening keeps everything, key material never
sits in the database in clear, and a second engine on the same store (as
another process would) honours changes within its refresh interval."""
from __future__ import annotations

import base64
import binascii
import os
import re
import time

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import kms_core
from kms_core.envelope import encode_context


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, kms_home):
    """(name, store URL) — None means the embedded default under KMS_HOME."""
    if request.param == "sqlite":
        return "sqlite", None
    return "postgresql", request.getfixturevalue("pg_url")


@pytest.fixture
def store_client(backend, make_engine):
    """``store_client(**settings)``: a client on its own Engine (its own cache,
    as another process would have) over the backend's store."""
    _, url = backend

    def make(**kwargs):
        return kms_core.client(engine=make_engine(url, **kwargs))

    return make


def _db_url(backend, kms_home):
    name, url = backend
    return url if url is not None else f"sqlite:///{kms_home / 'kms.db'}"


def _all_values(url):
    """Every cell of every table in the store, as bytes."""
    eng = sa.create_engine(url)
    out = []
    try:
        md = sa.MetaData()
        md.reflect(eng)
        assert md.tables, "store has no tables"
        with eng.connect() as conn:
            for table in md.tables.values():
                for row in conn.execute(sa.select(table)):
                    for v in row:
                        if isinstance(v, (bytes, bytearray, memoryview)):
                            out.append(bytes(v))
                        elif v is not None:
                            out.append(str(v).encode())
    finally:
        eng.dispose()
    return out


def _decodings(value: bytes):
    """The value and whatever hex or base64 text inside it decodes to."""
    yield value
    for m in re.finditer(rb"[0-9a-fA-F]{64,}", value):
        try:
            yield binascii.unhexlify(m.group()[: len(m.group()) // 2 * 2])
        except binascii.Error:
            pass
    for m in re.finditer(rb"[A-Za-z0-9+/=_-]{43,}", value):
        chunk = m.group()
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(chunk + b"=" * (-len(chunk) % 4))
            except (binascii.Error, ValueError):
                pass


def _window_opens(data: bytes, blob: bytes, ctx: dict) -> bool:
    """Does any 32-byte window of ``data`` open ``blob`` as an AES-256-GCM key?
    Uses the published blob layout (docs/ciphertext-blob.md: 21-byte header,
    12-byte nonce, ciphertext+tag; AAD = header + encoded context)."""
    header, nonce, body = blob[:21], blob[21:33], blob[33:]
    aad = header + encode_context(ctx)
    for i in range(len(data) - 31):
        try:
            AESGCM(data[i:i + 32]).decrypt(nonce, body, aad)
            return True
        except InvalidTag:
            continue
    return False


def test_window_scan_finds_material_when_present():
    """The detector used below can fail: it finds a planted key."""
    key = os.urandom(32)
    header = b"\x01" + os.urandom(16) + (1).to_bytes(4, "big")
    nonce = os.urandom(12)
    blob = header + nonce + AESGCM(key).encrypt(nonce, b"x", header + encode_context({}))
    assert _window_opens(os.urandom(100) + key + os.urandom(50), blob, {})
    assert not _window_opens(os.urandom(300), blob, {})
    hexed = b"prefix " + binascii.hexlify(key) + b" suffix"
    assert any(_window_opens(d, blob, {}) for d in _decodings(hexed))


def test_key_material_never_in_clear(kms_home, backend, store_client):
    kms = store_client()
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    secret = os.urandom(48)
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    blobs = [kms.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]]
    kms.rotate_key_on_demand(KeyId=kid)
    blobs.append(kms.encrypt(KeyId=kid, Plaintext=secret)["CiphertextBlob"])
    managed = kms.encrypt(KeyId="alias/aws/s3", Plaintext=b"y")["CiphertextBlob"]
    url = _db_url(backend, kms_home)
    values = _all_values(url)
    if backend[0] == "sqlite":
        for suffix in ("", "-wal", "-journal"):
            path = kms_home / f"kms.db{suffix}"
            if path.exists():
                values.append(path.read_bytes())
    candidates = [d for v in values for d in _decodings(v) if len(d) >= 32]
    for blob in blobs + [managed]:
        assert not any(_window_opens(d, blob, {}) for d in candidates), "key material stored in clear"
    joined = b"\0".join(values)
    assert dk["Plaintext"] not in joined and secret not in joined


def _snapshot(home):
    return {p.name: p.read_bytes() for p in home.iterdir()
            if p.is_file() and not p.name.endswith("-shm")}


def test_wrong_root_key_fails_before_writing(kms_home, monkeypatch):
    good = kms_core.client()
    kid = good.create_key(Description="sealed")["KeyMetadata"]["KeyId"]
    good.encrypt(KeyId=kid, Plaintext=b"x")
    before = _snapshot(kms_home)
    wrong = os.urandom(32)
    with pytest.raises(Exception) as info:
        kms_core.client(root_key=wrong).list_keys()
    err = info.value
    assert not isinstance(err, (AssertionError, TypeError, AttributeError, KeyError))
    text = str(err)
    assert "root key" in text.lower(), text
    assert base64.b64encode(wrong).decode() not in text and wrong.hex() not in text
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(wrong).decode())
    with pytest.raises(Exception) as info:
        kms_core.client().create_key()
    assert "root key" in str(info.value).lower()
    assert _snapshot(kms_home) == before


def test_wrong_root_key_on_postgresql(kms_home, pg_url, make_engine):
    good = kms_core.client(engine=make_engine(pg_url))
    good.create_key()
    values = sorted(_all_values(pg_url))
    with pytest.raises(Exception) as info:
        kms_core.client(store_url=pg_url, root_key=os.urandom(32)).create_key()
    assert "root key" in str(info.value).lower()
    assert sorted(_all_values(pg_url)) == values


def test_reopen_keeps_everything(backend, store_client, clock):
    first = store_client()
    kid = first.create_key(Description="persist", Tags=[{"TagKey": "t", "TagValue": "v"}])["KeyMetadata"]["KeyId"]
    first.create_alias(AliasName="alias/persist", TargetKeyId=kid)
    old = first.encrypt(KeyId=kid, Plaintext=b"old", EncryptionContext={"a": "b"})["CiphertextBlob"]
    first.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    first.rotate_key_on_demand(KeyId=kid)
    new = first.encrypt(KeyId="alias/persist", Plaintext=b"new")["CiphertextBlob"]
    meta = first.describe_key(KeyId=kid)["KeyMetadata"]

    again = store_client()
    assert again.describe_key(KeyId="alias/persist")["KeyMetadata"] == meta
    assert again.decrypt(CiphertextBlob=old, EncryptionContext={"a": "b"})["Plaintext"] == b"old"
    assert again.decrypt(CiphertextBlob=new)["Plaintext"] == b"new"
    assert again.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "t", "TagValue": "v"}]
    status = again.get_key_rotation_status(KeyId=kid)
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 90)
    assert len(again.list_key_rotations(KeyId=kid)["Rotations"]) == 1


def _eventually(fn, within):
    """Call ``fn`` until it stops raising AssertionError, for at most ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            return fn()
        except (AssertionError, pytest.fail.Exception):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_second_engine_sees_changes_within_refresh_interval(backend, store_client, raises_on):
    ttl = 0.05
    a = store_client()
    b = store_client(cache_ttl=ttl)
    kid = a.create_key()["KeyMetadata"]["KeyId"]
    arn = b.encrypt(KeyId=kid, Plaintext=b"warm the cache")["KeyId"]

    def refused(code, message):
        def check():
            with raises_on(b, code, message=message):
                b.encrypt(KeyId=kid, Plaintext=b"x")
        return check

    a.disable_key(KeyId=kid)
    time.sleep(ttl * 2)
    refused("DisabledException", f"{arn} is disabled.")()

    a.enable_key(KeyId=kid)
    time.sleep(ttl * 2)
    before = b.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]

    a.rotate_key_on_demand(KeyId=kid)
    current = a.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
    time.sleep(ttl * 2)
    blob = b.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    assert a.decrypt(CiphertextBlob=blob)["KeyMaterialId"] == current
    assert b.decrypt(CiphertextBlob=before)["Plaintext"] == b"x"

    a.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    time.sleep(ttl * 2)
    refused("KMSInvalidStateException", f"{arn} is pending deletion.")()
    assert b.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_default_refresh_interval_is_at_most_one_second(backend, store_client):
    a = store_client()
    b = store_client()  # default cache_ttl
    kid = a.create_key()["KeyMetadata"]["KeyId"]
    b.encrypt(KeyId=kid, Plaintext=b"warm")
    a.disable_key(KeyId=kid)
    start = time.monotonic()

    def check():
        with pytest.raises(ClientError) as info:
            b.encrypt(KeyId=kid, Plaintext=b"x")
        assert info.value.response["Error"]["Code"] == "DisabledException"

    _eventually(check, within=3)
    # 1 s of cache lifetime, plus slack for a loaded machine.
    assert time.monotonic() - start <= 1.5


def test_second_engine_sees_new_aliases_and_keys(backend, store_client):
    a = store_client()
    b = store_client(cache_ttl=0.05)
    b.list_aliases()
    kid = a.create_key()["KeyMetadata"]["KeyId"]
    a.create_alias(AliasName="alias/fresh", TargetKeyId=kid)
    time.sleep(0.1)
    assert b.describe_key(KeyId="alias/fresh")["KeyMetadata"]["KeyId"] == kid
    other = a.create_key()["KeyMetadata"]["KeyId"]
    a.update_alias(AliasName="alias/fresh", TargetKeyId=other)
    time.sleep(0.1)
    assert b.encrypt(KeyId="alias/fresh", Plaintext=b"x")["KeyId"].endswith(other)


_WRITER = r"""
import base64, os, sys
import kms_core
kms = kms_core.client(store_url=sys.argv[1], root_key=base64.b64decode(os.environ["T_ROOT"]),
                      home=os.environ["T_HOME"])
n = 0
while True:
    kid = kms.create_key(Tags=[{"TagKey": "n", "TagValue": str(n)}])["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/crash-%d" % n, TargetKeyId=kid)
    kms.rotate_key_on_demand(KeyId=kid)
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=100)
    n += 1
    print(n, flush=True)
"""


def test_killed_writer_leaves_a_consistent_store(tmp_path, kms_home, root_key, pg_url, make_engine):
    """SIGKILL a process in the middle of a stream of writes (SQLite and
    PostgreSQL at once): every key the store then lists is whole and usable."""
    import subprocess
    import sys

    urls = [f"sqlite:///{tmp_path / 'crash.db'}", pg_url]
    for url in urls:
        kms_core.client(engine=make_engine(url)).list_keys()
    env = dict(os.environ, T_ROOT=base64.b64encode(root_key).decode(), T_HOME=str(kms_home))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for url in urls]
    try:
        for p in procs:  # let each get a few rounds in, then kill it mid-stream
            for _ in range(3):
                line = p.stdout.readline()
                assert line, p.stderr.read()
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    for url in urls:
        kms = kms_core.client(engine=make_engine(url))
        keys = kms.list_keys(Limit=1000)["Keys"]
        assert len(keys) >= 3
        for entry in keys:
            kid = entry["KeyId"]
            meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
            assert meta["KeyState"] == "Enabled"
            rotations = kms.list_key_rotations(KeyId=kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
            assert [r["KeyMaterialId"] for r in rotations if r["KeyMaterialState"] == "CURRENT"] == [
                meta["CurrentKeyMaterialId"]]
            blob = kms.encrypt(KeyId=kid, Plaintext=b"after the crash")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after the crash"
            assert len(kms.list_resource_tags(KeyId=kid)["Tags"]) == 1
        # The store still takes writes.
        kms.create_alias(AliasName="alias/after-crash", TargetKeyId=keys[0]["KeyId"])


def test_sqlite_commits_are_durable_when_the_call_returns(make_engine):
    # WAL + synchronous=NORMAL can lose the last commits on power loss (SQLite's documentation):
    # a key created, used to encrypt, then gone.  Every connection the store opens — writers,
    # readers, the audit writer's — must fsync the WAL at each commit (synchronous=FULL, 2).
    eng = make_engine()
    key_id = kms_core.client(engine=eng).create_key()["KeyMetadata"]["KeyId"]
    assert key_id
    with eng.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("database", ["postgresql", "mariadb"])
def test_processes_opening_a_new_schema_at_once_all_start(database, pg_url, mysql_url):
    """`kms serve --workers 2` and two nodes open a new schema at the same moment; the
    existence check and CREATE TABLE are separate statements, so the loser of the race got a
    duplicate-table error and its worker stopped the whole server (reproduced with
    benchmarks/server_stalls.py). Every opener must succeed, each table created once."""
    import threading

    from kms_core.audit.chain import audit_events, audit_head, audit_pruned
    from kms_core.console.sessions import console_sessions
    from kms_core.store import create_tables, metadata

    url = pg_url if database == "postgresql" else mysql_url
    everything = list(dict.fromkeys([*metadata.sorted_tables, audit_events, audit_head, audit_pruned, console_sessions]))
    engines = [sa.create_engine(url) for _ in range(6)]
    try:
        for e in engines:  # connected before the race, so that the CREATEs collide
            with e.connect():
                pass
        barrier = threading.Barrier(len(engines))
        errors: list[BaseException] = []

        def open_schema(engine):
            barrier.wait()
            try:
                create_tables(engine, everything)
            except BaseException as exc:  # collected: the assertion below names it
                errors.append(exc)

        threads = [threading.Thread(target=open_schema, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        names = set(sa.inspect(engines[0]).get_table_names())
        assert {t.name for t in everything} <= names
    finally:
        for e in engines:
            e.dispose()

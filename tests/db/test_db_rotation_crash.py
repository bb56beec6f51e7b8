"""#16.3: `kms db reencrypt` on a deterministic column, SIGKILLed at 20 points
and resumed, while an application process that started before it keeps
looking values up, inserting and trying duplicates.  Equality and UNIQUE must
be right before, during, after and after every kill, in that process and in a
fresh one.  The column holds healthy rows and rows an earlier version's rotation
left split between two data keys (which the run repairs: rows under the
other key are not found by value until it has moved them, then they are).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns import configure
from integrations.encrypted_columns.keys import FORCED_KEY, KEYRING

PROCS = os.path.join(os.path.dirname(__file__), "crash_procs.py")
SEED = 60
BATCH = 5
KILL_POINTS = [2 + 2 * i for i in range(20)]  # SQL events: statements and COMMITs


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db_url(request, tmp_path):
    """SQLite and PostgreSQL (MariaDB: the same repair runs in-process in
    test_db_tools.py; a third subprocess run here would cost ~20 s of CI)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    return request.getfixturevalue("pg_module_url")


@pytest.fixture
def app(tmp_path, monkeypatch, unique, crash_db_url, counting_kms):
    table = unique("accounts")
    (tmp_path / "crash_app.py").write_text(textwrap.dedent(f'''
        import sqlalchemy as sa
        from integrations.encrypted_columns import EncryptedType

        metadata = sa.MetaData()
        accounts = sa.Table({table!r}, metadata, sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("email", EncryptedType(sa.String(40), deterministic=True),
                                      unique=True))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "crash_app", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    import crash_app
    engine = sa.create_engine(crash_db_url)
    crash_app.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(crash_app.accounts.insert(),
                     [{"id": i, "email": f"u{i}@x.org"} for i in range(1, SEED + 1)])
    yield crash_app.accounts, engine
    crash_app.metadata.drop_all(engine)
    engine.dispose()


def _key_of_rows(engine, t) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.id, sa.type_coerce(t.c.email, sa.LargeBinary))).all()
    return {i: bytes(raw)[2:10].hex() for i, raw in rows}


def _split_like_an_old_rotation(engine, t, ids):
    """What the old `reencrypt` left when killed: rows under its job key."""
    col = t.c.email
    with engine.begin() as conn:
        job = KEYRING.scoped_key(conn, col.type.key_id, "reencrypt:" + col.type.key_scope())
        token = FORCED_KEY.set(job)
        try:
            for i in ids:
                conn.execute(sa.update(t).where(t.c.id == i).values(email=f"u{i}@x.org"))
        finally:
            FORCED_KEY.reset(token)


def _check(engine, t, active: str, strays_before: int) -> int:
    """Every seeded value reads back; every value under the column's key is found
    by equality (in this process with cold caches, like a new one); rows under
    another key only decrease.  Returns the rows still under another key."""
    configure(kms=KEYRING.settings.kms)  # forget cached keys: a process started now
    keys = _key_of_rows(engine, t)
    with engine.connect() as conn:
        values = dict(conn.execute(sa.select(t.c.id, t.c.email).where(t.c.id <= SEED)).all())
        assert values == {i: f"u{i}@x.org" for i in range(1, SEED + 1)}
        found = conn.execute(sa.select(t.c.id, t.c.email).where(
            t.c.email.in_([f"u{i}@x.org" for i in range(1, SEED + 1)]))).all()
        assert sorted(found) == [(i, f"u{i}@x.org") for i in range(1, SEED + 1) if keys[i] == active]
        for i in (1, 21, SEED):  # and by ==
            found_one = conn.execute(sa.select(t.c.id).where(t.c.email == f"u{i}@x.org")).scalar_one_or_none()
            assert found_one == (i if keys[i] == active else None), i
    strays = sum(k != active for k in keys.values())
    assert strays <= strays_before
    return strays


@pytest.mark.slow
def test_reencrypt_killed_at_20_points_keeps_equality_and_unique(app, tmp_path):
    t, engine = app
    active = _key_of_rows(engine, t)[1]
    # rows 21-40 as an earlier version's killed rotation left them (the rest healthy)
    _split_like_an_old_rotation(engine, t, range(21, 41))
    url = engine.url.render_as_string(hide_password=False)
    stop = tmp_path / "stop"
    env = dict(os.environ)
    writer = subprocess.Popen([sys.executable, PROCS, "writer", url, "crash_app", str(SEED), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    zygote = subprocess.Popen([sys.executable, PROCS, "zygote", url, "crash_app:accounts.email", str(BATCH),
                               str(tmp_path / "tool.log")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        ready = json.loads(writer.stdout.readline())  # it has looked values up: keys cached
        assert ready["ready"] == SEED - 20

        def run(n: int) -> str:
            zygote.stdin.write(f"{n}\n")
            zygote.stdin.flush()
            return zygote.stdout.readline().strip()

        strays = 20
        outcomes = []
        for n in KILL_POINTS:
            outcomes.append(run(n))
            assert outcomes[-1] in ("killed", "0"), (n, outcomes, (tmp_path / "tool.log").read_text())
            strays = _check(engine, t, active, strays)
        assert outcomes.count("killed") >= 15, outcomes  # the points fall inside the run
        assert run(0) == "0", (tmp_path / "tool.log").read_text()
        log = (tmp_path / "tool.log").read_text()
        assert "values processed" in log.splitlines()[-2]
        assert "deterministic column: its data key stays" in log
        assert _check(engine, t, active, strays) == 0
        assert set(_key_of_rows(engine, t).values()) == {active}  # the column's key never changed
    finally:
        stop.touch()
        zygote.stdin.close()
        zygote.wait(timeout=60)
        out, err = writer.communicate(timeout=120)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["lookups"] > 20 and stats["dups_tried"] > 10 and stats["inserts"] > 10, (stats, err)
    assert stats["missed"] == 0 and stats["dup_accepted"] == 0, stats
    assert stats["insert_failed"] == 0, stats
    assert stats["final_missed"] == 0 and stats["final_dup_accepted"] == 0, stats
    with engine.begin() as conn:  # and here, a process that starts after it all
        for i in (1, 21, 40, SEED):
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(t.insert(), [{"id": 10**6 + i, "email": f"u{i}@x.org"}])

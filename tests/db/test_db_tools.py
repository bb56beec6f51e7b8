"""Rotation and migration tools on all three databases, including runs
interrupted mid-way (Ctrl-C inside a KMS call) and resumed."""
from __future__ import annotations

import decimal

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns import (
    SIGN_ONLY,
    EncryptedColumnError,
    EncryptedJSON,
    EncryptedType,
    key_table,
    tools,
)
from integrations.encrypted_columns.keys import FORCED_KEY, KEYRING


def _rows(n):
    return [{"id": i, "name": f"name-{i}*", "email": f"u{i}@x.org", "amount": decimal.Decimal(f"{i}.50")}
            for i in range(1, n + 1)]


@pytest.fixture
def people(db, unique):
    md = sa.MetaData()
    t = sa.Table(unique("people"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", EncryptedType(sa.String(40))),
                 sa.Column("email", EncryptedType(sa.String(40), deterministic=True), unique=True),
                 sa.Column("amount", EncryptedType(sa.Numeric(10, 2))))
    md.create_all(db)
    with db.begin() as conn:
        conn.execute(t.insert(), _rows(30))
    yield t
    md.drop_all(db)


def _read(db, t):
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id))]


def _key_ids(db, col):
    with db.connect() as conn:
        raw = conn.execute(sa.select(sa.type_coerce(col, sa.LargeBinary))).scalars().all()
    return {bytes(r)[2:10].hex() for r in raw if r is not None}


def test_rewrap_interrupted_and_resumed(db, people, counting_kms, fresh_caches):
    kms = counting_kms
    new_arn = kms.create_key(Description="new wrapping key")["KeyMetadata"]["Arn"]
    for k in range(3):  # more data keys than one batch: one per "process"
        fresh_caches()
        with db.begin() as conn:
            conn.execute(people.insert(), [{"id": 1000 + k * 10 + i, "name": "x"} for i in range(2)])
    kt = key_table(people.metadata)
    with db.connect() as conn:
        before = {r.id: r.wrapped for r in conn.execute(sa.select(kt))}
    assert len(before) >= 4
    raw_before = _key_ids(db, people.c.name)
    kms.fail_after["re_encrypt"] = kms.calls["re_encrypt"] + 3
    with pytest.raises(KeyboardInterrupt):
        tools.rewrap(db, new_arn, batch_size=2, progress=False)
    with db.connect() as conn:
        moved = conn.execute(sa.select(sa.func.count()).select_from(kt).where(kt.c.kms_key_id == new_arn)).scalar()
    assert moved == 2  # the first batch committed, the interrupted one rolled back
    kms.fail_after.clear()
    assert tools.rewrap(db, new_arn, batch_size=2, progress=False) == len(before) - 2
    assert tools.rewrap(db, new_arn, batch_size=2, progress=False) == 0  # idempotent
    with db.connect() as conn:
        after = {r.id: (r.kms_key_id, r.wrapped) for r in conn.execute(sa.select(kt))}
    assert set(after) == set(before) and all(a[0] == new_arn for a in after.values())
    assert all(after[k][1] != before[k] for k in before)
    assert _key_ids(db, people.c.name) == raw_before  # rows untouched
    fresh_caches()
    kms.reset()
    assert _read(db, people)[0]["name"] == "name-1*"  # unwrapped under the new KMS key
    assert kms.calls["decrypt"] == len(before)


def test_reencrypt_interrupted_and_resumed(db, people, counting_kms, fresh_caches):
    expected = _read(db, people)
    old_name_keys = _key_ids(db, people.c.name)
    old_email_keys = _key_ids(db, people.c.email)
    fresh_caches()
    assert tools.reencrypt(db, people.c.name, batch_size=7, progress=False) == 30
    new_keys = _key_ids(db, people.c.name)
    assert len(new_keys) == 1 and not (new_keys & old_name_keys)
    # a finished run leaves no job behind: the next run is a new rotation
    assert tools.reencrypt(db, people.c.name, batch_size=7, progress=False) == 30
    assert len(_key_ids(db, people.c.name) | new_keys) == 2
    # deterministic column: its one key stays, no stored byte changes
    raw_email = _raw(db, people.c.email)
    assert tools.reencrypt(db, people.c.email, batch_size=50, progress=False) == 0
    assert _raw(db, people.c.email) == raw_email and _key_ids(db, people.c.email) == old_email_keys
    fresh_caches()
    assert _read(db, people) == expected
    with db.begin() as conn:
        assert conn.execute(sa.select(people.c.id).where(people.c.email == "u7@x.org")).scalar_one() == 7
        conn.execute(people.insert(), [{"id": 99, "email": "new@x.org"}])
        assert conn.execute(sa.select(people.c.id).where(people.c.email == "new@x.org")).scalar_one() == 99
    assert _key_ids(db, people.c.email) == old_email_keys


def test_reencrypt_stops_this_process_writing_under_its_cached_key(db, people, counting_kms):
    cached = _key_ids(db, people.c.name)  # the fixture's insert left this process's write key cached
    assert tools.reencrypt(db, people.c.name, batch_size=50, progress=False) == 30
    with db.begin() as conn:
        conn.execute(people.insert(), [{"id": 98, "name": "after"}])
        raw = conn.execute(sa.select(sa.type_coerce(people.c.name, sa.LargeBinary))
                           .where(people.c.id == 98)).scalar_one()
    assert bytes(raw)[2:10].hex() not in cached


def _raw(db, col):
    with db.connect() as conn:
        return [None if r is None else bytes(r) for r in conn.execute(
            sa.select(sa.type_coerce(col, sa.LargeBinary)).order_by(col.table.c.id)).scalars()]


def _legacy_move(db, col, ids, scope_prefix="reencrypt:"):
    """What an earlier version's `reencrypt` left behind when killed: rows
    ``ids`` of a deterministic column under its job key (scope ``reencrypt:...``)."""
    t = col.type
    with db.begin() as conn:
        job = KEYRING.scoped_key(conn, t.key_id, scope_prefix + t.key_scope())
        values = dict(conn.execute(sa.select(col.table.c.id, col).where(col.table.c.id.in_(ids))).all())
        token = FORCED_KEY.set(job)
        try:
            for i, v in values.items():
                conn.execute(sa.update(col.table).where(col.table.c.id == i).values({col.name: v}))
        finally:
            FORCED_KEY.reset(token)
    return job


def test_reencrypt_repairs_a_deterministic_column_an_old_rotation_split(db, people, counting_kms,
                                                                       fresh_caches):
    """The damage #16.3 describes (rows split between two keys, a duplicate that
    UNIQUE could not see) is reported by primary key and repaired by a rerun."""
    col = people.c.email
    active = _key_ids(db, col)
    job = _legacy_move(db, col, range(11, 21))
    assert len(_key_ids(db, col)) == 2
    with db.connect() as conn:  # the damage: 10 rows not found by value
        assert conn.execute(sa.select(people.c.id).where(col == "u12@x.org")).first() is None
    with db.begin() as conn:  # and UNIQUE blind to a duplicate under the active key
        conn.execute(people.insert(), [{"id": 112, "email": "u12@x.org"}])
    fresh_caches()
    with pytest.raises(EncryptedColumnError) as err:
        tools.reencrypt(db, col, batch_size=4, progress=False)
    assert err.value.code == "ConflictException" and "(primary keys 12)" in str(err.value)
    assert "u12" not in str(err.value)  # names rows, never values
    assert _key_ids(db, col) == active | {job.key_id.hex()}  # only row 12 is left behind
    with db.begin() as conn:
        conn.execute(sa.delete(people).where(people.c.id == 112))
    assert tools.reencrypt(db, col, batch_size=4, progress=False) == 1
    assert _key_ids(db, col) == active
    kt = key_table(people.metadata)
    with db.connect() as conn:  # the old job is retired; the column's key is unchanged
        scopes = {r.id: r.scope for r in conn.execute(sa.select(kt))}
    assert scopes[next(iter(active))] == col.type.key_scope() and scopes[job.key_id.hex()] is None
    fresh_caches()
    with db.connect() as conn:
        for i in range(1, 31):
            assert conn.execute(sa.select(people.c.id).where(col == f"u{i}@x.org")).scalar_one() == i
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        conn.execute(people.insert(), [{"id": 113, "email": "u13@x.org"}])


def test_reencrypt_interrupted_mid_batches_resumes_with_same_key(db, people, counting_kms):
    import integrations.encrypted_columns.tools as tmod
    calls = {"n": 0}
    real = tmod._write_many

    def flaky(*a, **kw):  # Ctrl-C while the third batch is being written
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    tmod._write_many = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            tools.reencrypt(db, people.c.name, batch_size=5, progress=False)
    finally:
        tmod._write_many = real
    mid = _key_ids(db, people.c.name)
    assert len(mid) == 2  # 10 rows (two committed batches) moved, the third batch rolled back
    assert tools.reencrypt(db, people.c.name, batch_size=5, progress=False) == 20
    assert len(_key_ids(db, people.c.name)) == 1
    assert _key_ids(db, people.c.name) < mid  # same target key as the interrupted run
    assert _read(db, people)[29]["name"] == "name-30*"


def test_encrypt_then_decrypt_existing_column(db, unique, counting_kms):
    md_plain = sa.MetaData()
    name = unique("legacy")
    plain = sa.Table(name, md_plain, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("ssn", sa.String(20), nullable=True),
                     sa.Column("score", sa.Integer, nullable=True))
    md_plain.create_all(db)
    rows = [{"id": i, "ssn": f"{i:03d}-45-678*", "score": i * 10} for i in range(1, 26)]
    rows.append({"id": 26, "ssn": None, "score": None})
    with db.begin() as conn:
        conn.execute(plain.insert(), rows)
    md_enc = sa.MetaData()
    enc = sa.Table(name, md_enc, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("ssn", EncryptedType(sa.String(20)), nullable=True),
                   sa.Column("score", EncryptedType(sa.Integer, deterministic=True), nullable=True))
    try:
        # interrupted after two batches, then resumed
        import integrations.encrypted_columns.tools as tmod
        real, seen = tmod._write_many, {"n": 0}

        def flaky(*a, **kw):  # Ctrl-C while the third batch is being written
            seen["n"] += 1
            if seen["n"] == 3:
                raise KeyboardInterrupt
            return real(*a, **kw)

        tmod._write_many = flaky
        try:
            with pytest.raises(KeyboardInterrupt):
                tools.encrypt_column(db, enc.c.ssn, batch_size=4, progress=False)
        finally:
            tmod._write_many = real
        assert tools.encrypt_column(db, enc.c.ssn, batch_size=4, progress=False) == 25 - 8
        assert tools.encrypt_column(db, enc.c.ssn, batch_size=4, progress=False) == 0
        assert tools.encrypt_column(db, enc.c.score, batch_size=10, progress=False) == 25
        with db.connect() as conn:
            got = [tuple(r) for r in conn.execute(sa.select(enc).order_by(enc.c.id))]
            assert got == [(r["id"], r["ssn"], r["score"]) for r in rows]
            raw = conn.execute(sa.select(sa.type_coerce(enc.c.ssn, sa.LargeBinary))
                               .where(enc.c.id == 1)).scalar_one()
            assert raw[:2] == b"\x01R" and b"678" not in raw
            assert conn.execute(sa.select(enc.c.id).where(enc.c.score == 70)).scalar_one() == 7

        # and back out, for leaving the product
        assert tools.decrypt_column(db, enc.c.ssn, batch_size=6, progress=False) == 25
        assert tools.decrypt_column(db, enc.c.score, batch_size=6, progress=False) == 25
        assert tools.decrypt_column(db, enc.c.score, batch_size=6, progress=False) == 0
        with db.connect() as conn:
            got = [dict(r._mapping) for r in conn.execute(sa.select(plain).order_by(plain.c.id))]
        assert got == rows
        cols = {c["name"]: str(c["type"]).upper() for c in sa.inspect(db).get_columns(name)}
        if db.dialect.name != "sqlite":
            assert "CHAR" in cols["ssn"] and "INT" in cols["score"]
    finally:
        md_plain.drop_all(db)
        key_table(md_enc).drop(db, checkfirst=True)


def test_encrypt_json_column(db, unique, counting_kms):
    name = unique("jdocs")
    md_plain = sa.MetaData()
    plain = sa.Table(name, md_plain, sa.Column("id", sa.Integer, primary_key=True), sa.Column("doc", sa.JSON))
    md_plain.create_all(db)
    docs = [{"id": i, "doc": {"name": f"n{i}", "secret": i}} for i in range(1, 6)]
    with db.begin() as conn:
        conn.execute(plain.insert(), docs)
    md = sa.MetaData()
    enc = sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("doc", EncryptedJSON({"name": SIGN_ONLY})))
    try:
        assert tools.encrypt_column(db, enc.c.doc, batch_size=2, progress=False) == 5
        assert tools.encrypt_column(db, enc.c.doc, batch_size=2, progress=False) == 0
        assert tools.reencrypt(db, enc.c.doc, batch_size=2, progress=False) == 5
        with db.connect() as conn:
            assert [dict(r._mapping) for r in conn.execute(sa.select(enc).order_by(enc.c.id))] == docs
        assert tools.decrypt_column(db, enc.c.doc, batch_size=2, progress=False) == 5
        with db.connect() as conn:
            got = [dict(r._mapping) for r in conn.execute(sa.select(plain).order_by(plain.c.id))]
        assert got == docs
    finally:
        md_plain.drop_all(db)
        key_table(md).drop(db, checkfirst=True)


def test_tools_reject_plain_columns(unique):
    md = sa.MetaData()
    t = sa.Table(unique("p"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("x", sa.String(5)))
    with pytest.raises(TypeError, match="not an encrypted column"):
        tools._column(t.c.x)

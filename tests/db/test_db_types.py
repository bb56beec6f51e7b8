"""EncryptedType on SQLite, PostgreSQL and MariaDB: round trips, NULLs,
comparisons, deterministic lookups, unique constraints, swap detection."""
from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from integrations.encrypted_columns import (
    DecryptionError,
    EncryptedType,
    UnsupportedComparisonError,
    UnsupportedValueError,
)

UTC5 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))

CASES = [
    (sa.String(50), ["plain", "", "ends with star*", "***", "Zoë ☃ 日本", " padded "]),
    (sa.LargeBinary(), [b"", b"\x00\xff" * 10, b"*"]),
    (sa.Integer(), [0, -1, 2**31 - 1, 42]),
    (sa.BigInteger(), [2**63 - 1, -(2**63)]),
    (sa.Float(), [0.0, -1.5, 1e300, 0.1]),
    (sa.Numeric(10, 2), [decimal.Decimal("1.50"), decimal.Decimal("0.00"), decimal.Decimal("-12345678.90")]),
    (sa.Boolean(), [False, True]),
    (sa.Date(), [datetime.date(2024, 2, 29), datetime.date(1, 1, 1)]),
    (sa.Time(), [datetime.time(13, 45, 0, 123456), datetime.time(0, 0)]),
    (sa.DateTime(timezone=True), [datetime.datetime(2024, 2, 29, 13, 45, 1, 5, tzinfo=UTC5),
                                  datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)]),
    (sa.DateTime(), [datetime.datetime(2024, 2, 29, 13, 45, 1)]),
    (sa.Uuid(), [uuid.UUID("12345678-1234-5678-1234-567812345678")]),
    (sa.JSON(), [{"a": [1, 2.5, None, "x"], "b": {"c": True}}, [1, "two"], "just a string"]),
]


def _table(md, name, inner, **kw):
    return sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("v", EncryptedType(inner, **kw)))


def test_roundtrip_every_type(db, unique):
    md = sa.MetaData()
    tables = [(_table(md, unique(f"rt{i}"), inner), vals) for i, (inner, vals) in enumerate(CASES)]
    md.create_all(db)
    try:
        with db.begin() as conn:
            for t, vals in tables:
                conn.execute(t.insert(), [{"id": i + 1, "v": v} for i, v in enumerate(vals)])
        with db.connect() as conn:
            for t, vals in tables:
                got = conn.execute(sa.select(t.c.v).order_by(t.c.id)).scalars().all()
                assert got == vals, t.name
                assert [type(g) for g in got] == [type(v) for v in vals], t.name
                for g, v in zip(got, vals, strict=True):
                    if isinstance(v, decimal.Decimal):
                        assert str(g) == str(v)  # 1.50 stays 1.50
                    if isinstance(v, datetime.datetime):
                        assert g.utcoffset() == v.utcoffset()
            # stored as binary ciphertext, never the plaintext
            raw = conn.execute(sa.select(sa.type_coerce(tables[0][0].c.v, sa.LargeBinary))).scalars().all()
            assert all(isinstance(r, bytes) and r[:2] == b"\x01R" for r in raw)
            assert not any(b"ends with star" in r for r in raw)
    finally:
        md.drop_all(db)


def test_null_semantics(db, unique):
    md = sa.MetaData()
    t = sa.Table(unique("nulls"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("plain_null", EncryptedType(sa.Integer)),
                 sa.Column("enc_null", EncryptedType(sa.Integer, encrypt_null=True)))
    md.create_all(db)
    try:
        with db.begin() as conn:
            conn.execute(t.insert(), [{"id": 1, "plain_null": None, "enc_null": None},
                                      {"id": 2, "plain_null": 0, "enc_null": False}])
        with db.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id)).all()
            assert [tuple(r) for r in rows] == [(1, None, None), (2, 0, 0)]
            assert conn.execute(sa.select(t.c.id).where(t.c.plain_null.is_(None))).scalars().all() == [1]
            assert conn.execute(sa.select(t.c.id).where(t.c.plain_null == None)).scalars().all() == [1]  # noqa: E711
            # encrypt_null hides presence: the NULL is ciphertext in the database
            raw = conn.execute(sa.select(sa.type_coerce(t.c.enc_null, sa.LargeBinary))
                               .where(t.c.id == 1)).scalar_one()
            assert isinstance(raw, bytes) and raw[:2] == b"\x01R"
    finally:
        md.drop_all(db)


def test_false_and_zero_are_not_null_in_orm(db, unique):
    class Base(DeclarativeBase):
        pass

    class Flag(Base):
        __tablename__ = unique("flags")
        id: Mapped[int] = mapped_column(primary_key=True)
        flag: Mapped[bool] = mapped_column(EncryptedType(sa.Boolean), nullable=False)
        n: Mapped[int] = mapped_column(EncryptedType(sa.Integer), nullable=False)
        note: Mapped[str | None] = mapped_column(EncryptedType(sa.String(20), encrypt_null=True))

    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            s.add(Flag(id=1, flag=False, n=0, note=None))
            s.commit()
        with Session(db) as s:
            f = s.get(Flag, 1)
            assert f.flag is False and f.n == 0 and f.note is None
            assert s.scalar(sa.select(sa.func.count()).where(Flag.note.is_not(None))) == 1
    finally:
        Base.metadata.drop_all(db)


def test_randomized_comparisons_raise(db, unique):
    md = sa.MetaData()
    t = _table(md, unique("cmp"), sa.String(20))
    for build in (lambda: t.c.v == "x", lambda: t.c.v != "x", lambda: t.c.v.in_(["x"]),
                  lambda: t.c.v.like("x%"), lambda: t.c.v > "a", lambda: t.c.v.desc(),  # noqa: PLW0108
                  lambda: t.c.v == "x", lambda: t.c.v.contains("x")):
        with pytest.raises(UnsupportedComparisonError, match="randomized"):
            build()
    assert str(t.c.v.is_(None).compile()).endswith("IS NULL")


def test_deterministic_queries_and_unique(db, unique):
    class Base(DeclarativeBase):
        pass

    class User(Base):
        __tablename__ = unique("users")
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(EncryptedType(sa.String(100), deterministic=True),
                                           unique=True, index=False)
        code: Mapped[int | None] = mapped_column(EncryptedType(sa.Integer, deterministic=True),
                                                 index=True)

    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            s.add_all([User(id=1, email="a@x.org", code=7), User(id=2, email="b@x.org", code=7),
                       User(id=3, email="c@x.org", code=None)])
            s.commit()
        with Session(db) as s:
            assert s.scalars(sa.select(User.id).where(User.email == "b@x.org")).all() == [2]
            assert s.scalars(sa.select(User.id).where(User.email != "b@x.org").order_by(User.id)).all() == [1, 3]
            assert s.scalars(sa.select(User.id).where(User.email.in_(["a@x.org", "c@x.org", "zz"]))
                             .order_by(User.id)).all() == [1, 3]
            assert s.scalars(sa.select(User.id).where(User.email.not_in(["a@x.org"])).order_by(User.id)).all() == [2, 3]
            assert s.scalars(sa.select(User.id).where(User.code == 7).order_by(User.id)).all() == [1, 2]
            assert s.scalars(sa.select(User.id).where(User.code.is_(None))).all() == [3]
            with pytest.raises(UnsupportedComparisonError, match="deterministic"):
                User.email.like("a%")
            with pytest.raises(UnsupportedComparisonError):
                _ = User.code > 3
        with Session(db) as s:
            s.add(User(id=4, email="a@x.org"))
            with pytest.raises(sa.exc.IntegrityError) as info:
                s.commit()
            assert "a@x.org" not in str(info.value)  # parameters are ciphertext
    finally:
        Base.metadata.drop_all(db)


def test_swap_between_columns_tables_rows_detected(db, unique):
    md = sa.MetaData()
    a = sa.Table(unique("a"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("x", EncryptedType(sa.String(20))), sa.Column("y", EncryptedType(sa.String(20))))
    b = sa.Table(unique("b"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("x", EncryptedType(sa.String(20))))
    md.create_all(db)
    raw = sa.LargeBinary
    try:
        with db.begin() as conn:
            conn.execute(a.insert(), [{"id": 1, "x": "secret-x", "y": "secret-y"}])
            conn.execute(b.insert(), [{"id": 1, "x": "other"}])
            stolen = conn.execute(sa.select(sa.type_coerce(a.c.x, raw))).scalar_one()
            conn.execute(sa.update(a).values({a.c.y: sa.type_coerce(sa.bindparam("s", stolen), raw)}))
            conn.execute(sa.update(b).values({b.c.x: sa.type_coerce(sa.bindparam("s", stolen), raw)}))
        with db.connect() as conn:
            assert conn.execute(sa.select(a.c.x)).scalar_one() == "secret-x"
            for col in (a.c.y, b.c.x):
                with pytest.raises(DecryptionError, match="altered, copied") as info:
                    conn.execute(sa.select(col)).scalar_one()
                assert "secret" not in str(info.value)
    finally:
        md.drop_all(db)


def test_tampered_byte_detected(db, unique):
    md = sa.MetaData()
    t = _table(md, unique("tamper"), sa.String(20))
    md.create_all(db)
    try:
        with db.begin() as conn:
            conn.execute(t.insert(), [{"id": 1, "v": "untouched"}])
            stored = conn.execute(sa.select(sa.type_coerce(t.c.v, sa.LargeBinary))).scalar_one()
            bad = stored[:-1] + bytes([stored[-1] ^ 1])
            conn.execute(sa.update(t).values({t.c.v: sa.type_coerce(sa.bindparam("s", bad), sa.LargeBinary)}))
        with db.connect() as conn, pytest.raises(DecryptionError):
            conn.execute(sa.select(t.c.v)).scalar_one()
    finally:
        md.drop_all(db)


def test_unsupported_value_is_a_clear_error_without_plaintext(db, unique):
    md = sa.MetaData()
    t = _table(md, unique("bad"), sa.String(20))
    md.create_all(db)
    try:
        with db.begin() as conn, pytest.raises(UnsupportedValueError) as info:
            conn.execute(t.insert(), [{"id": 1, "v": {1, 2}}])
        assert "set" in str(info.value)
    finally:
        md.drop_all(db)


def test_constructor_args_are_the_cache_key_and_hold_no_secret():
    t1 = EncryptedType(sa.String(10), "alias/app", deterministic=True)
    t2 = EncryptedType(sa.String(10), "alias/app", deterministic=True)
    t3 = EncryptedType(sa.String(10), "alias/other", deterministic=True)
    assert t1._static_cache_key == t2._static_cache_key != t3._static_cache_key
    hash(t1._static_cache_key)
    flat = repr(t1._static_cache_key)
    assert "alias/app" in flat and "DataKey" not in flat


def test_shared_instance_gets_one_copy_per_column(unique):
    shared = EncryptedType(sa.String(10))
    md = sa.MetaData()
    t = sa.Table(unique("shared"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("a", shared), sa.Column("b", shared))
    assert t.c.a.type is not t.c.b.type
    assert (t.c.a.type._column_name, t.c.b.type._column_name) == ("a", "b")


def test_import_and_ddl_make_no_kms_call(counting_kms, sqlite_url, unique):
    import importlib

    import integrations.encrypted_columns as pkg
    importlib.reload(pkg)
    md = sa.MetaData()
    _table(md, unique("ddl"), sa.String(10), deterministic=True)
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    md.drop_all(engine)
    assert counting_kms.total() == 0


def test_hypothesis_roundtrip_through_sqlite(sqlite_url, counting_kms, unique):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    md = sa.MetaData()
    t = sa.Table(unique("fuzz"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("s", EncryptedType(sa.String(200))),
                 sa.Column("d", EncryptedType(sa.String(200), deterministic=True)),
                 sa.Column("n", EncryptedType(sa.Numeric(30, 10))),
                 sa.Column("j", EncryptedType(sa.JSON())))
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    counter = iter(range(1, 10**6))

    @settings(max_examples=60, deadline=None)
    @given(s=st.text(st.characters(exclude_categories=())  # lone surrogates too
                     | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=50),
           n=st.decimals(allow_nan=False, allow_infinity=False, places=3),
           j=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                          max_leaves=6))
    def check(s, n, j):
        i = next(counter)
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"id": i, "s": s, "d": s, "n": n, "j": j}])
            row = conn.execute(sa.select(t).where(t.c.id == i)).one()
            assert (row.s, row.d, str(row.n), row.j) == (s, s, str(n), j)
            assert conn.execute(sa.select(t.c.id).where(t.c.d == s, t.c.id == i)).scalar_one() == i

    check()
    engine.dispose()


def test_json_inner_type_tags_every_value_as_json(sqlite_url, counting_kms, unique):
    from integrations.encrypted_columns import format as fmt
    from integrations.encrypted_columns.keys import KEYRING

    md = sa.MetaData()
    t = sa.Table(unique("j"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("v", EncryptedType(sa.JSON())), sa.Column("s", EncryptedType(sa.String(9))))
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "v": "text", "s": "text"}])
        v, s = conn.execute(sa.select(sa.type_coerce(t.c.v, sa.LargeBinary),
                                      sa.type_coerce(t.c.s, sa.LargeBinary))).one()
        key = KEYRING.read_key(engine.dialect, bytes(v)[2:10])
        assert fmt.open_(v, t.c.v.type._ctx(), lambda k: key) == b'\x0b"text"'
        assert fmt.open_(s, t.c.s.type._ctx(), lambda k: key) == b"\x01text"
    engine.dispose()


def test_type_learns_its_column_through_public_events(unique):
    """Column attach goes through the public after_parent_attach event (not
    Column._on_table_attach): before the table exists, after it, and in a copy
    made by Table.to_metadata (which shares the type instance)."""
    col = sa.Column("ssn", EncryptedType(sa.String(11), deterministic=True))
    assert col.type._where() == "this EncryptedType"  # not on a table yet
    name = unique("attach")
    t = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), col)
    assert t.c.ssn.type.key_scope() == f"{name}.ssn"
    copy = t.to_metadata(sa.MetaData(), schema="other")
    assert copy.c.ssn.type.key_scope() == f"other.{name}.ssn"
    assert t.c.ssn.type.key_scope() == f"{name}.ssn"  # the original keeps its context
    assert copy.c.ssn.type._ctx() != t.c.ssn.type._ctx()

"""KMS calls: a couple per process, never per row; bulk inserts add none;
transactions that roll back do not leave keys other connections would use."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from integrations.encrypted_columns import EncryptedType, UnknownDataKeyError, configure, key_table


def _model(unique):
    class Base(DeclarativeBase):
        pass

    class Person(Base):
        __tablename__ = unique("people")
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(EncryptedType(sa.String(40)))
        city: Mapped[str] = mapped_column(EncryptedType(sa.String(40)))
        email: Mapped[str] = mapped_column(EncryptedType(sa.String(40), deterministic=True))

    return Base, Person


def test_bulk_executemany_makes_no_extra_kms_calls(db, counting_kms, fresh_caches, unique):
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    try:
        rows = [{"id": i, "name": f"n{i}", "city": "c", "email": f"e{i}"} for i in range(1, 1001)]
        with db.begin() as conn:
            conn.execute(Person.__table__.insert(), rows[:500])  # Core executemany
        with Session(db) as s:  # ORM bulk insert (insertmanyvalues)
            s.execute(sa.insert(Person), rows[500:])
            s.commit()
        # one data key for the two randomized columns, one for the deterministic one
        assert dict(counting_kms.calls) == {"generate_data_key": 2}
        with Session(db) as s:
            got = s.scalars(sa.select(Person).order_by(Person.id)).all()
            assert len(got) == 1000 and got[-1].email == "e1000"
        assert counting_kms.total() == 2  # reading in the writing process: cached

        fresh_caches()  # a new process
        counting_kms.reset()
        with Session(db) as s:
            assert len(s.scalars(sa.select(Person)).all()) == 1000
            assert s.scalars(sa.select(Person.id).where(Person.email == "e77")).all() == [77]
        assert dict(counting_kms.calls) == {"decrypt": 2}
    finally:
        Base.metadata.drop_all(db)


def test_keys_persist_in_key_table_once(db, counting_kms, unique):
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    try:
        for batch in range(3):
            with Session(db) as s:
                s.add_all([Person(id=batch * 10 + i, name="n", city="c", email=f"e{i}") for i in range(1, 6)])
                s.commit()
        with db.connect() as conn:
            keys = conn.execute(sa.select(key_table(Base.metadata))).all()
        assert len(keys) == 2
        assert sorted(k.scope or "" for k in keys) == ["", f"{Person.__tablename__}.email"]
        assert all(k.kms_key_id.startswith("arn:aws:kms:") for k in keys)
        assert counting_kms.total() == 2
    finally:
        Base.metadata.drop_all(db)


def test_rolled_back_key_is_not_reused(db, counting_kms, fresh_caches, unique):
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            s.add(Person(id=1, name="gone", city="c", email="x"))
            s.flush()
            s.rollback()
        with Session(db) as s:
            s.add(Person(id=2, name="kept", city="c", email="y"))
            s.commit()
        fresh_caches()
        with Session(db) as s:
            assert [p.name for p in s.scalars(sa.select(Person))] == ["kept"]
        assert counting_kms.calls["generate_data_key"] == 4  # the rolled-back pair was replaced
    finally:
        Base.metadata.drop_all(db)


def test_cache_bounds_force_a_new_data_key(db, counting_kms, unique):
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    configure(kms=counting_kms, write_max_uses=10)
    try:
        with db.begin() as conn:
            conn.execute(Person.__table__.insert(),
                         [{"id": i, "name": "n", "city": "c", "email": "e"} for i in range(1, 11)])
        # 20 randomized values with at most 10 uses per key: 2 keys (+1 deterministic)
        assert counting_kms.calls["generate_data_key"] == 3
    finally:
        configure(kms=counting_kms, write_max_uses=2**30)
        Base.metadata.drop_all(db)


def test_missing_data_key_is_a_clear_error(db, counting_kms, fresh_caches, unique):
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            s.add(Person(id=1, name="n", city="c", email="e"))
            s.commit()
        with db.begin() as conn:
            conn.execute(sa.delete(key_table(Base.metadata)))
        fresh_caches()
        with Session(db) as s, pytest.raises(UnknownDataKeyError, match="not in the key table"):
            s.scalars(sa.select(Person)).all()
    finally:
        Base.metadata.drop_all(db)


def test_sync_warm_up_then_no_kms_calls(db, counting_kms, fresh_caches, unique):
    from integrations.encrypted_columns import warm_up
    Base, Person = _model(unique)
    Base.metadata.create_all(db)
    try:
        assert warm_up(db, Base.metadata) == 2  # one randomized, one deterministic key
        counting_kms.reset()
        with Session(db) as s:
            s.add_all([Person(id=i, name="n", city="c", email=f"e{i}") for i in range(1, 21)])
            s.commit()
            assert s.scalars(sa.select(Person.id).where(Person.email == "e3")).one() == 3
        assert counting_kms.total() == 0
        fresh_caches()
        assert warm_up(db, Base.metadata, load_existing=True) == 3  # 2 unwraps + 1 new write key
        counting_kms.reset()
        with Session(db) as s:
            assert len(s.scalars(sa.select(Person)).all()) == 20
        assert counting_kms.total() == 0
    finally:
        Base.metadata.drop_all(db)


def test_age_bound_makes_a_new_key_and_nonces_never_repeat(sqlite_url, counting_kms, unique):
    import time
    Base, Person = _model(unique)
    engine = sa.create_engine(sqlite_url)
    Base.metadata.create_all(engine)
    configure(kms=counting_kms, write_max_age=0.5)
    try:
        t = Person.__table__
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"id": i, "name": "same", "city": "same", "email": "e"}
                                      for i in range(1, 301)])
        time.sleep(0.6)
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"id": 1000, "name": "n", "city": "c", "email": "e"}])
        assert counting_kms.calls["generate_data_key"] == 3  # 2 randomized (aged out) + 1 deterministic
        with engine.connect() as conn:
            raw = conn.execute(sa.select(sa.type_coerce(t.c.name, sa.LargeBinary),
                                         sa.type_coerce(t.c.city, sa.LargeBinary))).all()
        # both columns share one data key; (key id, nonce) pairs are all distinct
        pairs = [bytes(v)[2:22] for row in raw for v in row]
        assert len(pairs) == 602 and len(set(pairs)) == 602
        assert len({p[:8] for p in pairs}) == 2
    finally:
        configure(kms=counting_kms, write_max_age=3600.0)
        Base.metadata.drop_all(engine)
        engine.dispose()

"""bind_to_row=True: values bound to their row's primary key, on all databases."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from integrations.encrypted_columns import DecryptionError, EncryptedColumnError, EncryptedType, SealedValue, bind_row


def _model(unique):
    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = unique("accounts")
        id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
        iban: Mapped[str] = mapped_column(EncryptedType(sa.String(34), bind_to_row=True))
        note: Mapped[str | None] = mapped_column(EncryptedType(sa.String(20), bind_to_row=True,
                                                               encrypt_null=True))

    return Base, Account


def test_orm_roundtrip_update_and_row_swap(db, unique):
    Base, Account = _model(unique)
    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            a, b = Account(iban="DE00 1111", note=None), Account(iban="FR00 2222", note="b")
            s.add_all([a, b])
            s.commit()
            ids = (a.id, b.id)
            assert a.iban == "DE00 1111"  # reloaded after commit: opened with its identity
        with Session(db) as s:
            got = {x.id: (x.iban, x.note) for x in s.scalars(sa.select(Account))}
            assert got == {ids[0]: ("DE00 1111", None), ids[1]: ("FR00 2222", "b")}
            x = s.get(Account, ids[0])
            x.iban = "DE00 3333"
            s.commit()
            assert s.get(Account, ids[0]).iban == "DE00 3333"
        t = Account.__table__
        with db.begin() as conn:  # copy row b's ciphertext into row a
            stolen = conn.execute(sa.select(sa.type_coerce(t.c.iban, sa.LargeBinary))
                                  .where(t.c.id == ids[1])).scalar_one()
            conn.execute(sa.update(t).where(t.c.id == ids[0])
                         .values({t.c.iban: sa.type_coerce(sa.bindparam("s", stolen), sa.LargeBinary)}))
        with Session(db) as s:
            assert s.get(Account, ids[1]).iban == "FR00 2222"
            with pytest.raises(DecryptionError, match="for this row") as info:
                s.get(Account, ids[0])
            assert "FR00" not in str(info.value)
    finally:
        Base.metadata.drop_all(db)


def test_core_use_needs_the_row(db, unique):
    Base, Account = _model(unique)
    Base.metadata.create_all(db)
    t = Account.__table__
    rid = uuid.uuid4()
    try:
        with db.begin() as conn, pytest.raises(EncryptedColumnError, match="bind_row"):
            conn.execute(t.insert(), [{"id": rid, "iban": "plain"}])
        with db.begin() as conn:
            conn.execute(t.insert(), [{"id": rid, "iban": bind_row("NL00 4444", rid)}])
        with db.connect() as conn:
            sealed = conn.execute(sa.select(t.c.iban)).scalar_one()
            assert isinstance(sealed, SealedValue) and "NL00" not in repr(sealed)
            assert sealed.decrypt(rid) == "NL00 4444"
            with pytest.raises(DecryptionError):
                sealed.decrypt(uuid.uuid4())
    finally:
        Base.metadata.drop_all(db)


def test_row_binding_needs_a_client_side_key(sqlite_url, counting_kms, unique):
    class Base(DeclarativeBase):
        pass

    class Auto(Base):
        __tablename__ = unique("auto")
        id: Mapped[int] = mapped_column(primary_key=True)
        v: Mapped[str] = mapped_column(EncryptedType(sa.String(5), bind_to_row=True))

    engine = sa.create_engine(sqlite_url)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Auto(v="x"))
        with pytest.raises(EncryptedColumnError, match="primary key must be known"):
            s.flush()
    with Session(engine) as s:
        s.add(Auto(id=5, v="x"))
        s.commit()
        assert s.get(Auto, 5).v == "x"
    with pytest.raises(ValueError):
        EncryptedType(sa.String(5), deterministic=True, bind_to_row=True)


def test_tools_on_row_bound_columns(db, unique, counting_kms):
    from integrations.encrypted_columns import tools
    Base, Account = _model(unique)
    Base.metadata.create_all(db)
    try:
        with Session(db) as s:
            s.add_all([Account(iban=f"IBAN{i}") for i in range(7)])
            s.commit()
        assert tools.reencrypt(db, Account.iban, batch_size=3, progress=False) == 7
        with Session(db) as s:
            assert sorted(a.iban for a in s.scalars(sa.select(Account))) == [f"IBAN{i}" for i in range(7)]
        assert tools.decrypt_column(db, Account.iban, batch_size=3, progress=False, alter=False) == 7
        assert tools.encrypt_column(db, Account.iban, batch_size=3, progress=False, alter=False) == 7
        with Session(db) as s:
            assert sorted(a.iban for a in s.scalars(sa.select(Account))) == [f"IBAN{i}" for i in range(7)]
    finally:
        Base.metadata.drop_all(db)

"""``kms demo`` section: an encrypted model on embedded defaults."""
from __future__ import annotations

import pathlib

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from . import EncryptedType, configure


def run(kms, workdir: pathlib.Path, say) -> None:
    class Base(DeclarativeBase):
        pass

    class Patient(Base):
        __tablename__ = "patients"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(EncryptedType(sa.String(100)))
        ssn: Mapped[str] = mapped_column(EncryptedType(sa.String(11), deterministic=True),
                                         unique=True)

    configure(kms=kms)
    engine = sa.create_engine(f"sqlite:///{workdir / 'demo-columns.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Patient(name="Ada Lovelace", ssn="123-45-6789"))
        s.commit()
    with Session(engine) as s:
        p = s.scalars(sa.select(Patient).where(Patient.ssn == "123-45-6789")).one()
        say(f"EncryptedType: looked up {p.name!r} by deterministic ssn (key alias/aws/rds)")
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT name FROM patients").scalar_one()
        say(f"stored in SQLite: {len(raw)} bytes of ciphertext, starts {bytes(raw[:2])!r}")
    engine.dispose()

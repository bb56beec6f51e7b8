"""An encrypted PostgreSQL model with a deterministic lookup, then a rotation run.

    python examples/db_postgres.py [postgresql+psycopg://postgres@127.0.0.1:5432/test]

KMS is the embedded engine (``KMS_HOME``, default ~/.kms); set
``AWS_ENDPOINT_URL_KMS`` to use `kms serve`, or pass any boto3 KMS client to
``configure(kms=...)`` for AWS KMS.
"""
from __future__ import annotations

import sys
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from integrations.encrypted_columns import EncryptedType, tools

SUFFIX = uuid.uuid4().hex[:8]  # the example shares its database with others


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = f"example_customers_{SUFFIX}"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(EncryptedType(sa.String(100)))  # randomized
    # deterministic: == / in_() / UNIQUE work; equal emails are visibly equal
    email: Mapped[str] = mapped_column(EncryptedType(sa.String(200), deterministic=True),
                                       unique=True)


def main(url: str) -> None:
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)  # also creates the key table encrypted_column_keys
    try:
        with Session(engine) as s:
            s.add_all([Customer(name=f"Customer {i}", email=f"c{i}@example.org")
                       for i in range(1, 1001)])
            s.commit()
        with Session(engine) as s:
            c = s.scalars(sa.select(Customer).where(Customer.email == "c42@example.org")).one()
            print("deterministic lookup:", c.id, c.name)

        import kms_core
        kms = kms_core.client()
        new_key = kms.create_key(Description="example: new wrapping key")["KeyMetadata"]["Arn"]
        # 1. rewrap the data keys under another KMS key: no row changes
        print("rewrapped data keys:", tools.rewrap(engine, new_key))
        # 2. re-encrypt a randomized column under a fresh data key (batched, resumable);
        #    a deterministic column keeps its key, so == and UNIQUE never break
        print("re-encrypted names:", tools.reencrypt(engine, Customer.name))
        print("re-encrypted emails (deterministic):", tools.reencrypt(engine, Customer.email))
        with Session(engine) as s:
            assert s.scalars(sa.select(Customer.name).where(Customer.id == 42)).one() == "Customer 42"
            print("still readable after rotation")
    finally:
        Base.metadata.drop_all(engine)  # drops the example's key table too
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1:5432/test")

"""Alembic autogenerate renders importable, key-free types; SQL logs, reprs
and errors never carry plaintext or key material."""
from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import integrations.encrypted_columns as ec
from integrations.encrypted_columns import SIGN_ONLY, EncryptedJSON, EncryptedType, UnsupportedValueError, render_item


def test_autogenerate_renders_importable_types(sqlite_url, counting_kms, unique):
    md = sa.MetaData()
    name = unique("accounts")
    sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("ssn", EncryptedType(sa.String(11), "alias/app-key", deterministic=True), unique=True),
             sa.Column("note", EncryptedType(sa.Text(), encrypt_null=True)),
             sa.Column("born", EncryptedType(sa.Date())),
             sa.Column("doc", EncryptedJSON({"name": SIGN_ONLY})))
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"render_item": render_item,
                                                     "target_metadata": md})
        code = render_python_code(produce_migrations(ctx, md).upgrade_ops,
                                  render_item=render_item, migration_context=ctx)
    assert "integrations.encrypted_columns.EncryptedType(sa.String(length=11), " \
           "key_id='alias/app-key', deterministic=True)" in code
    assert "integrations.encrypted_columns.EncryptedType(sa.Text(), encrypt_null=True)" in code
    assert "integrations.encrypted_columns.EncryptedJSON({'name': 'SIGN_ONLY'})" in code
    assert "encrypted_column_keys" in code  # the key table comes with the first encrypted column
    assert counting_kms.total() == 0

    # The rendered migration runs without any key or KMS access.
    ops = []

    class Op:
        def __getattr__(self, attr):
            return lambda *a, **kw: ops.append((attr, a, kw))

    ns = {"op": Op(), "sa": sa}
    exec("import integrations.encrypted_columns\n" + "def upgrade():\n" +
         "\n".join("    " + line for line in code.splitlines()), ns)
    ns["upgrade"]()
    created = {a[0]: a[1:] for kind, a, kw in ops if kind == "create_table"}
    cols = {c.name: c for c in created[name] if isinstance(c, sa.Column)}
    assert isinstance(cols["ssn"].type, EncryptedType)
    assert cols["ssn"].type.key_id == "alias/app-key" and cols["ssn"].type.deterministic
    assert repr(cols["doc"].type) == "EncryptedJSON({'name': 'SIGN_ONLY'})"
    assert counting_kms.total() == 0


def test_sql_log_shows_ciphertext_only(db_url, counting_kms, unique, caplog):
    class Base(DeclarativeBase):
        pass

    class Card(Base):
        __tablename__ = unique("cards")
        id: Mapped[int] = mapped_column(primary_key=True)
        number: Mapped[str] = mapped_column(EncryptedType(sa.String(20)))
        holder: Mapped[str] = mapped_column(EncryptedType(sa.String(20), deterministic=True))

    engine = sa.create_engine(db_url, echo=True)
    Base.metadata.create_all(engine)
    with caplog.at_level(logging.DEBUG):
        with Session(engine) as s:
            s.add(Card(id=1, number="4111-1111-1111-1111", holder="Ada Lovelace"))
            s.commit()
        with Session(engine) as s:
            card = s.scalars(sa.select(Card).where(Card.holder == "Ada Lovelace")).one()
            assert card.number == "4111-1111-1111-1111"
            logging.getLogger("x").info("%r %r", card, Card.__table__.c.number.type)
    text = caplog.text
    Base.metadata.drop_all(engine)
    engine.dispose()
    assert "INSERT INTO" in text and "SELECT" in text
    assert "4111" not in text and "Ada" not in text and "Lovelace" not in text
    assert "[generated in" in text  # parameters were logged: as ciphertext only


def test_errors_reprs_and_caches_hold_no_secret(sqlite_url, counting_kms, unique):
    md = sa.MetaData()
    t = sa.Table(unique("s"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("v", EncryptedType(sa.String(20))))
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "v": "top-secret-1"}])
    # a bad value: our error, not SQLAlchemy's StatementError (which lists the parameters)
    with engine.begin() as conn, pytest.raises(UnsupportedValueError) as info:
        conn.execute(t.insert(), [{"id": 2, "v": object()}, {"id": 3, "v": "top-secret-2"}])
    assert "top-secret" not in str(info.value) and "top-secret" not in repr(info.value)
    from integrations.encrypted_columns.keys import KEYRING
    dumped = repr(list(KEYRING.write._entries.values())) + repr(list(KEYRING.read._entries.values()))
    assert "CachedKey" in dumped and "\\x" not in dumped
    for entry in KEYRING.read._entries.values():
        assert repr(entry.extra).startswith("<DataKey ")


def test_import_does_no_io(monkeypatch):
    import importlib
    import socket

    def refuse(*a, **kw):
        raise AssertionError("network I/O during import")

    monkeypatch.setattr(socket, "create_connection", refuse)
    mod = importlib.reload(ec)
    assert mod.EncryptedType(sa.String(3)).key_id == "alias/aws/rds"

"""``kms db ...`` through the registered entry point, on a SQLite file."""
from __future__ import annotations

import sys
import textwrap

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns.cli import main


@pytest.fixture
def app(tmp_path, monkeypatch, counting_kms):
    """A throwaway application module declaring an encrypted model."""
    (tmp_path / "dbcli_app.py").write_text(textwrap.dedent('''
        import sqlalchemy as sa
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
        from integrations.encrypted_columns import EncryptedType

        class Base(DeclarativeBase):
            pass

        class Patient(Base):
            __tablename__ = "patients"
            id: Mapped[int] = mapped_column(primary_key=True)
            ssn: Mapped[str] = mapped_column(EncryptedType(sa.String(11)))
    '''))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "dbcli_app", raising=False)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the legacy, plaintext table
        conn.exec_driver_sql("CREATE TABLE patients (id INTEGER PRIMARY KEY, ssn VARCHAR(11))")
        conn.exec_driver_sql("INSERT INTO patients VALUES (1, '123-45-6789'), (2, '987-65-4321')")
    yield url, engine
    engine.dispose()


def _raw(engine):
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT ssn FROM patients ORDER BY id").scalars().all()


def test_cli_encrypt_rewrap_reencrypt_decrypt(app, counting_kms, capsys):
    url, engine = app
    col = "dbcli_app:Patient.ssn"
    assert main(["encrypt-column", "--url", url, "--column", col, "--no-progress"]) == 0
    assert "2 values" in capsys.readouterr().out
    assert all(isinstance(v, bytes) and v[:2] == b"\x01R" for v in _raw(engine))

    new = counting_kms.create_key()["KeyMetadata"]["Arn"]
    assert main(["rewrap", "--url", url, "--key-id", new, "--no-progress"]) == 0
    assert "rewrapped 1 data keys" in capsys.readouterr().out
    before = _raw(engine)
    assert main(["reencrypt", "--url", url, "--column", col, "--no-progress"]) == 0
    assert _raw(engine) != before
    assert main(["decrypt-column", "--url", url, "--column", col, "--no-progress"]) == 0
    assert _raw(engine) == ["123-45-6789", "987-65-4321"]


def test_cli_errors_are_one_line(app, capsys):
    url, _ = app
    assert main(["reencrypt", "--url", url, "--column", "dbcli_app:Patient.nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kms db: ") and "Traceback" not in err and err.count("\n") == 1
    assert main(["reencrypt", "--url", url, "--column", "nomodule_xyz:A.b"]) == 1
    assert main(["rewrap", "--url", url, "--key-id", "alias/does-not-exist"]) == 1
    err = capsys.readouterr().err
    assert "NotFoundException" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main(["rewrap", "--url", url])  # --key-id missing: argparse usage error
    assert info.value.code == 2


def test_cli_interrupt_message(app, counting_kms, capsys):
    url, engine = app
    counting_kms.fail_after["generate_data_key"] = 0
    assert main(["encrypt-column", "--url", url, "--column", "dbcli_app:Patient.ssn",
                 "--no-progress"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    counting_kms.fail_after.clear()
    assert main(["encrypt-column", "--url", url, "--column", "dbcli_app:Patient.ssn",
                 "--no-progress"]) == 0
    assert all(v[:2] == b"\x01R" for v in _raw(engine))

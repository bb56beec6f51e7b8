"""Fixtures shared by every part's tests (see docs/architecture.md, "Tests").

Real services only: PostgreSQL and MariaDB must be running (a missing server
fails the test, it never skips).  Each test gets its own store, schema or
database so that parallel runs and other engineers' runs don't collide.
"""
from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from kms_core.clock import FakeClock
from kms_core.engine import Engine
from kms_core.settings import Settings

PG_BASE = os.environ.get("KMS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_BASE = os.environ.get("KMS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture
def root_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def kms_home(tmp_path, monkeypatch, root_key):
    """A private KMS_HOME with a fresh root key, set in the environment."""
    home = tmp_path / "kms-home"
    home.mkdir(mode=0o700)  # as kms-local creates it (a wider one is reported on stderr)
    monkeypatch.setenv("KMS_HOME", str(home))
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(root_key).decode())
    for var in ("KMS_STORE_URL", "KMS_ROOT_KEY_FILE", "KMS_REGION", "KMS_ACCOUNT_ID",
                "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return home


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_engine(kms_home, root_key, clock):
    """Factory: ``make_engine(store_url=None, cache_ttl=1.0, clock=clock, ...)``."""
    made: list[Engine] = []

    def make(store_url: str | None = None, *, clock=clock, **kwargs) -> Engine:
        kwargs.setdefault("root_key", root_key)
        settings = Settings.from_env(home=kms_home, store_url=store_url, **kwargs)
        eng = Engine.open(settings, clock)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()


@pytest.fixture
def engine(make_engine):
    return make_engine()


@pytest.fixture
def make_client(engine):
    """Factory for clients: same engine by default, or ``make_client(engine=other)``,
    ``make_client(principal=...)``."""
    import kms_core

    def make(**kwargs):
        kwargs.setdefault("engine", engine)
        return kms_core.client(**kwargs)

    return make


@pytest.fixture
def kms(make_client):
    """An in-process client on a fresh SQLite store with a movable clock."""
    return make_client()


def _fail(what: str, err: Exception):
    pytest.fail(f"{what} is required for this test and is not reachable: {err}", pytrace=False)


@contextlib.contextmanager
def fresh_pg_schema(prefix: str = "t_") -> Iterator[str]:
    """A SQLAlchemy URL to a new PostgreSQL schema, dropped on exit."""
    import sqlalchemy as sa

    schema = prefix + uuid.uuid4().hex[:16]
    try:
        admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as e:
        _fail("PostgreSQL at " + PG_BASE, e)
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextlib.contextmanager
def fresh_mysql_database(prefix: str = "t_") -> Iterator[str]:
    """A SQLAlchemy URL to a new MariaDB database, dropped on exit."""
    import sqlalchemy as sa

    name = prefix + uuid.uuid4().hex[:16]
    try:
        admin = sa.create_engine(MYSQL_BASE)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    except Exception as e:
        _fail("MariaDB at " + MYSQL_BASE, e)
    try:
        yield f"{MYSQL_BASE.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        admin.dispose()


@pytest.fixture(scope="session")
def new_pg_url():
    """``with new_pg_url("prefix_") as url:`` — for fixtures of any scope."""
    return fresh_pg_schema


@pytest.fixture(scope="session")
def new_mysql_url():
    """``with new_mysql_url("prefix_") as url:`` — for fixtures of any scope."""
    return fresh_mysql_database


@pytest.fixture
def pg_url():
    """A SQLAlchemy URL to a fresh PostgreSQL schema, dropped afterwards."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def mysql_url():
    """A SQLAlchemy URL to a fresh MariaDB database, dropped afterwards."""
    with fresh_mysql_database() as url:
        yield url

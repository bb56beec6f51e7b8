"""Fixtures for the encrypted column tests: real databases, a real KMS engine
behind a counting wrapper, fresh key caches per test."""
from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns import configure


class CountingKMS:
    """A thin wrapper that counts calls to a real KMS client (not a mock):
    every call goes to the wrapped client.  Records the calling thread too."""

    def __init__(self, client):
        self._client = client
        self.calls: Counter = Counter()
        self.threads: list[int] = []
        self.fail_after: dict[str, int] = {}  # op -> raise KeyboardInterrupt after N calls
        self._lock = threading.Lock()

    @property
    def exceptions(self):
        return self._client.exceptions

    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.threads.clear()

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args, **kwargs):
            with self._lock:
                limit = self.fail_after.get(name)
                if limit is not None and self.calls[name] >= limit:
                    raise KeyboardInterrupt  # a user pressing Ctrl-C mid-run
                self.calls[name] += 1
                self.threads.append(threading.get_ident())
            return target(*args, **kwargs)

        return call


@pytest.fixture
def counting_kms(kms):
    wrapped = CountingKMS(kms)
    configure(kms=wrapped)
    yield wrapped
    configure(kms=None)


@pytest.fixture
def fresh_caches(counting_kms):
    """Forget unwrapped keys, as a new process would."""
    def clear():
        configure(kms=counting_kms)
    return clear


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture(scope="module")
def pg_module_url():
    """One fresh PostgreSQL schema per test module (tables are uniquely named);
    a missing server fails, never skips."""
    import os
    base = os.environ.get("KMS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = "tdb_" + uuid.uuid4().hex[:16]
    try:
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as e:  # noqa: BLE001 - any failure means no server
        pytest.fail(f"PostgreSQL at {base} is required and not reachable: {e}", pytrace=False)
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(scope="module")
def mysql_module_url():
    """One fresh MariaDB database per test module; a missing server fails."""
    import os
    base = os.environ.get("KMS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
    name = "tdb_" + uuid.uuid4().hex[:16]
    try:
        admin = sa.create_engine(base)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"MariaDB at {base} is required and not reachable: {e}", pytrace=False)
    yield f"{base.rsplit('/', 1)[0]}/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE `{name}`")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    if request.param == "postgresql":
        return request.getfixturevalue("pg_module_url")
    return request.getfixturevalue("mysql_module_url")


@pytest.fixture
def db(db_url, counting_kms):
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def unique():
    return lambda prefix: f"{prefix}_{uuid.uuid4().hex[:10]}"

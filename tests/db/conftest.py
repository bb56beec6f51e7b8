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
def pg_module_url(new_pg_url):
    """One fresh PostgreSQL schema per test module (tables are uniquely named)."""
    with new_pg_url("tdb_") as url:
        yield url


@pytest.fixture(scope="module")
def mysql_module_url(new_mysql_url):
    """One fresh MariaDB database per test module."""
    with new_mysql_url("tdb_") as url:
        yield url


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

"""The pytest plugin (entry point ``pytest11: kms_local``; docs/testing.md).

Fixtures:

* ``kms_mock`` — an active :func:`kms_core.testing.mock_kms` on a fresh
  in-memory engine, with ``kms_clock`` as its clock.
* ``kms_client`` — ``boto3.client("kms")`` in the mock's region.
* ``kms_clock`` — the :class:`FakeClock` the engine reads (starts at the real
  current time; ``kms_clock.advance(days=7)`` moves it).
* ``kms_engine`` — the engine itself (``kms_engine.call("CreateKey", {})``).
* ``kms_server`` — a running ``kms serve`` on a free loopback port, with its
  own store and an access key, for non-Python clients and the AWS CLI.

Scopes: ``--kms-scope`` / ini ``kms_scope`` (default ``function``) for the
mock fixtures, ``--kms-server-scope`` / ini ``kms_server_scope`` (default
``session``) for the server.  ``@pytest.mark.kms_mock(region=..., ...)`` runs
a test under the mock without naming a fixture; ``--kms-mock`` runs every
test so.

Importing this module is cheap (pytest loads it in every session once the
package is installed): botocore, boto3 and the engine load when a fixture runs.
"""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kms_core.clock import FakeClock, SystemClock

_SCOPES = ("function", "class", "module", "package", "session")
_MARK_OPTIONS = ("region", "account_id", "principal")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-local", "kms-local (KMS for tests)")
    group.addoption("--kms-mock", action="store_true", default=None,
                    help="run every test under kms_core.testing.mock_kms")
    group.addoption("--kms-scope", choices=_SCOPES, default=None,
                    help="scope of kms_mock/kms_client/kms_clock/kms_engine (default: function)")
    group.addoption("--kms-server-scope", choices=_SCOPES, default=None,
                    help="scope of kms_server (default: session)")
    parser.addini("kms_mock", "run every test under mock_kms", type="bool", default=False)
    parser.addini("kms_scope", "scope of the kms mock fixtures", default="function")
    parser.addini("kms_server_scope", "scope of the kms_server fixture", default="session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kms_mock(region=None, account_id=None, principal=None): run the test under "
                   "kms_core.testing.mock_kms (a fresh in-memory KMS)")


def _scope(name: str, config: pytest.Config) -> str:
    option = config.getoption("--" + name.replace("_", "-"))
    value = option or config.getini(name)
    if value not in _SCOPES:
        raise pytest.UsageError(f"{name} must be one of {', '.join(_SCOPES)} (got {value!r})")
    return str(value)


def _mock_scope(fixture_name: str, config: pytest.Config) -> str:
    return _scope("kms_scope", config)


def _server_scope(fixture_name: str, config: pytest.Config) -> str:
    return _scope("kms_server_scope", config)


@pytest.fixture(scope=_mock_scope)  # type: ignore[arg-type]
def kms_clock() -> FakeClock:
    """The engine's clock: starts now, moves only when the test moves it."""
    return FakeClock(SystemClock().now())


@pytest.fixture(scope=_mock_scope)  # type: ignore[arg-type]
def kms_mock(request: pytest.FixtureRequest, kms_clock: FakeClock) -> Iterator[Any]:
    """An active ``mock_kms`` (fresh in-memory engine); the marker's options apply."""
    from kms_core.testing.mock import mock_kms  # noqa: PLC0415 - keep the plugin's import cheap

    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("kms_mock") if request.scope == "function" else None
    if marker is not None:
        unknown = set(marker.kwargs) - set(_MARK_OPTIONS)
        if unknown or marker.args:
            raise pytest.UsageError(f"kms_mock marker takes only {', '.join(_MARK_OPTIONS)} as keywords")
        options.update(marker.kwargs)
    with mock_kms(clock=kms_clock, **options) as mock:
        yield mock


@pytest.fixture(scope=_mock_scope)  # type: ignore[arg-type]
def kms_client(kms_mock: Any) -> Any:
    """``boto3.client("kms")`` in the mock's region, talking to the mock."""
    return kms_mock.client()


@pytest.fixture(scope=_mock_scope)  # type: ignore[arg-type]
def kms_engine(kms_mock: Any) -> Any:
    """The mock's engine (``kms_core.engine.Engine``): AWS-managed keys
    (``alias/aws/<service>``) are created on first use, as in AWS."""
    return kms_mock.engine


@pytest.fixture(autouse=True)
def _kms_mock_marker(request: pytest.FixtureRequest) -> None:
    """Activates ``kms_mock`` for marked tests, or for all with ``--kms-mock``."""
    config = request.config
    wanted = request.node.get_closest_marker("kms_mock") is not None
    wanted = wanted or bool(config.getoption("--kms-mock") or config.getini("kms_mock"))
    if wanted:
        request.getfixturevalue("kms_mock")


# -- kms serve ---------------------------------------------------------------------------

class KMSServer:
    """A running ``kms serve``: where it is and how to sign requests to it."""

    def __init__(self, endpoint_url: str, region: str, access_key_id: str, secret_access_key: str,
                 home: Path, process: subprocess.Popen[bytes], log: Path):
        self.endpoint_url = endpoint_url
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.home = home
        self.process = process
        self.log = log

    def __repr__(self) -> str:  # never the secret
        return f"<KMSServer {self.endpoint_url} region={self.region!r} access_key_id={self.access_key_id!r}>"

    @property
    def env(self) -> dict[str, str]:
        """Variables that point the AWS CLI or any SDK at this server."""
        return {"AWS_ENDPOINT_URL_KMS": self.endpoint_url, "AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key, "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region}

    def client(self, **kwargs: Any) -> Any:
        """``boto3.client("kms")`` signed with this server's access key."""
        import boto3  # noqa: PLC0415 - keep the plugin's import cheap

        from kms_core.testing.mock import bypass  # noqa: PLC0415 - keep the plugin's import cheap

        for name, value in (("endpoint_url", self.endpoint_url), ("region_name", self.region),
                            ("aws_access_key_id", self.access_key_id),
                            ("aws_secret_access_key", self.secret_access_key)):
            kwargs.setdefault(name, value)
        return bypass(boto3.client("kms", **kwargs))  # the server, even beside mock_kms

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, region: str = "us-east-1", timeout: float = 60.0) -> KMSServer:
    """Start ``kms serve`` (one worker) on a free loopback port with its own
    store in ``home`` and an access key for user ``tests``."""
    from kms_core.server.credentials import AccessKeys  # noqa: PLC0415 - only when a server is wanted
    from kms_core.settings import Settings  # noqa: PLC0415 - only when a server is wanted
    from kms_core.store import Store  # noqa: PLC0415 - only when a server is wanted

    root_key = os.urandom(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_", "AWS_"))}
    env.update(KMS_HOME=str(home), KMS_ROOT_KEY=base64.b64encode(root_key).decode(),
               KMS_REGION=region, AWS_DEFAULT_REGION=region)
    settings: Any = Settings.from_env(home=home, root_key=root_key, region=region)
    store = Store(settings)
    try:
        key = AccessKeys(store, settings.account_id).create("tests")["AccessKey"]
    finally:
        store.dispose()
    port = _free_port()
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from kms_core.cli import main; sys.exit(main())",
             "serve", "--port", str(port), "--workers", "1", "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    server = KMSServer(f"http://127.0.0.1:{port}", region, key["AccessKeyId"], key["SecretAccessKey"],
                       home, proc, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"kms serve did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)


@pytest.fixture(scope=_server_scope)  # type: ignore[arg-type]
def kms_server() -> Iterator[KMSServer]:
    """A running ``kms serve`` with its own store: ``kms_server.endpoint_url``,
    ``.env`` (for the AWS CLI or another SDK), ``.client()`` (boto3)."""
    with tempfile.TemporaryDirectory(prefix="kms-serve-") as home:
        os.chmod(home, 0o700)
        server = start_server(Path(home))
        try:
            yield server
        finally:
            server.stop()

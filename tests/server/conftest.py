"""Real `kms serve` processes on loopback: free ports, temporary stores."""
from __future__ import annotations

import base64
import http.client
import json
import os
import signal as _signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m kms_core.server` subprocess (the same code as `kms serve`)."""

    def __init__(self, home: Path, root_key: bytes, *args: str, store_url: str | None = None,
                 workers: int = 1, env: dict | None = None, scheme: str = "http", ca: str | None = None,
                 max_files: int | None = None):
        self.home = Path(home)
        self.root_key = root_key
        self.port = free_port()
        self.store_url = store_url
        self.scheme = scheme
        self.ca = ca
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers), *args]
        if store_url:
            self.args += ["--store-url", store_url]
        self.env = {**os.environ, "KMS_HOME": str(self.home),
                    "KMS_ROOT_KEY": base64.b64encode(root_key).decode(), **(env or {})}
        for var in ("KMS_STORE_URL", "KMS_ROOT_KEY_FILE", "KMS_SERVER_CONFIG"):
            self.env.pop(var, None)
        self.log_path = self.home / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._signalled = False
        self.max_files = max_files  # `ulimit -n` (soft and hard) for the server process

    def launch(self) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "kms_core.server", *self.args],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(self.home),
                                     preexec_fn=self._limit_files)  # noqa: PLW1509 - only setrlimit, async-signal-safe
        return self

    def _limit_files(self) -> None:
        if self.max_files is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))

    def wait_healthy(self, timeout: float = 40.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kms serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.get("/health")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"kms serve did not become healthy:\n{self.log()}")

    def start(self) -> Server:
        return self.launch().wait_healthy()

    def connection(self, timeout: float = 10.0):
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str):
        c = self.connection(timeout=2)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig=_signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None and not self._signalled:
            self._signalled = True
            self.proc.send_signal(sig)

    def stop(self, sig=_signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        self.signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self._log.close()

    def settings(self):
        from kms_core.settings import Settings

        return Settings.from_env(home=self.home, store_url=self.store_url, root_key=self.root_key)

    def create_access_key(self, user: str = "alice") -> dict:
        from kms_core.server.credentials import AccessKeys
        from kms_core.store import Store

        s = self.settings()
        store = Store(s)
        try:
            return AccessKeys(store, s.account_id).create(user)["AccessKey"]
        finally:
            store.dispose()

    def client(self, key: dict | None = None, *, validate: bool = True, region: str = REGION, **kw):
        key = key or {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "x" * 40}
        cfg = Config(parameter_validation=validate, retries={"max_attempts": 1}, connect_timeout=5,
                     read_timeout=30)
        if self.ca:
            kw.setdefault("verify", self.ca)
        return boto3.client("kms", endpoint_url=self.url, region_name=region, config=cfg,
                            aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=key["SecretAccessKey"], **kw)


@pytest.fixture
def make_server(tmp_path):
    started: list[Server] = []

    def make(*args, home=None, root_key=None, wait=True, **kw) -> Server:
        srv = Server(home or tmp_path / f"home{len(started)}", root_key or os.urandom(32), *args, **kw)
        started.append(srv)
        srv.launch()
        return srv.wait_healthy() if wait else srv

    yield make
    for srv in started:  # signal all first: they shut down in parallel
        srv.signal()
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A strict server shared by a module's tests (SQLite store)."""
    srv = Server(tmp_path_factory.mktemp("kms-server"), os.urandom(32)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def access_key(server):
    return server.create_access_key("alice")


@pytest.fixture
def kms_remote(server, access_key):
    return server.client(access_key)


def body_json(raw: bytes) -> dict:
    return json.loads(raw) if raw else {}

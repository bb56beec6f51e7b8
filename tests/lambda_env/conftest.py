"""Fixtures for the encrypted-environment helper.

``clean_env`` removes every variable that changes which KMS answers or which
contexts are tried.  ``kms_server`` starts the real ``kms serve`` on a free
loopback port with its own store and a created access key (signatures are
checked), once per module.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrations.lambda_env import core

_ENV_VARS = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL",
             "AWS_EXECUTION_ENV", "KMS_ENV_MAX_AGE", "AWS_PROFILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    core._default = None
    yield
    core._default = None


class CountingKMS:
    """Delegates to a real client and counts calls (to check caching)."""

    def __init__(self, kms):
        self._kms = kms
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._kms, name)
        if not callable(attr):
            return attr

        def call(**kwargs):
            self.calls.append(name)
            return attr(**kwargs)
        return call


@pytest.fixture
def counting(kms):
    return CountingKMS(kms)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kms_command() -> list[str]:
    exe = shutil.which("kms")
    return [exe] if exe else [sys.executable, "-m", "kms_core.cli"]


class Server:
    def __init__(self, url: str, env: dict[str, str], proc: subprocess.Popen, log: Path):
        self.url = url
        self.env = env  # KMS_HOME, root key, credentials, region: for child processes
        self.proc = proc
        self.log = log

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def client_env(self) -> dict[str, str]:
        """Environment of a process that talks to the server, not to an embedded store."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KMS_", "AWS_")) or k == "KMS_TEST_PG"}
        env.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})
        env["AWS_ENDPOINT_URL_KMS"] = self.url
        return env


def start_server(home: Path, *args: str, scheme: str = "http") -> Server:
    """Start `kms serve` on a free loopback port with its own store in ``home``
    and a created access key; ``Server.stop()`` ends it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_", "AWS_"))}
    env.update(KMS_HOME=str(home), KMS_ROOT_KEY=base64.b64encode(os.urandom(32)).decode(),
               AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    created = subprocess.run(kms_command() + ["create-access-key", "--user-name", "lambda-env-tests",
                                               "--service", "lambda"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["AccessKey"]
    port = free_port()
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(kms_command() + ["serve", "--port", str(port), "--workers", "1",
                                                 "--log-level", "warning", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"kms serve did not start:\n{log.read_text()}", pytrace=False)
            time.sleep(0.1)
    env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    return Server(f"{scheme}://127.0.0.1:{port}", env, proc, log)


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("kms-server-home"))
    yield server
    server.stop()


@pytest.fixture
def server_env(kms_server, monkeypatch):
    """This process talks to the server: endpoint and credentials set."""
    for k in ("KMS_HOME", "KMS_STORE_URL", "KMS_ROOT_KEY"):
        monkeypatch.delenv(k, raising=False)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, kms_server.env[k])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", kms_server.url)
    return kms_server


@pytest.fixture
def boto_kms(kms_server):
    """boto3 pointed at the server (the peer; also for admin calls like DisableKey)."""
    import boto3
    return boto3.client("kms", endpoint_url=kms_server.url, region_name="us-east-1",
                        aws_access_key_id=kms_server.env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=kms_server.env["AWS_SECRET_ACCESS_KEY"])

"""Fixtures for the `kms` command-line tests.

``cli(...)`` runs ``kms_core.cli.main`` in-process (fast); ``kms_proc(...)`` runs the
installed console script in a subprocess; ``aws(...)`` runs the real AWS CLI v1
(awscli's own driver, in-process) so outputs can be compared; ``moto_url`` is a
moto server on a free loopback port, shared by the module's tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from kms_core.cli import main

BIN = os.path.dirname(sys.executable)
KMS_SCRIPT = os.path.join(BIN, "kms")


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Result(rc={self.rc}, out={self.out[:800]!r}, err={self.err[:800]!r})"


@pytest.fixture
def cli(kms_home, capsys):
    """Run `kms ARGS...` in-process on a fresh KMS_HOME."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return run


@pytest.fixture
def kms_proc(kms_home, tmp_path):
    """Run the installed `kms` console script in a subprocess (same KMS_HOME)."""

    def run(*args: str, input: bytes | None = None, cwd=None, env=None) -> Result:
        proc = subprocess.run([KMS_SCRIPT, *args], input=input, capture_output=True, timeout=60,
                              cwd=cwd or tmp_path, env={**os.environ, **(env or {})})
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, kms_home):
    """Credentials and region for talking to moto; no user config files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_OUTPUT", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)


_DRIVER = []


@pytest.fixture
def aws(aws_env, capsys):
    """Run the real AWS CLI v1 (`aws ARGS...`) in-process through awscli's driver.

    One driver serves the whole run (building it costs ~0.5 s); each call parses afresh."""
    from awscli.clidriver import create_clidriver

    if not _DRIVER:
        _DRIVER.append(create_clidriver())

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            rc = _DRIVER[0].main(list(args))
        except SystemExit as e:  # argparse errors exit from inside the driver
            rc = e.code
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return run

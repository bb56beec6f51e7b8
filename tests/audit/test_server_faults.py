"""The audit path of the real server under faults: a full disk (a small tmpfs we
mount) and SIGKILL mid-load.  Bounded in time; the server runs with the default
audit log in each mode (durable for the SIGKILL test: its guarantee)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import kms_core
from kms_core.audit import AuditReader

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Served:
    def __init__(self, home: Path, logdir: Path, root_key: bytes, env: dict | None = None):
        self.home = home
        self.url = f"sqlite:///{home / 'kms.db'}"
        self.env = {**os.environ, "KMS_HOME": str(home),
                    "KMS_ROOT_KEY": base64.b64encode(root_key).decode(), **(env or {})}
        for var in ("KMS_STORE_URL", "KMS_ROOT_KEY_FILE", "KMS_SERVER_CONFIG"):
            self.env.pop(var, None)
        buf = io.StringIO()  # (kms_home has put KMS_ROOT_KEY in this process's environment)
        from kms_core.server.cli import create_access_key_main
        with contextlib.redirect_stdout(buf):
            assert create_access_key_main(["--user-name", "alice", "--store-url", self.url]) == 0
        self.key = json.loads(buf.getvalue())["AccessKey"]
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kms_core.server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--store-url", self.url],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                pytest.fail("kms serve did not start:\n" + self.log())
            time.sleep(0.05)

    def client(self):
        return boto3.client("kms", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key["AccessKeyId"],
                            aws_secret_access_key=self.key["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 1}, connect_timeout=5,
                                          read_timeout=10))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> float:
        """Signal the server; returns how long it took to exit (kills it after ``timeout``)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._log.close()
                return float("inf")
        self._log.close()
        return time.monotonic() - t0


def _request_ids(url: str) -> set[str]:
    reader = AuditReader(kms_core.client(store_url=url).engine.store)
    return {json.loads(b)["requestID"] for _, b in reader.events()}


def _verify_cli(url: str) -> tuple[int, str]:
    from kms_core.audit_cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["verify", "--store-url", url])
    return rc, buf.getvalue()


# ------------------------------------------------------------------ full disk
@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs mounted for this test (needs root, as in CI); unmounted after."""
    where = tmp_path / "small"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(where)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (needs root): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path, leave: int = 256 * 1024) -> Path:
    """Fill the filesystem but ``leave`` bytes: the audit log's own growth then
    exhausts it, as in production (a full disk that something else filled
    entirely can make even SQLite's reads fail, which is not the audit log's to fix)."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with contextlib.suppress(OSError), open(filler, "wb") as f:  # (the store may fill it already)
        while size > 0:
            n = min(size, 65536)
            f.write(b"\0" * n)
            f.flush()
            size -= n
    return filler


def _encrypt(kms, key, ok_ids: list, codes: list) -> str:
    try:
        r = kms.encrypt(KeyId=key, Plaintext=b"full disk test")
        ok_ids.append(r["ResponseMetadata"]["RequestId"])
        return "ok"
    except ClientError as e:
        codes.append((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]))
        return e.response["Error"]["Code"]


@pytest.mark.parametrize("durability", ["durable", "buffered"])
def test_full_disk_refuses_then_recovers_and_sigterm_stops(small_fs, tmp_path, kms_home, root_key,
                                                           durability):
    srv = _Served(small_fs / "home", tmp_path, root_key, env={"KMS_AUDIT_DURABILITY": durability})
    try:
        kms = srv.client()
        key = kms.create_key(Description="full disk")["KeyMetadata"]["KeyId"]
        ok_ids: list[str] = []
        codes: list = []
        assert _encrypt(kms, key, ok_ids, codes) == "ok"

        filler = _fill(small_fs)
        # Until the store cannot grow, requests are answered (each with its committed
        # event); then they are refused — each one promptly (read_timeout 10 s: a hang fails).
        outcome = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            outcome = _encrypt(kms, key, ok_ids, codes)
            if outcome != "ok":
                break
        assert outcome == "DependencyTimeoutException", (outcome, codes[-3:], srv.log()[-2000:])
        assert codes[-1][1] == 503
        refused = [_encrypt(kms, key, ok_ids, codes) for _ in range(20)]
        assert refused.count("DependencyTimeoutException") >= 15, refused
        assert all(code == "DependencyTimeoutException" for code, _ in codes), codes  # never a 500

        filler.unlink()  # space returns: requests are served again
        deadline = time.monotonic() + 20
        while _encrypt(kms, key, ok_ids, codes) != "ok":
            assert time.monotonic() < deadline, "did not recover after space returned"
            time.sleep(0.1)
        assert _encrypt(kms, key, ok_ids, codes) == "ok"

        filler = _fill(small_fs)  # full again, and then SIGTERM: it must stop promptly
        deadline = time.monotonic() + 90
        while _encrypt(kms, key, ok_ids, codes) == "ok":
            assert time.monotonic() < deadline
        took = srv.stop(signal.SIGTERM, timeout=30)
        assert took < 10, f"SIGTERM took {took:.1f} s with a full disk\n{srv.log()[-2000:]}"
        filler.unlink(missing_ok=True)
        assert "Traceback" not in srv.log()
    finally:
        srv.stop(signal.SIGKILL)
    rc, out = _verify_cli(srv.url)
    assert rc == 0, out
    if durability == "durable":  # buffered: what was queued when SIGTERM gave up is lost
        missing = set(ok_ids) - _request_ids(srv.url)
        assert not missing, f"{len(missing)} answered requests have no event"


# ------------------------------------------------------------------ SIGKILL
def test_sigkill_mid_load_loses_no_answered_event(tmp_path, kms_home, root_key):
    home = tmp_path / "home"
    home.mkdir()
    srv = _Served(home, tmp_path, root_key, env={"KMS_AUDIT_DURABILITY": "durable"})
    ok_ids: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        setup = srv.client()
        key = setup.create_key(Description="kill")["KeyMetadata"]["KeyId"]

        def load(i: int) -> None:
            kms = srv.client()
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 10 == 0:  # writes too, not only reads answered from memory
                        r = kms.create_key(Description=f"load {i}")
                    else:
                        r = kms.encrypt(KeyId=key, Plaintext=b"sigkill test")
                except Exception:  # the server is gone
                    if srv.proc.poll() is not None:
                        return
                    continue
                with lock:
                    ok_ids.append(r["ResponseMetadata"]["RequestId"])

        threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(ok_ids) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        stop.set()
        srv.stop(signal.SIGKILL)
    assert len(ok_ids) >= 100, "the load did not get going"
    rc, out = _verify_cli(srv.url)
    assert rc == 0, out
    missing = set(ok_ids) - _request_ids(srv.url)
    assert not missing, f"{len(missing)} of {len(ok_ids)} answered requests have no event"

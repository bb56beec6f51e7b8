"""Through the real server (`python -m kms_core.server`, audit on by default):
signed calls carry the caller, source IP, user agent and request id; requests
refused before dispatch are recorded too; SIGTERM commits everything."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import kms_core
from kms_core.audit import AuditReader


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["process", "thread"])
def server(request, tmp_path, kms_home, root_key):
    """`kms serve` with each audit writer (``--audit-writer``; process is the default)."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = {**os.environ, "KMS_ROOT_KEY": base64.b64encode(root_key).decode()}
    env.pop("KMS_STORE_URL", None)
    from kms_core.server.cli import create_access_key_main  # `kms create-access-key`
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert create_access_key_main(["--user-name", "alice", "--store-url", url]) == 0
    out = buf.getvalue()
    key = json.loads(out)["AccessKey"]
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "kms_core.server", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--store-url", url,
                             "--audit-writer", request.param],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kms serve did not start:\n" + (tmp_path / "server.log").read_text())
        time.sleep(0.05)
    yield {"url": url, "endpoint": endpoint, "key": key, "proc": proc, "log": tmp_path / "server.log"}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _client(server, secret=None):
    k = server["key"]
    return boto3.client("kms", endpoint_url=server["endpoint"], region_name="us-east-1",
                        aws_access_key_id=k["AccessKeyId"],
                        aws_secret_access_key=secret or k["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def test_served_requests_are_audited(server):
    kms = _client(server)
    key = kms.create_key(Description="served")["KeyMetadata"]
    resp = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"served plaintext 0001",
                       EncryptionContext={"app": "web"})
    request_id = resp["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        _client(server, secret="x" * 40).encrypt(KeyId=key["KeyId"], Plaintext=b"forged request 001")
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)  # a clean shutdown commits the queue
    assert proc.wait(30) == 0
    log = (server["log"]).read_text()
    assert "Traceback" not in log and "could not be written" not in log, log

    reader = AuditReader(kms_core.client(store_url=server["url"]).engine.store)
    rep = reader.verify()
    assert rep.ok and rep.checked == 3, rep.problems
    create, enc, forged = (json.loads(b) for _, b in reader.events())
    alice = f"arn:aws:iam::{key['AWSAccountId']}:user/alice"
    assert create["eventName"] == "CreateKey" and create["userIdentity"]["arn"] == alice
    assert enc["userIdentity"]["userName"] == "alice"
    assert enc["userIdentity"]["accessKeyId"] == server["key"]["AccessKeyId"]
    assert enc["sourceIPAddress"] == "127.0.0.1"
    assert "Boto3" in enc["userAgent"] or "botocore" in enc["userAgent"]
    assert enc["requestID"] == request_id
    assert enc["requestParameters"]["encryptionContext"] == {"app": "web"}
    assert forged["errorCode"] == "InvalidSignatureException"
    assert forged["userIdentity"]["type"] == "Unknown"
    assert forged["userIdentity"]["accessKeyId"] == server["key"]["AccessKeyId"]
    text = "\n".join(b for _, b in reader.events())
    assert "served plaintext" not in text and "forged request" not in text
    assert base64.b64encode(b"served plaintext 0001").decode() not in text

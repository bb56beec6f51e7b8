"""`kms --endpoint-url` against a real `kms serve` (started through its `kms.commands` plug-in):
the seed's commands work remotely, and `aws kms` prints the same bytes against the same server."""
from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import time

import pytest

from .conftest import KMS_SCRIPT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(kms_home, aws_env, tmp_path):
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([KMS_SCRIPT, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--dev-credentials"], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_seed_commands_against_kms_serve(cli, aws, served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    remote = ("--endpoint-url", served)
    key = cli(*remote, "create-key", "--description", "served", "--query", "KeyMetadata.KeyId", "--output", "text")
    assert key.rc == 0, key
    key_id = key.out.strip()
    assert cli(*remote, "create-alias", "--alias-name", "alias/x", "--target-key-id", key_id).rc == 0
    y = cli(*remote, "create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    assert cli(*remote, "create-alias", "--alias-name", "alias/y", "--target-key-id", y).rc == 0
    (tmp_path / "secret.txt").write_bytes(b"served secret")

    enc = cli(*["encrypt", "--key-id", "alias/x", "--plaintext", "fileb://secret.txt", "--output", "text", "--query", "CiphertextBlob"],
              *remote)
    assert enc.rc == 0, enc
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(enc.out))
    dec = cli(*["decrypt", "--ciphertext-blob", "fileb://cipher.bin", "--output", "text", "--query", "Plaintext"], *remote)
    assert base64.b64decode(dec.out) == b"served secret"
    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    assert cli(*["re-encrypt", "--ciphertext-blob", "fileb://c.bin", "--destination-key-id", "alias/y"], *remote).rc == 0
    assert cli("enable-key-rotation", "--key-id", key_id, "--rotation-period-in-days", "180", *remote).rc == 0
    gdk = cli(*["generate-data-key", "--key-id", "alias/x", "--key-spec", "AES_256", "--encryption-context", "purpose=test"],
              *remote)
    assert gdk.rc == 0 and len(base64.b64decode(gdk.json["Plaintext"])) == 32

    # The AWS CLI against the same server prints exactly what kms prints.
    for args in (("get-key-rotation-status", "--key-id", key_id),
                 ("describe-key", "--key-id", "alias/x", "--output", "table"),
                 ("decrypt", "--ciphertext-blob", "fileb://cipher.bin", "--query", "Plaintext")):
        ours, theirs = cli(*args, *remote), aws("kms", *args, *remote)
        assert theirs.rc == 0, theirs
        assert ours.out == theirs.out, args
    ours, theirs = cli("describe-key", "--key-id", "alias/nope", *remote), aws("kms", "describe-key", "--key-id",
                                                                              "alias/nope", *remote)
    assert ours.rc == theirs.rc == 255 and ours.err == theirs.err.lstrip("\n")

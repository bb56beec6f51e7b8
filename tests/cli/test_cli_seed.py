"""The seed's five `aws kms` commands, verbatim with `kms` in place of `aws kms`."""
from __future__ import annotations

import base64


def _setup_keys(cli):
    x = cli("create-key", "--description", "x", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    y = cli("create-key", "--description", "y", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    assert cli("create-alias", "--alias-name", "alias/x", "--target-key-id", x).rc == 0
    assert cli("create-alias", "--alias-name", "alias/y", "--target-key-id", y).rc == 0
    return x, y


def test_seed_commands_in_process(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = _setup_keys(cli)
    secret = b"top secret \x00\xff bytes"
    (tmp_path / "secret.txt").write_bytes(secret)

    enc = cli(*["encrypt", "--key-id", "alias/x", "--plaintext", "fileb://secret.txt", "--output", "text", "--query", "CiphertextBlob"])
    assert enc.rc == 0 and enc.err == ""
    assert enc.out.endswith("\n") and enc.out.count("\n") == 1  # one base64 line, like aws
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(enc.out))

    dec = cli(*["decrypt", "--ciphertext-blob", "fileb://cipher.bin", "--output", "text", "--query", "Plaintext"])
    assert dec.rc == 0
    assert base64.b64decode(dec.out) == secret

    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    re = cli(*["re-encrypt", "--ciphertext-blob", "fileb://c.bin", "--destination-key-id", "alias/y"])
    assert re.rc == 0
    body = re.json
    assert body["KeyId"].endswith(y) and body["SourceKeyId"].endswith(x)
    (tmp_path / "c2.bin").write_bytes(base64.b64decode(body["CiphertextBlob"]))
    again = cli(*["decrypt", "--ciphertext-blob", "fileb://c2.bin", "--output", "text", "--query", "Plaintext"])
    assert base64.b64decode(again.out) == secret

    rot = cli("enable-key-rotation", "--key-id", x, "--rotation-period-in-days", "180")
    assert rot.rc == 0 and rot.out == ""  # empty response body: aws prints nothing
    status = cli("get-key-rotation-status", "--key-id", x).json
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 180
    assert cli("enable-key-rotation", "--key-id", y).rc == 0
    assert cli("get-key-rotation-status", "--key-id", y).json["RotationPeriodInDays"] == 365

    gdk = cli(*["generate-data-key", "--key-id", "alias/x", "--key-spec", "AES_256", "--encryption-context", "purpose=test"])
    assert gdk.rc == 0
    data_key = gdk.json
    assert len(base64.b64decode(data_key["Plaintext"])) == 32
    (tmp_path / "dk.bin").write_bytes(base64.b64decode(data_key["CiphertextBlob"]))
    # The context is bound: without it decryption fails, with it the key comes back.
    bad = cli(*["decrypt", "--ciphertext-blob", "fileb://dk.bin"])
    assert bad.rc == 255 and "InvalidCiphertextException" in bad.err
    good = cli(*["decrypt", "--ciphertext-blob", "fileb://dk.bin", "--encryption-context", "purpose=test", "--query", "Plaintext", "--output", "text"])
    assert good.out.strip() == data_key["Plaintext"]


def test_seed_commands_through_console_script(cli, kms_proc, tmp_path):
    """The installed `kms` script in subprocesses (keys made in-process on the same store)."""
    _setup_keys(cli)
    (tmp_path / "secret.txt").write_bytes(b"hello from a file")
    enc = kms_proc(*["encrypt", "--key-id", "alias/x", "--plaintext", "fileb://secret.txt", "--output", "text", "--query", "CiphertextBlob"])
    assert enc.rc == 0 and enc.err == "", enc
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(enc.out))
    dec = kms_proc(*["decrypt", "--ciphertext-blob", "fileb://cipher.bin", "--output", "text", "--query", "Plaintext"])
    assert base64.b64decode(dec.out) == b"hello from a file"
    err = kms_proc("describe-key", "--key-id", "alias/missing")
    assert err.rc == 255
    assert err.err.count("\n") == 1 and "Traceback" not in err.err
    assert err.err.startswith("An error occurred (NotFoundException) when calling the DescribeKey operation: ")

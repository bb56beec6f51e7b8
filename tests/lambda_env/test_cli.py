"""`kms env encrypt|decrypt|exec` on the embedded engine (KMS_HOME per test)."""
from __future__ import annotations

import base64
import io
import json
import sys

import pytest

from integrations.lambda_env import cli, envfile

SECRET = "cli-secret-value-42"


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_encrypt_single_value_console_style(kms_home, capsys):
    import kms_core
    rc, out, _ = run(capsys, "encrypt", SECRET, "--function-name", "orders-api")
    assert rc == 0
    blob = base64.b64decode(out.strip())
    kms = kms_core.client()
    resp = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"LambdaFunctionName": "orders-api"})
    assert resp["Plaintext"] == SECRET.encode()
    assert resp["KeyId"] == kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]["Arn"]


def test_encrypt_pairs_and_decrypt_from_environment(kms_home, capsys, monkeypatch):
    rc, out, _ = run(capsys, "encrypt", f"DB_PASSWORD={SECRET}", "API_TOKEN=a=b=c")
    assert rc == 0
    lines = dict(line.split("=", 1) for line in out.strip().split("\n"))
    assert set(lines) == {"DB_PASSWORD", "API_TOKEN"}
    for name, value in lines.items():
        monkeypatch.setenv(name, value)
    rc, out, _ = run(capsys, "decrypt", "--name", "DB_PASSWORD", "--name", "API_TOKEN",
                     "--format", "json")
    assert rc == 0 and json.loads(out) == {"DB_PASSWORD": SECRET, "API_TOKEN": "a=b=c"}


def test_encrypt_value_flag_stdin_and_decrypt_value(kms_home, capsys, monkeypatch):
    rc, out, _ = run(capsys, "encrypt", "--value", "A=looks-like-a-pair")
    rc2, out2, _ = run(capsys, "decrypt", "--value", out.strip())
    assert (rc, rc2, out2) == (0, 0, "A=looks-like-a-pair\n")
    rc, out, _ = run(capsys, "encrypt", "--stdin", "--key-id", "alias/aws/lambda",
                     stdin=SECRET + "\n", monkeypatch=monkeypatch)
    assert rc == 0
    rc, out, _ = run(capsys, "decrypt", "--value", out.strip(), "--no-context")
    assert out == SECRET + "\n"


def test_decrypt_value_with_function_name(kms_home, capsys, monkeypatch):
    _, out, _ = run(capsys, "encrypt", SECRET, "--function-name", "f1")
    value = out.strip()
    assert run(capsys, "decrypt", "--value", value, "--function-name", "f1")[1] == SECRET + "\n"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "f1")
    assert run(capsys, "decrypt", "--value", value)[1] == SECRET + "\n"
    rc, out, err = run(capsys, "decrypt", "--value", value, "--no-context")
    assert rc == 1 and "WrongContextError" in err and out == ""
    assert "Traceback" not in err and value not in err


def test_file_round_trip_and_exec(kms_home, capsys, tmp_path):
    plain = tmp_path / ".env"
    plain.write_text(f"# app settings\nDB_PASSWORD='{SECRET}'\nGREETING=\"hello\\nworld\"\n")
    enc = tmp_path / ".env.encrypted"
    rc, out, _ = run(capsys, "encrypt", "--file", str(plain), "-o", str(enc),
                     "--function-name", "orders-api")
    assert rc == 0 and out == ""
    assert enc.stat().st_mode & 0o777 == 0o600
    text = enc.read_text()
    assert SECRET not in text and text.startswith("#kms-env v1 ")
    rc, out, _ = run(capsys, "decrypt", str(enc))
    assert rc == 0
    from dotenv import dotenv_values
    assert dict(dotenv_values(stream=io.StringIO(out))) == {
        "DB_PASSWORD": SECRET, "GREETING": "hello\nworld"}
    # exec: a real child process sees the decrypted variables.
    seen = tmp_path / "child.json"
    script = ("import os, json, sys; open(sys.argv[1], 'w').write(json.dumps({k: os.environ.get(k) "
              "for k in ('DB_PASSWORD', 'GREETING', 'KMS_HOME')}))")
    rc = cli.main(["exec", "--file", str(enc), "--", sys.executable, "-c", script, str(seen)])
    assert rc == 0
    assert json.loads(seen.read_text()) == {
        "DB_PASSWORD": SECRET, "GREETING": "hello\nworld", "KMS_HOME": str(kms_home)}


def test_exec_with_names_and_exit_code(kms_home, capsys, monkeypatch):
    _, out, _ = run(capsys, "encrypt", SECRET)
    monkeypatch.setenv("TOKEN", out.strip())
    code = "import os, sys; sys.exit(7 if os.environ['TOKEN'] == %r else 1)" % SECRET
    assert cli.main(["exec", "--name", "TOKEN", "--", sys.executable, "-c", code]) == 7
    assert cli.main(["exec", "--name", "TOKEN", "--", "/nonexistent/cmd-xyz"]) == 127


def test_exec_tampered_file_runs_nothing(kms_home, capsys, tmp_path):
    enc = tmp_path / "e"
    text = envfile.encrypt_env_file({"A": "1", "B": "2"})
    lines = text.split("\n")
    enc.write_text("\n".join([lines[0], lines[2], lines[1]] + lines[3:]))
    marker = tmp_path / "ran"
    rc = cli.main(["exec", "--file", str(enc), "--", sys.executable, "-c",
                   f"open({str(marker)!r}, 'w').write('x')"])
    err = capsys.readouterr().err
    assert rc == 1 and "EnvFileTamperedError" in err and not marker.exists()


@pytest.mark.parametrize("argv, fragment", [
    (["encrypt"], "exactly one"),
    (["encrypt", "A=1", "not-a-pair"], "NAME=VALUE"),
    (["encrypt", "x", "--context", "novalue"], "KEY=VALUE"),
    (["decrypt"], "exactly one"),
    (["exec", "--name", "X"], "command"),
    (["exec", "--", "true"], "--file"),
])
def test_usage_errors(kms_home, capsys, argv, fragment):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and fragment in capsys.readouterr().err


def test_runtime_errors_are_one_line(kms_home, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PW", "hunter2")
    rc, _, err = run(capsys, "decrypt", "--name", "PW")
    assert rc == 1 and "NotCiphertextError" in err and "hunter2" not in err
    rc, _, err = run(capsys, "decrypt", "--name", "MISSING_VAR")
    assert rc == 1 and "MissingSecretError" in err
    rc, _, err = run(capsys, "decrypt", str(tmp_path / "nope.env"))
    assert rc == 1 and "nope.env" in err and "Traceback" not in err
    rc, _, err = run(capsys, "encrypt", "x" * 4097)
    assert rc == 1 and "4096" in err and "xxxx" not in err
    rc, _, err = run(capsys, "encrypt", "v", "--key-id", "alias/does-not-exist")
    assert rc == 1 and "NotFoundException" in err


def test_quote_round_trips_through_dotenv():
    from dotenv import dotenv_values
    values = ["plain", "with space", "it's", 'dq " and \\ back', "multi\nline\ttab", "$HOME #x", ""]
    text = "".join(f"V{i}={cli._quote(v)}\n" for i, v in enumerate(values))
    assert list(dotenv_values(stream=io.StringIO(text), interpolate=False).values()) == values

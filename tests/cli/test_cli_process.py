"""Process-level behaviour: error lines, --debug, Ctrl-C, closed pipes, start-up imports, plug-ins, help."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from .conftest import KMS_SCRIPT


def test_store_errors_are_one_line_and_debug_adds_the_traceback(cli, monkeypatch):
    assert cli("list-keys").rc == 0  # creates the store under the fixture's root key
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(os.urandom(32)).decode())
    res = cli("list-keys")
    assert res.rc == 255 and res.out == ""
    assert res.err.count("\n") == 1 and "root key" in res.err and "Traceback" not in res.err
    monkeypatch.setenv("KMS_ROOT_KEY", "not base64!")
    plain = cli("list-keys")
    debug = cli("--debug", "list-keys")
    assert plain.rc == debug.rc == 255
    assert plain.err == "KMS_ROOT_KEY is not valid base64\n"
    assert "Traceback (most recent call last)" in debug.err and debug.err.endswith(plain.err)


def test_unreachable_store_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("KMS_STORE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    res = cli("list-keys")
    assert res.rc == 255 and res.err.count("\n") == 1 and "Traceback" not in res.err
    assert "OperationalError" in res.err


def test_unserved_operation_reports_aws_style(cli):
    res = cli("describe-custom-key-stores")
    assert res.rc == 255
    assert res.err.startswith("An error occurred (UnsupportedOperationException) when calling the "
                              "DescribeCustomKeyStores operation")


_READ_SYSCALLS = {"0", "63"}  # read(2) on x86_64 and on aarch64


def _same_file(pid: int, fd: int, other: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}") == os.readlink(f"/proc/{pid}/fd/{other}")
    except OSError:
        return False


def _wait_blocked_on_stdin(pid: int, timeout: float = 60.0) -> None:
    """Wait until ``pid`` sits in read(2) on its stdin pipe (``fileb:///dev/stdin`` opens it
    again as another fd), past every import.

    /proc/PID/syscall names the system call and its first argument (the fd), so a pipe
    read elsewhere (an import that runs a helper process, say) is not mistaken for it —
    on a loaded machine such moments made the old wchan-based wait send SIGINT too early.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            fields = []
        if len(fields) > 1 and fields[0] in _READ_SYSCALLS and _same_file(pid, int(fields[1], 16), 0):
            return
        time.sleep(0.02)
    raise AssertionError("kms never blocked reading its stdin")


@pytest.mark.skipif(not os.path.exists("/proc/self/syscall"), reason="needs Linux /proc to see the process block")
def test_ctrl_c_exits_130_without_traceback(kms_home):
    # fileb:///dev/stdin blocks on the pipe, like a user waiting at a prompt; then Ctrl-C.
    proc = subprocess.Popen([KMS_SCRIPT, "encrypt", "--key-id", "alias/x", "--plaintext", "fileb:///dev/stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_blocked_on_stdin(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert out == b"\n" and b"Traceback" not in err and err == b""


def test_closed_stdout_is_not_an_error(kms_home):
    proc = subprocess.Popen([KMS_SCRIPT, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before kms writes, as with `kms ... | head -0`
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0
    assert err == b""


def _imports_after(args: list[str], env=None) -> set[str]:
    code = textwrap.dedent(f"""
        import sys
        from kms_core.cli import main
        rc = main({args!r})
        print(rc, *sorted({{m.split('.')[0] for m in sys.modules}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[0] == "0", proc
    return set(last[1:])


def test_startup_imports_only_what_the_command_needs(kms_home):
    version = _imports_after(["--version"])
    assert not version & {"boto3", "botocore", "sqlalchemy", "cryptography", "jmespath"}
    # `kms --help` lists the served operations from the table alone (#16.8: it used to import
    # the engine, SQLAlchemy and cryptography: ~0.45 s of CPU).
    help_ = _imports_after(["--help"])
    assert not help_ & {"boto3", "botocore", "sqlalchemy", "cryptography"}
    code = ("import sys, contextlib, io; from kms_core.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "print('kms_core.engine' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip() == "False"
    encrypt = _imports_after(["encrypt", "--key-id", "alias/aws/s3", "--plaintext", "x", "--query", "KeyId"])
    assert "boto3" not in encrypt and "s3transfer" not in encrypt  # embedded: no boto3


PLUGIN = '''
import sys

def hello(argv):
    print("hello", argv)
    return 3

def boom(argv):
    raise RuntimeError("plug-in failed\\nsecond line")
'''


@pytest.fixture
def plugin_path(tmp_path):
    root = tmp_path / "plugins"
    root.mkdir()
    (root / "kms_cli_test_plugin.py").write_text(PLUGIN)
    dist = root / "kms_cli_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kms-cli-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[kms.commands]\nhello = kms_cli_test_plugin:hello\nboom = kms_cli_test_plugin:boom\n"
        "broken = kms_cli_test_plugin_missing:main\n")
    return root


def test_plugin_commands_dispatch_through_entry_points(cli, plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    res = cli("hello", "a", "--flag", "b")
    assert res.rc == 3 and res.out == "hello ['a', '--flag', 'b']\n"
    boom = cli("boom")
    assert boom.rc == 255 and boom.err == "RuntimeError: plug-in failed\n"
    broken = cli("broken")
    assert broken.rc == 255 and "'broken' command is registered" in broken.err and broken.err.count("\n") == 1
    listing = cli("help").out
    assert "hello" in listing and "boom" in listing


def test_plugin_through_console_script(kms_proc, plugin_path):
    res = kms_proc("hello", "x", env={"PYTHONPATH": str(plugin_path)})
    assert res.rc == 3 and res.out == "hello ['x']\n"


def test_help_lists_operations_plugins_and_options(cli):
    main_help = cli("help")
    assert main_help.rc == 0
    for name in ("encrypt", "decrypt", "re-encrypt", "generate-data-key", "enable-key-rotation", "list-keys",
                 "serve", "demo", "--endpoint-url", "--query"):
        assert name in main_help.out
    assert cli("--help").out == main_help.out
    op = cli("encrypt", "help")
    assert op.rc == 0
    assert cli("help", "encrypt").out == cli("encrypt", "--help").out == op.out
    for text in ("--key-id (string) [required]", "--plaintext (blob) [required]", "--encryption-context (map)",
                 "Shorthand syntax: KeyName1=string,KeyName2=string", "fileb://"):
        assert text in op.out
    pages = cli("list-keys", "help").out
    assert "--max-items" in pages and "--starting-token" in pages and "--marker" not in pages
    assert cli("--version").out.startswith("kms/")


def test_plugin_gets_its_arguments_untouched(cli, plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    res = cli("--region", "eu-west-1", "hello", "--output", "yaml", "--help")
    assert res.rc == 3 and res.out == "hello ['--output', 'yaml', '--help']\n"

"""The demo step and the pandas example run as shipped."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

from integrations.encrypted_fs import demo

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_shows_the_one_flag_switch(kms, tmp_path):
    lines: list[str] = []
    demo.run(kms, tmp_path, lines.append)
    text = "\n".join(lines)
    assert "plaintext visible: False" in text
    assert "alias/aws/elasticfilesystem was created on first use (KeyManager=AWS)" in text
    assert "'bob,3900'" in text and "ChunkAuthenticationError" in text


def test_pandas_example_runs(kms_home, moto_server, bucket, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("fs_pandas_s3", ROOT / "examples" / "fs_pandas_s3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", ["fs_pandas_s3.py", "--endpoint-url", moto_server,
                                      "--bucket", bucket])
    mod.main()
    out = capsys.readouterr().out
    assert "starts with b'KFSE'" in out and "identical" in out


@pytest.mark.slow
def test_pandas_example_with_its_own_s3_prints_no_access_log(kms_home, tmp_path):
    """Started without --endpoint-url, the example runs moto itself: its
    per-request access log must not reach the terminal (issue #16.10)."""
    import os
    import subprocess

    run = subprocess.run([sys.executable, str(ROOT / "examples" / "fs_pandas_s3.py")],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ),
                         cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "identical" in run.stdout
    assert "HTTP/1.1" not in run.stderr + run.stdout, run.stderr[:500]

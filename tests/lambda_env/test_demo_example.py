"""The `kms demo` step and the example handler run on embedded defaults."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from integrations.lambda_env import demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs(kms, tmp_path):
    said: list[str] = []
    demo.run(kms, tmp_path, said.append)
    assert len(said) == 4
    assert demo.DEMO_SECRET in said[1] and "EnvFileTamperedError" in said[3]
    assert demo.DEMO_SECRET not in (tmp_path / ".env.encrypted").read_text()


def test_example_handler_decrypts_at_cold_start(kms_home, monkeypatch):
    import contextlib
    import io

    from integrations.lambda_env.cli import main

    def encrypt(value):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["encrypt", value, "--function-name", "orders-api"]) == 0
        return out.getvalue().strip()

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setenv("DB_PASSWORD", encrypt("s3cret"))
    monkeypatch.setenv("API_CONFIG", encrypt('{"url": "https://api.example"}'))
    import os
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "lambda_handler.py")],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(ast.literal_eval(proc.stdout.strip())["body"])  # printed dict
    assert body == {"api": "https://api.example", "password_length": 6, "order": 42}

"""Every example in examples/ runs as documented (each in a fresh process, on a
private KMS_HOME; the PostgreSQL one against the test server)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.py"))


def _kms_env_encrypt(env: dict, value: str) -> str:
    out = subprocess.run(["kms", "env", "encrypt", value, "--function-name", "orders-api"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, kms_home, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AWS_ENDPOINT_URL_KMS", None)
    if path.name == "lambda_handler.py":  # the set-up its docstring documents
        env["AWS_LAMBDA_FUNCTION_NAME"] = "orders-api"
        env["DB_PASSWORD"] = _kms_env_encrypt(env, "s3cret")
        env["API_CONFIG"] = _kms_env_encrypt(env, '{"url": "https://api.example", "retries": 3}')
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr

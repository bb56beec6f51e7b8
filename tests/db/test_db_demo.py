"""The `kms demo` section and the PostgreSQL example run end to end."""
from __future__ import annotations

import pathlib
import runpy

from integrations.encrypted_columns import demo


def test_demo_runs_on_embedded_defaults(tmp_path, counting_kms):
    lines = []
    demo.run(counting_kms, tmp_path, lines.append)
    assert "Ada Lovelace" in lines[0] and "ciphertext" in lines[1]
    assert counting_kms.total() == 2  # one data key per column mode


def test_postgres_example(pg_module_url, counting_kms, capsys, monkeypatch):
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "db_postgres.py"
    monkeypatch.setattr("kms_core.client", lambda **kw: counting_kms)
    mod = runpy.run_path(str(path), run_name="example")
    mod["main"](pg_module_url)
    out = capsys.readouterr().out
    assert "deterministic lookup: 42 Customer 42" in out and "still readable" in out
    assert "rewrapped data keys: 2" in out and "re-encrypted names: 1000" in out

"""Per-test set-up cost of ``kms_core.testing.mock_kms`` beside moto's
``mock_aws``, measured in the same run, alternating rounds (issue 12).

    python benchmarks/testing_setup.py [--rounds 3] [--tests 40]

Measures, per simulated test:

* ``store``  — a fresh in-memory store and engine (``sqlite://``), opened and closed;
* ``empty``  — entering and leaving the mock around an empty test:
  ``with mock_kms(): pass`` vs ``with mock_aws(): pass``;
* ``+engine`` — the same, with the engine ``mock_kms`` opens on the first KMS
  request (a fresh in-memory store), vs ``mock_aws`` as above;
* ``typical`` — a small KMS test: the mock, ``boto3.client("kms")``,
  CreateKey, Encrypt, Decrypt;
* ``file store`` (once, for reference) — what a fresh store per test cost
  before: a new file store and root key in a temporary directory.

and the memory a fresh in-memory store holds (RSS growth per open store over
200 stores, and Python allocations per store from tracemalloc).

Targets: a fresh store ≤ 5 ms and ≤ 1 MB; ``mock_kms`` ≥ 10× cheaper than
``mock_aws`` per test.  Prints the range over rounds of the mean per test.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3
from moto import mock_aws

from kms_core.clock import FakeClock
from kms_core.engine import Engine
from kms_core.settings import Settings
from kms_core.testing import mock_kms

MEMORY = Settings(home=Path(os.devnull), store_url="sqlite://", region="us-east-1", account_id="123456789012")


def fresh_store() -> None:
    Engine.open(MEMORY, FakeClock()).close()


def empty_kms() -> None:
    with mock_kms():
        pass


def engine_kms() -> None:
    with mock_kms() as mock:
        assert mock.engine is not None  # what the first KMS request opens


def empty_moto() -> None:
    with mock_aws():
        pass


def typical(mock) -> None:
    with mock():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 64)["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x" * 64


def typical_kms() -> None:
    typical(mock_kms)


def typical_moto() -> None:
    typical(mock_aws)


def file_store() -> None:
    with tempfile.TemporaryDirectory() as home, contextlib.redirect_stderr(io.StringIO()):
        Engine.open(Settings.from_env(home=home), FakeClock()).close()


def per_test_ms(fn, n: int) -> float:
    """CPU ms per test (this process's CPU time: steadier than wall time on a shared machine;
    both sides run in this process).  ``--wall`` measures wall time instead."""
    clock = time.perf_counter if Options.wall else time.process_time
    t = clock()
    for _ in range(n):
        fn()
    return (clock() - t) / n * 1000


class Options:
    wall = False


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_per_store(n: int = 200) -> tuple[float, float]:
    """(RSS growth in KB per open store, Python-allocated KB per store)."""
    fresh_store()
    before = rss_kb()
    tracemalloc.start()
    engines = []
    for _ in range(n):
        e = Engine.open(MEMORY, FakeClock())
        e.call("CreateKey", {})
        engines.append(e)
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = rss_kb() - before
    for e in engines:
        e.close()
    return grown / n, traced / 1024 / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tests", type=int, default=40, help="simulated tests per measurement")
    p.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    a = p.parse_args()
    Options.wall = a.wall
    cases = {"store": (fresh_store, None), "empty": (empty_kms, empty_moto), "+engine": (engine_kms, empty_moto),
             "typical": (typical_kms, typical_moto)}
    for fn in (fresh_store, empty_kms, engine_kms, empty_moto, typical_kms, typical_moto):
        fn()  # warm: imports, botocore's model, the template store
    results: dict[str, list[tuple[float, float | None]]] = {name: [] for name in cases}
    for r in range(a.rounds):
        for name, (ours, moto) in cases.items():
            # alternate which side goes first, round by round
            if moto is not None and r % 2:
                m = per_test_ms(moto, a.tests)
                o = per_test_ms(ours, a.tests)
            else:
                o = per_test_ms(ours, a.tests)
                m = per_test_ms(moto, a.tests) if moto is not None else None
            results[name].append((o, m))
    unit = "wall" if Options.wall else "CPU"
    print(f"loadavg {os.getloadavg()[0]:.1f}; {a.rounds} rounds x {a.tests} tests; "
          f"{unit} ms per test (min–max over rounds)")
    for name, rows in results.items():
        ours = [o for o, _ in rows]
        line = f"{name:8s} mock_kms {min(ours):7.2f}–{max(ours):7.2f}"
        if rows[0][1] is not None:
            moto = [m for _, m in rows if m is not None]
            ratios = [m / o for o, m in rows if m is not None]
            line += f"   mock_aws {min(moto):7.2f}–{max(moto):7.2f}   ratio {min(ratios):.1f}–{max(ratios):.1f}×"
        print(line)
    print(f"file store (before: temp dir + root key) {per_test_ms(file_store, 5):.1f} ms per test")
    rss, traced = memory_per_store()
    print(f"memory per open in-memory store (with one key): RSS {rss:.0f} KB, Python allocations {traced:.0f} KB")
    print(f"peak RSS of this run {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

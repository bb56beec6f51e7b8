"""What durable SQLite commits cost: synchronous=FULL (the default) beside NORMAL, same run.

    python benchmarks/store_durability.py [--rounds 3] [--ops 200]

Each round opens a fresh store under each setting, alternating, and times write calls that
commit (CreateKey, TagResource, CreateAlias) and a read
call that does not (Encrypt: answered from memory, so it must not change).  Prints µs per
call per setting and the FULL/NORMAL ratio, as ranges over the rounds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import kms_core
import kms_core.store as store_module
from kms_core.clock import FakeClock
from kms_core.engine import Engine
from kms_core.settings import Settings


def one_round(setting: str, ops: int) -> dict[str, float]:
    store_module.SQLITE_SYNCHRONOUS = setting
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(home=home, root_key=os.urandom(32))
        eng = Engine.open(settings, FakeClock())
        try:
            kms = kms_core.client(engine=eng)
            out: dict[str, float] = {}
            t = time.perf_counter()
            keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(ops)]
            out["CreateKey"] = (time.perf_counter() - t) / ops
            t = time.perf_counter()
            for i, key in enumerate(keys):
                kms.tag_resource(KeyId=key, Tags=[{"TagKey": "n", "TagValue": str(i)}])
            out["TagResource"] = (time.perf_counter() - t) / ops
            t = time.perf_counter()
            for i, key in enumerate(keys):
                kms.create_alias(AliasName=f"alias/a{i}", TargetKeyId=key)
            out["CreateAlias"] = (time.perf_counter() - t) / ops
            t = time.perf_counter()
            for _ in range(ops * 5):
                kms.encrypt(KeyId=keys[0], Plaintext=b"x" * 64)
            out["Encrypt (no commit)"] = (time.perf_counter() - t) / (ops * 5)
            return out
        finally:
            eng.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=200)
    args = ap.parse_args()
    samples: dict[str, dict[str, list[float]]] = {"FULL": {}, "NORMAL": {}}
    for _ in range(args.rounds):
        for setting in ("NORMAL", "FULL"):
            for name, value in one_round(setting, args.ops).items():
                samples[setting].setdefault(name, []).append(value)
    print(f"{args.rounds} alternating rounds, {args.ops} calls each; µs per call (range), FULL / NORMAL")
    for name in samples["FULL"]:
        full, normal = samples["FULL"][name], samples["NORMAL"][name]
        ratios = [f / n for f, n in zip(full, normal, strict=True)]
        print(f"  {name:<20} FULL {min(full) * 1e6:7.0f}–{max(full) * 1e6:7.0f}   "
              f"NORMAL {min(normal) * 1e6:7.0f}–{max(normal) * 1e6:7.0f}   "
              f"ratio {min(ratios):.2f}–{max(ratios):.2f} (median {statistics.median(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

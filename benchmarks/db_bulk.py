"""Bulk insert + select of encrypted string columns vs plaintext and vs
sqlalchemy-utils' StringEncryptedType(AesGcmEngine), side by side in one run.

    python benchmarks/db_bulk.py [--rows 100000] [--backends sqlite,postgresql]

Each variant: a fresh table with an integer primary key and two String(64)
columns; one executemany INSERT of all rows in a transaction, then
SELECT of all rows (values decrypted).  Best of --repeat runs for plaintext
and EncryptedType (interleaved, to even out a shared machine's noise), of
--peer-repeat runs for the much slower sqlalchemy-utils variant.  KMS is the
embedded engine on a temporary KMS_HOME (its managed key alias/aws/rds is
created on first use); KMS calls are counted by a thin wrapper.  Ratios are of
wall time; the CPU columns (this process only, so for PostgreSQL they leave out
the server's work) are less swayed by other processes on a shared machine.

The cost model after each backend's table says where the time per value goes:
the budget the issue's target leaves ((target - 1) x plaintext time / 4 x rows
values: 2 columns, written and read), what EncryptedType measured against it,
and how much of that its bind and result processors take when timed alone
(best of 5, 2 x rows values each), and of those the bare AESGCM calls.
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
import uuid
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa

PG = os.environ.get("KMS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class CountingKMS:
    def __init__(self, client):
        self._client, self.calls = client, Counter()

    def __getattr__(self, name):
        target = getattr(self._client, name)

        def call(*a, **kw):
            self.calls[name] += 1
            return target(*a, **kw)
        return call if callable(target) else target


def _table(md, name, coltype):
    return sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("a", coltype()), sa.Column("b", coltype()))


def run_variant(url, make_type, rows, label, repeat, counter=None, fresh=None):
    best_ins = best_sel = best_cpu = float("inf")
    calls = Counter()
    for _ in range(repeat):
        md = sa.MetaData()
        t = _table(md, f"bench_{uuid.uuid4().hex[:10]}", make_type)
        engine = sa.create_engine(url)
        md.create_all(engine)
        try:
            if fresh:
                fresh()  # cold caches, as in a new process
            if counter is not None:
                counter.calls.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            with engine.begin() as conn:
                conn.execute(t.insert(), rows)
            t1, c1 = time.perf_counter(), time.process_time()
            if fresh:
                fresh()  # reading in a new process: data keys unwrapped again
            c2, t2 = time.process_time(), time.perf_counter()
            with engine.connect() as conn:
                got = conn.execute(sa.select(t.c.id, t.c.a, t.c.b)).all()
            t3, c3 = time.perf_counter(), time.process_time()
            assert len(got) == len(rows) and got[-1].b == rows[-1]["b"], label
            best_ins, best_sel = min(best_ins, t1 - t0), min(best_sel, t3 - t2)
            best_cpu = min(best_cpu, (c1 - c0) + (c3 - c2))
            if counter is not None:
                calls = Counter(counter.calls)
        finally:
            md.drop_all(engine)
            engine.dispose()
    return best_ins, best_sel, calls, best_cpu


TARGETS = {"sqlite": 2.5, "postgresql": 1.3}  # at most this x plaintext (issue #5)


def _best_ns(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def cost_model(url, make_type, rows, plain_s: float, ours_s: float, target: float) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    values = [r[c] for r in rows for c in ("a", "b")]
    md = sa.MetaData()
    t = _table(md, f"bench_{uuid.uuid4().hex[:10]}", make_type)
    engine = sa.create_engine(url)
    md.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("select 1"))  # the processors run inside a statement
            typ = t.c.a.type
            write = typ.bind_processor(engine.dialect)
            read = typ.result_processor(engine.dialect, None)
            stored = [bytes(v) for v in map(write, values)]  # bytes, as drivers return them
            bind = _best_ns(lambda: list(map(write, values)), len(values))
            result = _best_ns(lambda: list(map(read, stored)), len(values))
        gcm, nonce, aad = AESGCM(os.urandom(32)), os.urandom(12), os.urandom(48)
        plains = [b"\x01" + v.encode() for v in values]
        sealed = [gcm.encrypt(nonce, p, aad) for p in plains]
        enc = _best_ns(lambda: [gcm.encrypt(nonce, p, aad) for p in plains], len(values))
        dec = _best_ns(lambda: [gcm.decrypt(nonce, c, aad) for c in sealed], len(values))
    finally:
        md.drop_all(engine)
        engine.dispose()
    n = 2 * len(values)  # each value written and read
    budget, spent = (target - 1) * plain_s / n * 1e9, (ours_s - plain_s) / n * 1e9
    procs, aes = (bind + result) / 2, (enc + dec) / 2
    return (f"cost per value (ns): budget {budget:.0f} (at most {target}x plaintext); "
            f"measured {spent:.0f} = processors {procs:.0f} (bind {bind:.0f}, result {result:.0f}; "
            f"bare AESGCM calls {aes:.0f} of it) + {spent - procs:.0f} outside them "
            f"(driver, SQLAlchemy, GC, database)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-repeat", type=int, default=1)
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="kms-bench-")
    os.environ["KMS_HOME"] = home
    os.environ["KMS_ROOT_KEY"] = base64.b64encode(os.urandom(32)).decode()
    from sqlalchemy_utils import StringEncryptedType
    from sqlalchemy_utils.types.encrypted.encrypted_type import AesGcmEngine

    import kms_core
    from integrations.encrypted_columns import EncryptedType, configure

    counting = CountingKMS(kms_core.client())
    configure(kms=counting)
    secret = "application secret for sqlalchemy-utils"
    rows = [{"id": i, "a": f"alice{i:08d}@example.org", "b": f"4111-1111-{i:08d}"}
            for i in range(1, args.rows + 1)]
    variants = [
        ("plaintext", lambda: sa.String(64), None),
        ("EncryptedType", lambda: EncryptedType(sa.String(64)), counting),
        ("sqlalchemy-utils AesGcm", lambda: StringEncryptedType(sa.String(64), secret, AesGcmEngine),
         None),
    ]
    backends = {"sqlite": f"sqlite:///{os.path.join(home, 'bench.db')}", "postgresql": PG}
    print(f"{args.rows} rows x 2 encrypted String(64) columns; executemany INSERT, then SELECT all; "
          f"best of {args.repeat} (sqlalchemy-utils: {args.peer_repeat})")
    for backend in args.backends.split(","):
        url = backends[backend]
        results = {}
        for rep in range(args.repeat):
            for label, make, counter in variants:
                if label.startswith("sqlalchemy-utils") and rep >= args.peer_repeat:
                    continue
                got = run_variant(url, make, rows, label, 1, counter,
                                  (lambda: configure(kms=counting)) if counter else None)
                old = results.get(label)
                results[label] = got if old is None else (
                    min(old[0], got[0]), min(old[1], got[1]), got[2], min(old[3], got[3]))
        base = sum(results["plaintext"][:2])
        ours = sum(results["EncryptedType"][:2])
        print(f"\n[{backend}]")
        cpu_base = results["plaintext"][3]
        print(f"{'variant':26} {'insert s':>9} {'select s':>9} {'total s':>8} {'x plain':>8} "
              f"{'CPU s':>7} {'x plain':>8}  KMS calls")
        for label, (ins, sel, calls, cpu) in results.items():
            kms_txt = ", ".join(f"{k} {v}" for k, v in sorted(calls.items())) if label == "EncryptedType" else "-"
            print(f"{label:26} {ins:9.3f} {sel:9.3f} {ins + sel:8.3f} {(ins + sel) / base:8.2f} "
                  f"{cpu:7.3f} {cpu / cpu_base:8.2f}  {kms_txt}")
        utils = sum(results["sqlalchemy-utils AesGcm"][:2])
        print(f"EncryptedType / plaintext = {ours / base:.2f}x "
              f"(this process's CPU time: {results['EncryptedType'][3] / cpu_base:.2f}x); "
              f"sqlalchemy-utils / EncryptedType = {utils / ours:.2f}x; "
              f"KMS calls = {sum(results['EncryptedType'][2].values())} "
              f"(insert in one process, select in a fresh one)")
        print(cost_model(url, variants[1][1], rows, base, ours, TARGETS[backend]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

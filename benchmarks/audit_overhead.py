"""What the audit trail costs the in-process Encrypt (64 bytes), per durability
mode, side by side with the same engine unaudited, in the same run.

    python benchmarks/audit_overhead.py [--ops 5000] [--rounds 3] [--threads 8] [--pg URL]

Three SQLite stores (no audit, ``buffered``, ``durable``; docs/audit-log.md,
"Durability") and, with ``--pg``, the two audited modes on PostgreSQL.  Each
round times every configuration once, in turn (alternating, so a burst of load
from elsewhere on the machine hits them alike): ``ops`` Encrypts from one
thread, then ``ops`` spread over ``--threads`` threads (where group commit
shares one commit among waiting requests), each followed by ``flush()`` so the
writer's work is inside the figure.  Prints wall and process CPU µs/op (all
threads: callers and writer) per round, then the range over rounds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

ROOT = os.urandom(32)
PAYLOAD = os.urandom(64)


def timed(kms, key: str, ops: int, threads: int, audit) -> tuple[float, float]:
    """µs/op of wall time and of process CPU time, the final flush included."""
    per = ops // threads

    def work():
        for _ in range(per):
            kms.encrypt(KeyId=key, Plaintext=PAYLOAD)

    c0, t0 = time.process_time(), time.perf_counter()
    if threads == 1:
        work()
    else:
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if audit is not None:
        audit.flush(timeout=300)
    t1, c1 = time.perf_counter(), time.process_time()
    n = per * threads
    return (t1 - t0) / n * 1e6, (c1 - c0) / n * 1e6


def setup(label: str, store_url: str | None, home: str, durability: str | None):
    import kms_core
    from kms_core.audit import attach

    kms = kms_core.client(home=home, root_key=ROOT, store_url=store_url)
    key = kms.create_key(Description="bench")["KeyMetadata"]["KeyId"]
    audit = attach(kms.engine, durability=durability) if durability else None
    for _ in range(200):
        kms.encrypt(KeyId=key, Plaintext=PAYLOAD)
    if audit is not None:
        audit.flush()
    return {"label": label, "kms": kms, "key": key, "audit": audit, "runs": {}}


def pg_schema(stack: ExitStack, url: str) -> str | None:
    import sqlalchemy as sa
    schema = "bench_audit_" + uuid.uuid4().hex[:12]
    try:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as e:
        print(f"PostgreSQL not reachable ({type(e).__name__}); skipped")
        return None

    def drop():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
    stack.callback(drop)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--pg", default=os.environ.get(
        "KMS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()

    from kms_core.audit import AuditReader

    with ExitStack() as stack:
        configs = []
        for label, durability in (("no audit", None), ("buffered, SQLite", "buffered"),
                                  ("durable, SQLite", "durable")):
            home = stack.enter_context(tempfile.TemporaryDirectory())
            configs.append(setup(label, None, home, durability))
        for label, durability in (("buffered, PostgreSQL", "buffered"),
                                  ("durable, PostgreSQL", "durable")):
            pg = None if args.no_pg else pg_schema(stack, args.pg)  # one schema (chain) each
            if pg:
                home = stack.enter_context(tempfile.TemporaryDirectory())
                configs.append(setup(label, pg, home, durability))
        print(f"Encrypt 64 B in-process, {args.ops} ops per run, {args.rounds} alternating rounds; "
              "µs/op wall / process CPU (all threads)")
        shapes = (("1 thread", 1), (f"{args.threads} threads", args.threads))
        for r in range(args.rounds):
            for shape, threads in shapes:
                for c in configs:
                    wall, cpu = timed(c["kms"], c["key"], args.ops, threads, c["audit"])
                    c["runs"].setdefault(shape, []).append((wall, cpu))
                    print(f"round {r + 1}  {shape:<10} {c['label']:<22} wall {wall:7.1f}  CPU {cpu:7.1f}",
                          flush=True)
        print("\nranges over rounds (min–max), and the ratio of medians to no audit:")
        base = configs[0]["runs"]
        for shape, _ in shapes:
            bw = sorted(w for w, _ in base[shape])[len(base[shape]) // 2]
            bc = sorted(c for _, c in base[shape])[len(base[shape]) // 2]
            for c in configs:
                runs = c["runs"][shape]
                ws, cs = sorted(w for w, _ in runs), sorted(x for _, x in runs)
                print(f"{shape:<10} {c['label']:<22} wall {ws[0]:7.1f}–{ws[-1]:7.1f} (x{ws[len(ws) // 2] / bw:5.2f})"
                      f"   CPU {cs[0]:7.1f}–{cs[-1]:7.1f} (x{cs[len(cs) // 2] / bc:5.2f})")
        for c in configs:
            if c["audit"] is not None:
                c["audit"].close()
                rep = AuditReader(c["kms"].engine.store).verify()
                print(f"verify {c['label']}: {'OK' if rep.ok else 'FAILED'} ({rep.checked} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

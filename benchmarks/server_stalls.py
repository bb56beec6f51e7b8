"""Stalls of `kms serve` under load: every request's latency, PostgreSQL next to SQLite.

    python benchmarks/server_stalls.py [--seconds 60] [--connections 16] [--rounds 3]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1/test] [--no-audit]

For each round and each setup -- ``--workers 2`` on one store, and two nodes
(two `kms serve` processes of one worker each sharing the store, the
connections split between them) -- on SQLite and on PostgreSQL (a fresh
schema per run, dropped afterwards), replays a pre-signed Encrypt of 64 bytes
from a multi-process Python load generator that keeps every request's
latency, and prints requests/s, p50, p99, the maximum and the number of
requests over 100 ms (with the seconds into the run at which the slowest
began).  Setups alternate within a round, so PostgreSQL and SQLite see the
same machine load.  Targets (issue 14.4): no request over 100 ms in a
60-second run at 16 connections on PostgreSQL, throughput within 20% of
SQLite's.  On a loaded machine CPU starvation delays requests on SQLite too:
compare the two columns, not either against zero.  Any non-200 fails the run.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import server_throughput as st
from sqlalchemy import create_engine, text

SLOW = 0.1  # seconds: a stall


def _worker(args) -> list[tuple[float, float, int]]:
    targets, headers, body, stop_at, t0 = args
    out: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def one(host: str, port: int, hdrs: dict) -> None:
        c = http.client.HTTPConnection(host, port)
        mine = []
        while time.time() < stop_at:
            t = time.time()
            try:
                c.request("POST", "/", body=body, headers=hdrs)
                r = c.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):  # counted (status -1), then a new connection
                c.close()
                c = http.client.HTTPConnection(host, port)
                status = -1
            mine.append((t - t0, time.time() - t, status))
        with lock:
            out.extend(mine)

    # Every node gets the same signed request (its Host header included): they serve one store.
    threads = [threading.Thread(target=one, args=(h, p, headers)) for h, p in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def load(urls: list[str], headers: dict, body: bytes, seconds: float, connections: int, procs: int = 4) -> dict:
    """``connections`` keep-alive connections spread over ``urls`` and ``procs`` processes."""
    addrs = [(u.split("://")[1].split(":")[0], int(u.rsplit(":", 1)[1])) for u in urls]
    conns = [addrs[i % len(addrs)] for i in range(connections)]
    t0 = time.time()
    parts = [conns[i::procs] for i in range(procs)]
    with multiprocessing.Pool(procs) as pool:
        rows = [r for part in pool.map(_worker, [(p, headers, body, t0 + seconds, t0) for p in parts if p])
                for r in part]
    lat = sorted(r[1] for r in rows)
    slow = sorted((r for r in rows if r[1] > SLOW), key=lambda r: -r[1])
    n = len(lat)
    return {"rps": n / seconds, "p50_ms": lat[n // 2] * 1e3 if n else float("nan"),
            "p99_ms": lat[int(n * 0.99) - 1] * 1e3 if n else float("nan"),
            "max_ms": lat[-1] * 1e3 if n else float("nan"), "slow": len(slow),
            "slowest_at": [round(r[0], 1) for r in slow[:5]],
            "failures": {s: sum(r[2] == s for r in rows) for s in {r[2] for r in rows} - {200}}}


def run_setup(store: str, nodes: int, args) -> dict:
    """One fresh store, ``nodes`` servers (2 workers for one node, 1 each for two), warmed, then measured."""
    schema = None
    store_url = None
    if store == "PostgreSQL":
        schema = f"kms_stalls_{uuid.uuid4().hex[:12]}"
        with create_engine(args.postgres_url).begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
        store_url = f"{args.postgres_url}?options=-csearch_path%3D{schema}"
    procs = []
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            env, key = st.kms_env(tmp, store_url)
            workers = 2 if nodes == 1 else 1
            urls = []
            for i in range(nodes):
                proc, url = st.start_server(tmp, env, workers, audit=not args.no_audit, name=f"kms{i}")
                procs.append(proc)
                urls.append(url)
            target, params = st.cases(urls[0], key)["Encrypt 64 B"]
            headers, body = st.presign(urls[0], key, target, params)
            load(urls, headers, body, args.warmup, args.connections)
            result = load(urls, headers, body, args.seconds, args.connections)
            if result["failures"] or not result["rps"]:
                # Say why: the servers' own logs (the temporary directory goes away).
                for i in range(nodes):
                    for p in procs:
                        p.poll()
                    log_text = (tmp / f"kms{i}.log").read_text(errors="replace")[-4000:]
                    print(f"--- {store}, node {i} (exit code {procs[i].returncode}), log tail:\n{log_text}",
                          file=sys.stderr)
            return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:  # a server that ignores SIGTERM under load
                p.kill()
        if schema:
            with create_engine(args.postgres_url).begin() as c:
                c.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured load per setup (default 60)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured load first (default 3)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    ap.add_argument("--no-audit", action="store_true", help="kms serve --no-audit (audit log on by default)")
    ap.add_argument("--setups", default="2 workers,two nodes", help="comma-separated: '2 workers', 'two nodes'")
    args = ap.parse_args()
    setups = [(s.strip(), 1 if s.strip() == "2 workers" else 2) for s in args.setups.split(",")]
    print(f"Encrypt 64 B, {args.connections} connections, {args.seconds:g} s per setup, audit "
          f"{'off' if args.no_audit else 'on'}; {os.cpu_count()} CPUs; load average before: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'round':<6}{'setup':<11}{'store':<12}{'req/s':>8}{'p50':>9}{'p99':>9}{'max':>9}{'>100ms':>8}"
          "  slowest began at (s)")
    failed = False
    for rnd in range(1, args.rounds + 1):
        for name, nodes in setups:
            for store in ("SQLite", "PostgreSQL"):
                r = run_setup(store, nodes, args)
                failed |= bool(r["failures"])
                print(f"{rnd:<6}{name:<11}{store:<12}{r['rps']:>8.0f}{r['p50_ms']:>7.1f}ms{r['p99_ms']:>7.1f}ms"
                      f"{r['max_ms']:>7.0f}ms{r['slow']:>8}  {r['slowest_at']}"
                      f"{'  non-200: ' + str(r['failures']) if r['failures'] else ''}", flush=True)
    if failed:
        print("FAILED: some requests were not answered with 200")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`kms serve` under sustained load, side by side with moto's server, same run.

    python benchmarks/server_throughput.py [--seconds 4] [--rounds 3] [--connections 16] [--workers 2]
                                           [--compare-fast-path] [--compare-audit] [--no-audit]

Starts `kms serve` (strict SigV4, a created access key, SQLite store in a temp
dir) and `moto_server` on loopback, then replays one pre-signed request per
case (Encrypt 64 B, Decrypt, GenerateDataKey AES_256) with wrk (Debian package
`wrk`; a multi-process Python load generator with raw http.client is used
when wrk is missing).  SigV4 signatures stay valid for 5 minutes, so every
replayed request is fully verified by the server.  Stalls (every request's
latency, PostgreSQL next to SQLite, two workers and two nodes) are measured by
``benchmarks/server_stalls.py``, which reuses this module's helpers.  Prints requests/s, p50 and p99
latency for both and the throughput ratio.  Targets (issue 3): ratio >= 10x,
p99 <= 10 ms at 16 connections.  Any non-200 answer fails the run.
"""
from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
PAYLOAD = os.urandom(64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError as e:
            if getattr(e, "code", None):  # an HTTP error status: the server is up
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def presign(url: str, key: dict, target: str, params: dict) -> tuple[dict, bytes]:
    body = json.dumps(params).encode()
    req = AWSRequest(method="POST", url=url + "/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{target}"})
    SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "kms", REGION).add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = url.split("://", 1)[1]
    return headers, body


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its children (worker processes), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry))
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# -- load generators -------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _find(pattern: str, text: str) -> re.Match:
    m = re.search(pattern, text, re.M)
    if m is None:
        raise SystemExit(f"unexpected wrk output (no {pattern!r}): {text.strip()}")
    return m


def wrk_script(headers: dict, body: bytes, host: bool = False, extra: str = "") -> str:
    """A wrk Lua script file replaying one signed POST (the caller deletes it); ``host``
    keeps the signed Host header (several servers, one signature)."""
    lua = ["wrk.method = 'POST'", f"wrk.body = {json.dumps(body.decode())}"]
    lua += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()
            if host or k.lower() != "host"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lua) + "\n" + extra)
        return f.name


def run_wrk(url: str, headers: dict, body: bytes, seconds: float, connections: int, threads: int) -> dict:
    script = wrk_script(headers, body)
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", script, url + "/"],
                             check=False, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    text = out.stdout
    if "Requests/sec" not in text:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stderr.strip() or text.strip()}")
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = _find(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text)
    p99 = float(m.group(1)) * _UNITS[m.group(2)]
    m = _find(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text)
    p50 = float(m.group(1)) * _UNITS[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failures = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    total = int(_find(r"(\d+) requests in", text).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "failures": failures, "requests": total}


def _py_worker(args):
    host, port, headers, body, seconds, conns = args
    import http.client
    import threading

    lat, fails = [], [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def one():
        c = http.client.HTTPConnection(host, port)
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            c.request("POST", "/", body=body, headers=headers)
            r = c.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            if r.status != 200:
                fails[0] += 1
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=one) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, fails[0]


def run_python(url: str, headers: dict, body: bytes, seconds: float, connections: int, procs: int) -> dict:
    host, port = url.split("://", 1)[1].split(":")
    per = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    with multiprocessing.Pool(procs) as pool:
        t0 = time.monotonic()
        parts = pool.map(_py_worker, [(host, int(port), headers, body, seconds, n) for n in per if n])
        elapsed = time.monotonic() - t0
    lat = sorted(x for p in parts for x in p[0])
    return {"rps": len(lat) / elapsed, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3 if lat else float("nan"),
            "p50_ms": lat[len(lat) // 2] * 1e3 if lat else float("nan"),
            "failures": sum(p[1] for p in parts), "requests": len(lat)}


# -- servers ---------------------------------------------------------------------------

def kms_env(tmp: Path, store_url: str | None) -> tuple[dict, dict]:
    """The environment of a fresh store (KMS_HOME under ``tmp``) and an access key in it."""
    home = tmp / "kms-home"
    env = {**os.environ, "KMS_HOME": str(home), "KMS_ROOT_KEY": base64.b64encode(os.urandom(32)).decode()}
    for v in ("KMS_STORE_URL", "KMS_ROOT_KEY_FILE", "KMS_SERVER_CONFIG"):
        env.pop(v, None)
    if store_url:
        env["KMS_STORE_URL"] = store_url
    # (Workers racing to create tables on a fresh schema is the store's business: store.create_tables.)
    key = json.loads(subprocess.run([sys.executable, "-c",
                                     "import sys; from kms_core.server.cli import create_access_key_main as m; "
                                     "sys.exit(m(['--user-name', 'bench']))"],
                                    env=env, check=True, capture_output=True, text=True).stdout)["AccessKey"]
    return env, key


def start_server(tmp: Path, env: dict, workers: int, engine_calls: str = "loop", audit: bool = True,
                 name: str = "kms", extra: tuple[str, ...] = ()):
    port = free_port()
    with open(tmp / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kms_core.server", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(workers), "--engine-calls", engine_calls, "--log-level", "warning"]
                                + ([] if audit else ["--no-audit"]) + list(extra),
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc)
    return proc, url


def start_kms(tmp: Path, workers: int, engine_calls: str, audit: bool, store_url: str | None):
    env, key = kms_env(tmp, store_url)
    proc, url = start_server(tmp, env, workers, engine_calls, audit)
    return proc, url, key


def start_moto(tmp: Path):
    port = free_port()
    exe = shutil.which("moto_server") or sys.exit("moto_server not found (pip install 'moto[server]')")
    with open(tmp / "moto.log", "wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", proc)
    return proc, url, {"AccessKeyId": "testing", "SecretAccessKey": "testing"}


def cases(url: str, key: dict) -> dict:
    kms = boto3.client("kms", endpoint_url=url, region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                       aws_secret_access_key=key["SecretAccessKey"])
    key_id = kms.create_key(Description="bench")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=PAYLOAD)["CiphertextBlob"]
    b64 = base64.b64encode
    return {
        "Encrypt 64 B": ("Encrypt", {"KeyId": key_id, "Plaintext": b64(PAYLOAD).decode()}),
        "Decrypt": ("Decrypt", {"CiphertextBlob": b64(blob).decode()}),
        "GenerateDataKey": ("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256"}),
    }


def _range(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}-{format(hi, fmt)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="load per case (default 4)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds over the servers (default 1)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="kms serve workers")
    ap.add_argument("--engine-calls", choices=["loop", "threads"], default="loop",
                    help="kms serve --engine-calls (default loop)")
    ap.add_argument("--store-url", default=None,
                    help="store for kms serve (default: SQLite in a temp dir); must be empty, e.g. a fresh "
                         "PostgreSQL schema: postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%%3Dbench")
    ap.add_argument("--no-audit", action="store_true", help="kms serve --no-audit (audit log on by default)")
    ap.add_argument("--compare-fast-path", action="store_true",
                    help="also run a kms serve with KMS_SERVE_FAST_PATH=0 (every request through the ASGI cycle)")
    ap.add_argument("--compare-audit", action="store_true",
                    help="also run kms serve with --audit-writer thread and with --no-audit")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    args = ap.parse_args()
    load = (lambda u, h, b: run_wrk(u, h, b, args.seconds, args.connections, args.threads)) if args.load == "wrk" \
        else (lambda u, h, b: run_python(u, h, b, args.seconds, args.connections, 2))

    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results: dict[tuple[str, str], list[dict]] = {}
    variants = {"kms serve": ()}
    if args.compare_fast_path:
        variants["kms (ASGI only)"] = ()
    if args.compare_audit:
        variants["kms (audit thread)"] = ("--audit-writer", "thread")
        variants["kms (no audit)"] = ("--no-audit",)
    names = [*variants, "moto_server"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        procs = []
        try:
            served = {}
            for name in names:
                if name == "moto_server":
                    proc, url, key = start_moto(tmp)
                else:
                    sub = tmp / f"kms{len(procs)}"
                    sub.mkdir()
                    env, key = kms_env(sub, args.store_url if name == "kms serve" else None)
                    if name == "kms (ASGI only)":
                        env["KMS_SERVE_FAST_PATH"] = "0"
                    proc, url = start_server(sub, env, args.workers, args.engine_calls, not args.no_audit,
                                             extra=variants[name])
                procs.append(proc)
                served[name] = (proc, [(case, *presign(url, key, target, params))
                                       for case, (target, params) in cases(url, key).items()], url)
            for _ in range(args.rounds):
                for name in names:  # A B C A B C ...: load on the shared machine hits all alike
                    proc, requests, url = served[name]
                    for case, headers, body in requests:
                        load(url, headers, body)  # warm-up at full load
                        cpu0 = cpu_seconds(proc.pid)
                        r = load(url, headers, body)
                        # Server CPU per request does not depend on what else the machine runs.
                        r["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / max(1, r["requests"]) * 1e6
                        results.setdefault((name, case), []).append(r)
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:  # moto's dev server may ignore SIGTERM under load
                    p.kill()
                    p.wait(5)

    print(f"load: {args.load}, {args.connections} connections, {args.seconds:g} s per case, "
          f"{args.rounds} alternating round(s); kms serve --workers {args.workers} --engine-calls {args.engine_calls}"
          f"{' --no-audit' if args.no_audit else ''}; "
          f"store {'SQLite' if not args.store_url else args.store_url.split(':')[0]}"
          f"; {os.cpu_count()} CPUs; loopback")
    print(f"load average before the run: {load_before}; after: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'server':<19}{'case':<17}{'req/s':>13}{'p50 ms':>11}{'p99 ms':>11}{'CPU/req us':>13}"
          f"{'req/s vs moto':>15}{'CPU vs moto':>13}")
    failed = False
    for name in names:
        for case in ("Encrypt 64 B", "Decrypt", "GenerateDataKey"):
            rs, ms = results[(name, case)], results[("moto_server", case)]
            failed |= any(r["failures"] for r in rs)
            ratio = [r["rps"] / m["rps"] for r, m in zip(rs, ms, strict=True)]
            cpu = [m["cpu_us"] / r["cpu_us"] for r, m in zip(rs, ms, strict=True)]
            print(f"{name:<19}{case:<17}{_range([r['rps'] for r in rs], '.0f'):>13}"
                  f"{_range([r['p50_ms'] for r in rs], '.1f'):>11}{_range([r['p99_ms'] for r in rs], '.1f'):>11}"
                  f"{_range([r['cpu_us'] for r in rs], '.0f'):>13}{_range(ratio, '.1f'):>14}x{_range(cpu, '.1f'):>12}x")
    if failed:
        print("FAILED: some requests were not answered with 200:",
              {f"{s}/{c}": sum(r["failures"] for r in rs) for (s, c), rs in results.items()
               if any(r["failures"] for r in rs)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

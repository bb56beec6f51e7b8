"""Wall time of one `kms` command next to the AWS CLI v1 doing the same, in the same run.

    python benchmarks/cli_startup.py [--runs 3]

Starts a moto server on a free loopback port and a temporary KMS_HOME, then
runs each command ``runs`` times, interleaved (so load on a shared machine
hits every command alike), and prints the median wall time of each and the
ratio to ``aws kms list-keys --endpoint-url``, for wall time and for the child's
CPU time (user + system; steadier than wall time when the machine is shared):

* ``kms --version`` and ``aws --version`` (interpreter + CLI start-up only);
* ``kms --help`` (lists the commands from the operation table; issue #16.8 asks ≤ 150 ms of
  CPU) beside ``python -c pass``, the interpreter's own floor;
* ``kms list-keys`` on the embedded engine (start-up + opening the store);
* ``kms list-keys --endpoint-url`` and ``aws kms list-keys --endpoint-url``
  against the same moto server (both are botocore clients over HTTP).
"""
from __future__ import annotations

import argparse
import base64
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): CPU time is the steadier figure on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines in the report

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    kms, aws = os.path.join(BIN, "kms"), os.path.join(BIN, "aws")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "KMS_HOME": home, "KMS_ROOT_KEY": base64.b64encode(os.urandom(32)).decode(),
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        env.pop("AWS_ENDPOINT_URL_KMS", None)
        commands = {
            "kms --version": [kms, "--version"],
            "aws --version": [aws, "--version"],
            "kms --help": [kms, "--help"],
            "python -c pass": [sys.executable, "-c", "pass"],
            "kms list-keys (embedded)": [kms, "list-keys"],
            "kms list-keys --endpoint-url moto": [kms, "list-keys", "--endpoint-url", url],
            "aws kms list-keys --endpoint-url moto": [aws, "kms", "list-keys", "--endpoint-url", url],
        }
        # One key in each place, and a warm-up run of everything (creates the store, fills OS caches).
        timed([kms, "create-key", "--description", "bench"], env)
        timed([kms, "create-key", "--description", "bench", "--endpoint-url", url], env)
        for cmd in commands.values():
            timed(cmd, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, env))
    server.stop()

    ref = samples["aws kms list-keys --endpoint-url moto"]
    ref_wall = statistics.median(w for w, _ in ref)
    ref_cpu = statistics.median(c for _, c in ref)
    print(f"median of {args.runs} runs each, interleaved; ratio = aws kms list-keys --endpoint-url / this")
    print(f"  {'command':<40} {'wall':>8}  {'ratio':>6}   {'CPU':>8}  {'ratio':>6}")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"  {name:<40} {wall * 1000:6.0f} ms  x{ref_wall / wall:5.2f}   {cpu * 1000:6.0f} ms  x{ref_cpu / cpu:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

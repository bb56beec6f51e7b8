"""Wall time of one `kms` command next to the AWS CLI v1 doing the same, in the same run.

    python benchmarks/cli_startup.py [--runs 3]

Starts a moto server on a free loopback port and a temporary KMS_HOME, then
runs each command ``runs`` times, interleaved (so load on a shared machine
hits every command alike), and prints the median wall time of each and the
ratio to ``aws kms list-keys --endpoint-url``:

* ``kms --version`` and ``aws --version`` (interpreter + CLI start-up only);
* ``kms list-keys`` on the embedded engine (start-up + opening the store);
* ``kms list-keys --endpoint-url`` and ``aws kms list-keys --endpoint-url``
  against the same moto server (both are botocore clients over HTTP).
"""
from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


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
            "kms list-keys (embedded)": [kms, "list-keys"],
            "kms list-keys --endpoint-url moto": [kms, "list-keys", "--endpoint-url", url],
            "aws kms list-keys --endpoint-url moto": [aws, "kms", "list-keys", "--endpoint-url", url],
        }
        # One key in each place, and a warm-up run of everything (creates the store, fills OS caches).
        timed([kms, "create-key", "--description", "bench"], env)
        timed([kms, "create-key", "--description", "bench", "--endpoint-url", url], env)
        for cmd in commands.values():
            timed(cmd, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, env))
    server.stop()

    reference = statistics.median(samples["aws kms list-keys --endpoint-url moto"])
    print(f"median of {args.runs} runs each, interleaved; ratio = aws kms list-keys --endpoint-url / this")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"  {name:<40} {med * 1000:8.0f} ms   x{reference / med:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

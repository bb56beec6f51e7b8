"""Cold start: decrypt 10 Lambda-style encrypted variables in a fresh process.

Side by side in one run, alternating, each a fresh `python` process timed from
spawn to exit (the work a Lambda init phase does):

  bare      python -c pass                        (interpreter start alone)
  peer      AWS's documented snippet: import boto3, boto3.client("kms"), Decrypt x10
            against `kms serve` on loopback (AWS_ENDPOINT_URL_KMS)
  ours      import integrations.lambda_env; decrypt_environ(10 names), same server
  embedded  the same call on the embedded engine (no endpoint; KMS_HOME store)

Targets (issue 6): ours <= 0.3 x peer; embedded <= bare + 50 ms.
All children share one bytecode cache (PYTHONPYCACHEPREFIX, filled by a
warm-up run), so no side pays for compiling sources.  Wall and CPU medians
are printed; CPU is steadier on a shared machine.

    python benchmarks/lambda_coldstart.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

N_VARS = 10
FUNCTION = "orders-api"
NAMES = [f"SECRET_{i}" for i in range(N_VARS)]

PEER = """
import boto3, os
from base64 import b64decode
kms = boto3.client('kms')
for name in %r:
    os.environ[name] = kms.decrypt(
        CiphertextBlob=b64decode(os.environ[name]),
        EncryptionContext={'LambdaFunctionName': os.environ['AWS_LAMBDA_FUNCTION_NAME']}
    )['Plaintext'].decode('utf-8')
assert os.environ[%r] == 'value-0-' + 'x' * 24
""" % (NAMES, NAMES[0])

OURS = """
import integrations.lambda_env as le
v = le.decrypt_environ(%r)
assert v[%r] == 'value-0-' + 'x' * 24
""" % (NAMES, NAMES[0])


def kms_cmd() -> list[str]:
    exe = shutil.which("kms")
    return [exe] if exe else [sys.executable, "-m", "kms_core.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMS_", "AWS_")) and k != "PYTHONDONTWRITEBYTECODE"}
    # Every module's bytecode cached (written by the warm-up run), as after a
    # pip install; the project's own sources would otherwise be recompiled per run.
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def timed(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one child; CPU (user+sys) is less disturbed by
    other load on a shared machine than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lambda-coldstart-")
    server_home, embedded_home = os.path.join(tmp, "server"), os.path.join(tmp, "embedded")
    os.makedirs(server_home)
    os.makedirs(embedded_home)
    pycache = os.path.join(tmp, "pycache")

    srv_env = base_env(pycache)
    srv_env.update(KMS_HOME=server_home, KMS_ROOT_KEY=base64.b64encode(os.urandom(32)).decode(),
                   AWS_DEFAULT_REGION="us-east-1")
    made = subprocess.run(kms_cmd() + ["create-access-key", "--user-name", "bench",
                                          "--service", "lambda"], env=srv_env,
                          capture_output=True, text=True, check=True)
    key = json.loads(made.stdout)["AccessKey"]
    port = free_port()
    server = subprocess.Popen(kms_cmd() + ["serve", "--port", str(port), "--workers", "1",
                                           "--log-level", "warning"],
                              env=srv_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("kms serve did not start")
                time.sleep(0.1)
        remote = base_env(pycache)
        remote.update(AWS_ENDPOINT_URL_KMS=f"http://127.0.0.1:{port}", AWS_REGION="us-east-1",
                      AWS_DEFAULT_REGION="us-east-1",  # Lambda sets both
                      AWS_ACCESS_KEY_ID=key["AccessKeyId"],
                      AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
                      AWS_LAMBDA_FUNCTION_NAME=FUNCTION,
                      AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        embedded = base_env(pycache)
        embedded.update(KMS_HOME=embedded_home,
                        KMS_ROOT_KEY=base64.b64encode(os.urandom(32)).decode(),
                        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
                        AWS_LAMBDA_FUNCTION_NAME=FUNCTION)

        # The variables, made the console's way (context = function name).
        from integrations.lambda_env.core import encrypt_value
        from integrations.lambda_env.remote import LightKMSClient, sigv4
        light = LightKMSClient(remote["AWS_ENDPOINT_URL_KMS"], region="us-east-1",
                               credentials=sigv4.Credentials(key["AccessKeyId"], key["SecretAccessKey"]))
        import kms_core
        local = kms_core.client(home=embedded_home, region="us-east-1",
                                root_key=base64.b64decode(embedded["KMS_ROOT_KEY"]))
        for i, name in enumerate(NAMES):
            plaintext = f"value-{i}-" + "x" * 24
            remote[name] = encrypt_value(plaintext, kms=light, function_name=FUNCTION)
            embedded[name] = encrypt_value(plaintext, kms=local, function_name=FUNCTION)

        runs = {"bare": ("pass", remote), "peer": (PEER, remote), "ours": (OURS, remote),
                "embedded": (OURS, embedded)}
        for code, env in runs.values():  # warm the OS page cache once
            timed(code, env)
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpus: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for label, (code, env) in runs.items():
                wall, cpu = timed(code, env)
                times[label].append(wall)
                cpus[label].append(cpu)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cpu = {k: statistics.median(v) * 1000 for k, v in cpus.items()}
    print(f"fresh process decrypting {N_VARS} variables; median of {args.rounds} rounds (ms)")
    print(f"  {'':9s} {'wall':>8s} {'cpu':>8s}   wall range")
    for label in runs:
        lo, hi = min(times[label]) * 1000, max(times[label]) * 1000
        print(f"  {label:9s} {med[label]:8.1f} {cpu[label]:8.1f}   {lo:.1f} .. {hi:.1f}")
    ratio, cpu_ratio = med["ours"] / med["peer"], cpu["ours"] / cpu["peer"]
    over, cpu_over = med["embedded"] - med["bare"], cpu["embedded"] - cpu["bare"]
    print(f"ours / peer (kms serve, loopback): wall {ratio:.2f}x, cpu {cpu_ratio:.2f}x   "
          f"target <= 0.30x  {'OK' if ratio <= 0.3 else 'MISSED'}")
    print(f"embedded - bare interpreter:       wall {over:+.1f} ms, cpu {cpu_over:+.1f} ms   "
          f"target <= +50 ms  {'OK' if over <= 50 else 'MISSED'}")
    print(f"ours - bare (remote):              wall {med['ours'] - med['bare']:+.1f} ms, "
          f"cpu {cpu['ours'] - cpu['bare']:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

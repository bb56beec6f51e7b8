"""Sign (ECC_NIST_P256, ECDSA_SHA_256, RAW 64 B) and GenerateMac (HMAC_256, 64 B), in-process
and through a server, side by side with moto in the same run (issue #11's figures).

    python benchmarks/keytypes.py [--rounds 3] [--seconds 1]

Four set-ups, measured in alternating rounds (every round runs each of them once, in
turn, so load from other work on the machine falls on all of them alike):

* ``kms_core.client()`` (in-process engine)  vs  boto3 under moto's ``mock_aws`` (in-process);
* boto3 -> ``kms serve`` (SigV4, SQLite, audit log on)  vs  boto3 -> ``moto_server``.

Prints µs per call (best of 5 batches per round) as min–max over the rounds, and the
ratio moto / ours per round as a range.  No targets: these are figures for the README.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_inprocess import per_op  # the benchmarks' shared timer
from server_throughput import start_kms, start_moto  # the same servers as there

MESSAGE = os.urandom(64)
REGION = "us-east-1"
OPS = ("Sign", "GenerateMac")


def _calls(kms) -> dict[str, Callable[[], object]]:
    """One Sign and one GenerateMac call on fresh keys of ``kms`` (any boto3-shaped client)."""
    sk = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    hk = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    return {
        "Sign": lambda: kms.sign(KeyId=sk, Message=MESSAGE, MessageType="RAW",
                                 SigningAlgorithm="ECDSA_SHA_256"),
        "GenerateMac": lambda: kms.generate_mac(KeyId=hk, Message=MESSAGE, MacAlgorithm="HMAC_SHA_256"),
    }


def _boto3(url: str | None, key: dict | None = None):
    import boto3

    creds = key or {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
    return boto3.client("kms", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])


def measure_mock_aws(seconds: float) -> dict[str, float]:
    from moto import mock_aws

    with mock_aws():
        calls = _calls(_boto3(None))
        return {op: per_op(fn, seconds) for op, fn in calls.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import kms_core

    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        kms_proc, kms_url, kms_key = start_kms(tmp, 2, "loop", True, None)
        moto_proc, moto_url, moto_key = start_moto(tmp)
        try:
            local = _calls(kms_core.client(home=str(tmp / "inproc"), root_key=os.urandom(32)))
            served = _calls(_boto3(kms_url, kms_key))
            moto_served = _calls(_boto3(moto_url, moto_key))
            setups: dict[str, Callable[[], dict[str, float]]] = {
                "kms_core.client()": lambda: {op: per_op(fn, args.seconds) for op, fn in local.items()},
                "mock_aws": lambda: measure_mock_aws(args.seconds),
                "kms serve": lambda: {op: per_op(fn, args.seconds) for op, fn in served.items()},
                "moto_server": lambda: {op: per_op(fn, args.seconds) for op, fn in moto_served.items()},
            }
            for r in range(args.rounds):
                for name, run in setups.items():
                    for op, us in run().items():
                        results.setdefault((name, op), []).append(us)
                print(f"round {r + 1}/{args.rounds} done; load average {os.getloadavg()[0]:.1f}",
                      file=sys.stderr)
        finally:
            for proc in (kms_proc, moto_proc):
                proc.terminate()
                proc.wait(30)

    def span(xs: list[float]) -> str:
        return f"{min(xs):,.0f}–{max(xs):,.0f} µs" if min(xs) >= 100 else f"{min(xs):.1f}–{max(xs):.1f} µs"

    print(f"{args.rounds} alternating rounds; load average at the end {os.getloadavg()[0]:.1f}")
    for ours, peer in (("kms_core.client()", "mock_aws"), ("kms serve", "moto_server")):
        for op in OPS:
            a, b = results[(ours, op)], results[(peer, op)]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            print(f"{op:<12} {ours:<18} {span(a):>20}   {peer:<12} {span(b):>22}   "
                  f"{min(ratios):.1f}–{max(ratios):.1f}× faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())

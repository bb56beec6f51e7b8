"""In-process Encrypt/Decrypt of 64 bytes through kms_core.client(), side by
side with boto3 against a moto server started here (issue 2's figures).

    python benchmarks/core_inprocess.py [--seconds 2]

Prints µs per operation for each and the ratio.  Targets: ≤ 30 µs per
operation in-process and ≥ 50× faster than boto3 + moto server.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time


def per_op(fn, seconds: float) -> float:
    """Best of 5 timed rounds (µs per call); rounds are sized to ~seconds/5."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        fn()
        n += 1
    batch = max(1, int(n * seconds / 5 / 0.2))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - t) / batch)
    return best * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    payload = os.urandom(64)

    import kms_core
    with tempfile.TemporaryDirectory() as home:
        kms = kms_core.client(home=home, root_key=os.urandom(32))
        key = kms.create_key(Description="bench")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=payload)["CiphertextBlob"]
        ours_enc = per_op(lambda: kms.encrypt(KeyId=key, Plaintext=payload), args.seconds)
        ours_dec = per_op(lambda: kms.decrypt(CiphertextBlob=blob), args.seconds)

    import logging

    import boto3
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        moto = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
        mkey = moto.create_key()["KeyMetadata"]["KeyId"]
        mblob = moto.encrypt(KeyId=mkey, Plaintext=payload)["CiphertextBlob"]
        moto_enc = per_op(lambda: moto.encrypt(KeyId=mkey, Plaintext=payload), args.seconds)
        moto_dec = per_op(lambda: moto.decrypt(CiphertextBlob=mblob), args.seconds)
    finally:
        server.stop()

    print(f"{'operation':<10} {'kms_core.client()':>18} {'boto3+moto server':>18} {'ratio':>8}")
    for name, ours, theirs in (("Encrypt", ours_enc, moto_enc), ("Decrypt", ours_dec, moto_dec)):
        print(f"{name:<10} {ours:>15.1f} µs {theirs:>15.1f} µs {theirs / ours:>7.0f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

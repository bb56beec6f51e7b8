"""pandas → Parquet on S3 with client-side envelope encryption: add `encrypted::`.

    python examples/fs_pandas_s3.py                       # starts a local S3 (moto) itself
    python examples/fs_pandas_s3.py --endpoint-url http://127.0.0.1:9000 --bucket mybucket

KMS is the embedded engine (KMS_HOME, default ~/.kms); pass
`"encrypted": {"kms_endpoint": "http://127.0.0.1:8080"}` for `kms serve` (signed with a
`kms create-access-key --service s3` key: alias/aws/s3 is used through S3 only), or
nothing at all on AWS to use the real KMS with `alias/aws/s3`.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint-url", help="S3 endpoint (default: start moto on a free port)")
    ap.add_argument("--bucket", default="example-bucket")
    args = ap.parse_args()

    server = None
    if args.endpoint_url is None:
        from moto.server import ThreadedMotoServer
        # moto's server is werkzeug's: it logs every request at INFO to stderr.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        args.endpoint_url = f"http://127.0.0.1:{port}"

    import numpy as np
    import pandas as pd
    import s3fs

    s3_options = {"client_kwargs": {"endpoint_url": args.endpoint_url}}
    plain = s3fs.S3FileSystem(**s3_options)
    if not plain.exists(args.bucket):
        plain.mkdir(args.bucket)

    storage_options = {
        "s3": s3_options,                                   # the target's options, as usual
        "encrypted": {"encryption_context": {"dataset": "trades"}},  # optional; key: alias/aws/s3
    }
    url = f"encrypted::s3://{args.bucket}/trades.parquet"

    df = pd.DataFrame({"id": np.arange(100_000), "price": np.random.default_rng(0).random(100_000)})
    df.to_parquet(url, storage_options=storage_options)
    back = pd.read_parquet(url, storage_options=storage_options, columns=["price"])
    assert back["price"].equals(df["price"])

    raw = plain.cat_file(f"{args.bucket}/trades.parquet", start=0, end=4)
    print(f"wrote {len(df)} rows to {url}; the object starts with {raw!r}, not b'PAR1'")
    print(f"read back the 'price' column: {len(back)} rows, identical")
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()

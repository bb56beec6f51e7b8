"""How long the console's key list takes with many keys (in-process, server time only).

    python benchmarks/console_list.py [--keys 10000] [--rounds 5]

Creates N customer managed keys (every tenth with an alias) in a fresh SQLite store,
mounts the console on the server's ASGI app with the audit log on (as `kms
serve` runs it), signs in and times the list views: first page, a search, a
sort by key id descending, the last page, with the principal's key/alias index
cold (Refresh) and warm (reused for 5 s).  Prints the median and range per view.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--home", default=None, help="reuse this KMS_HOME (its root.key and keys) instead of a new one")
    args = ap.parse_args()
    # A RAM disk when there is one: creating 10 000 keys is 11 000 commits.
    tmp = Path(args.home) if args.home else Path(
        tempfile.mkdtemp(prefix="console-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    os.environ["KMS_HOME"] = str(tmp)  # the root key is $KMS_HOME/root.key, made on first use
    os.environ.pop("KMS_ROOT_KEY", None)
    from starlette.testclient import TestClient

    from kms_core.engine import Engine
    from kms_core.server.app import KMSApp, ServerConfig
    from kms_core.server.credentials import AccessKeys
    from kms_core.settings import Settings

    engine = Engine.open(Settings.from_env())
    t0 = time.perf_counter()
    have = len(engine.call("ListKeys", {"Limit": 1000}).get("Keys", []))
    for i in range(args.keys if not have else 0):  # unaudited setup, like an existing store
        kid = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        if i % 10 == 0:
            engine.call("CreateAlias", {"AliasName": f"alias/app-{i:05d}", "TargetKeyId": kid})
    print(f"created {args.keys} keys in {time.perf_counter() - t0:.1f}s ({tmp})", file=sys.stderr)
    key = AccessKeys(engine.store, engine.settings.account_id).create("bench")["AccessKey"]
    app = KMSApp(ServerConfig(), engine=engine)
    with TestClient(app, base_url="https://bench.local", follow_redirects=False) as web:
        page = web.get("/console/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        web.post("/console/signin", data={"csrf_token": csrf, "access_key_id": key["AccessKeyId"],
                                          "secret_access_key": key["SecretAccessKey"]})
        views = {"first page": "/console/keys", "search 'app-0042'": "/console/keys?q=app-0042",
                 "sort key id desc": "/console/keys?sort=keyid&order=desc",
                 "last page (100/page)": f"/console/keys?size=100&page={args.keys // 100}"}
        print(f"{'view':24} {'cold ms (median, range)':>28} {'warm ms (median, range)':>28}")
        for name, url in views.items():
            cold, warm = [], []
            for _ in range(args.rounds):
                sep = "&" if "?" in url else "?"
                t = time.perf_counter()
                r = web.get(url + sep + "refresh=1")
                cold.append((time.perf_counter() - t) * 1e3)
                assert r.status_code == 200 and "Enabled" in r.text, r.status_code
                t = time.perf_counter()
                web.get(url)
                warm.append((time.perf_counter() - t) * 1e3)
            print(f"{name:24} {statistics.median(cold):10.0f} ({min(cold):.0f}–{max(cold):.0f}){'':8}"
                  f" {statistics.median(warm):10.0f} ({min(warm):.0f}–{max(warm):.0f})")
    app.audit_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

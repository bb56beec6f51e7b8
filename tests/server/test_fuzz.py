"""Shape-aware fuzzing of a real `kms serve` (#16.1, #15.5), seeded and bounded.

Every operation of the model gets signed requests with hostile bodies
(tests/server/fuzz.py).  Every answer must be a success or an AWS-shaped error
(never a 5xx), in bounded time, and every request must be in the audit log
exactly once.  Runs on SQLite and on PostgreSQL (where a NUL in text was a 500).
"""
from __future__ import annotations

import http.client
import json
import os
import random
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kms_core.audit import AuditReader
from kms_core.model import OPERATIONS
from kms_core.store import Store

from .conftest import REGION
from .fuzz import Fuzzer

# 54 operations x 5 = 270 requests per store in CI; raise both for a deeper local run.
PER_OPERATION = int(os.environ.get("KMS_FUZZ_PER_OPERATION", "5"))
SEED = int(os.environ.get("KMS_FUZZ_SEED", "16"))
# An AWS-shaped error: a code of the KMS model or one of AWS JSON's protocol errors.
KNOWN_CODES = {code for op in OPERATIONS.values() for code in op.errors} | {
    "SerializationException", "ValidationException", "UnknownOperationException",
    "UnsupportedOperationException", "AccessDeniedException", "RequestEntityTooLargeException"}


def _signed(url: str, key: dict, op: str, body: bytes) -> dict:
    req = AWSRequest(method="POST", url=url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{op}"})
    SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "kms", REGION).add_auth(req)
    return dict(req.headers.items())


def _audited(server, ids: set[str], timeout: float = 10.0) -> dict[str, int]:
    store = Store(server.settings())
    try:
        reader = AuditReader(store)
        deadline = time.monotonic() + timeout
        while True:
            counts: dict[str, int] = {}
            for _, raw in reader.events():
                rid = json.loads(raw).get("requestID")
                if rid in ids:
                    counts[rid] = counts.get(rid, 0) + 1
            if set(counts) == ids or time.monotonic() > deadline:
                return counts
            time.sleep(0.2)
    finally:
        store.dispose()


def _fuzz(server, key: dict, seed: int) -> None:
    known_client = server.client(key)
    kid = known_client.create_key(Description="fuzz target")["KeyMetadata"]
    known_client.create_alias(AliasName="alias/fuzz", TargetKeyId=kid["KeyId"])
    fuzzer = Fuzzer(random.Random(seed), [kid["KeyId"], kid["Arn"], "alias/fuzz"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    ids: set[str] = set()
    failures = []
    try:
        for op in sorted(OPERATIONS):
            for _ in range(PER_OPERATION):
                body = fuzzer.body(op)
                started = time.monotonic()
                conn.request("POST", "/", body=body, headers=_signed(server.url, key, op, body))
                r = conn.getresponse()
                raw = r.read()
                took = time.monotonic() - started
                rid = r.getheader("x-amzn-RequestId")
                ids.add(rid)
                answer = json.loads(raw) if raw else {}
                if r.status >= 500 or took > 10 or rid is None:
                    failures.append((op, r.status, answer, round(took, 2), body[:200]))
                elif r.status != 200 and (set(answer) != {"__type", "message"}
                                          or answer["__type"] not in KNOWN_CODES):
                    failures.append((op, r.status, answer, body[:200]))
                if r.getheader("connection") == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    finally:
        conn.close()
    assert not failures, failures[:5]
    assert "internal error" not in server.log()
    # #15.5: every request, whatever its fate, is in the audit log exactly once.
    counts = _audited(server, ids)
    assert len(ids) == len(OPERATIONS) * PER_OPERATION
    assert {rid: counts.get(rid, 0) for rid in ids if counts.get(rid, 0) != 1} == {}


@pytest.mark.slow
def test_fuzzed_operations_on_sqlite(make_server):
    srv = make_server()
    _fuzz(srv, srv.create_access_key("fuzzer"), seed=SEED)


@pytest.mark.slow
def test_fuzzed_operations_on_postgresql(make_server, pg_url):
    srv = make_server(store_url=pg_url)
    try:
        _fuzz(srv, srv.create_access_key("fuzzer"), seed=SEED + 1)
    finally:
        srv.stop()  # before the schema is dropped

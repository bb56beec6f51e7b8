"""Two `kms serve` processes on one PostgreSQL store behave as one service."""
from __future__ import annotations

import os
import time

import botocore.exceptions

from kms_core.server.credentials import AccessKeys
from kms_core.store import Store


def _within(fn, seconds: float = 1.1, step: float = 0.05) -> float:
    """Poll ``fn`` until true; a call *started* ``seconds`` after now must be true.

    The engine refreshes its cache every 1 s (plus the few ms a store read
    takes), so a change made on one node is honoured by a request to another
    node that starts 1.1 s later, however slow the requests themselves are.
    Returns the seconds until ``fn`` was first true (for the failure message).
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        started = time.monotonic()
        if fn():
            return started - t0
        time.sleep(step)
    assert fn(), f"not honoured {seconds} s after the change"
    return seconds


def _code(call) -> str | None:
    try:
        call()
        return None
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def test_two_nodes_on_postgresql(pg_url, make_server):  # servers stop before the schema is dropped
    root = os.urandom(32)
    a = make_server(store_url=pg_url, root_key=root)  # creates the schema first
    b = make_server(store_url=pg_url, root_key=root, wait=False)
    key = a.create_access_key("ops")
    b.wait_healthy()
    ka, kb = a.client(key), b.client(key)

    # Created on A, usable on B and back.
    kid = ka.create_key(Description="shared")["KeyMetadata"]["KeyId"]
    ka.create_alias(AliasName="alias/shared", TargetKeyId=kid)
    blob = kb.encrypt(KeyId="alias/shared", Plaintext=b"both nodes")["CiphertextBlob"]
    assert ka.decrypt(CiphertextBlob=blob)["Plaintext"] == b"both nodes"
    assert kb.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "shared"

    # Disabled on A: B refuses within the engine's 1 s cache refresh (and serves again after enable).
    ka.disable_key(KeyId=kid)
    _within(lambda: _code(lambda: kb.encrypt(KeyId=kid, Plaintext=b"x")) == "DisabledException")
    ka.enable_key(KeyId=kid)
    _within(lambda: _code(lambda: kb.encrypt(KeyId=kid, Plaintext=b"x")) is None)

    # Rotated on A: B encrypts under the new material within 1 s; old blobs still decrypt on B.
    before = kb.generate_data_key(KeyId=kid, KeySpec="AES_256")["KeyMaterialId"]
    ka.rotate_key_on_demand(KeyId=kid)
    current = ka.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert current != before
    _within(lambda: kb.generate_data_key(KeyId=kid, KeySpec="AES_256")["KeyMaterialId"] == current)
    assert kb.decrypt(CiphertextBlob=blob)["Plaintext"] == b"both nodes"

    # An access key deleted in the store stops working on both nodes within 1 s.
    store = Store(a.settings())
    try:
        AccessKeys(store, "111122223333").delete(key["AccessKeyId"])
    finally:
        store.dispose()
    for client in (ka, kb):
        _within(lambda c=client: _code(c.list_keys) == "UnrecognizedClientException")

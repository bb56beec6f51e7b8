"""Through the wire, every request — accepted or refused before the engine — is audited once."""
from __future__ import annotations

import base64
import json
import os
import time

from kms_core.audit import AuditReader
from kms_core.store import Store

from .test_http import send, sign


def _events_for(server, request_ids: set[str], timeout: float = 5.0) -> dict[str, list[dict]]:
    store = Store(server.settings())
    try:
        reader = AuditReader(store)
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, list[dict]] = {}
            for _, raw in reader.events(limit=500):
                ev = json.loads(raw)
                if ev.get("requestID") in request_ids:
                    found.setdefault(ev["requestID"], []).append(ev)
            if set(found) == request_ids or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
    finally:
        store.dispose()


def test_accepted_and_refused_requests_are_each_recorded_once(server, access_key, kms_remote):
    marker = os.urandom(24)
    key_id = kms_remote.create_key(Description="audited")["KeyMetadata"]["KeyId"]
    ok = kms_remote.encrypt(KeyId=key_id, Plaintext=marker, EncryptionContext={"case": "audit"})
    ids = {"ok": ok["ResponseMetadata"]["RequestId"]}

    body = json.dumps({"KeyId": key_id, "Plaintext": base64.b64encode(marker).decode()}).encode()
    _, _, h = send(server, body, sign(server, access_key, body, "TrentService.Encrypt", secret="x" * 40))
    ids["bad-signature"] = h["x-amzn-requestid"]
    _, _, h = send(server, b'{"KeyId": ', sign(server, access_key, b'{"KeyId": ', "TrentService.Encrypt"))
    ids["bad-json"] = h["x-amzn-requestid"]
    _, _, h = send(server, b"{}", {"Content-Type": "application/x-amz-json-1.1",
                                   "X-Amz-Target": "TrentService.ListKeys"})
    ids["no-auth"] = h["x-amzn-requestid"]

    events = _events_for(server, set(ids.values()))
    assert {k: len(events.get(v, [])) for k, v in ids.items()} == dict.fromkeys(ids, 1)
    by = {k: events[v][0] for k, v in ids.items()}

    good = by["ok"]
    assert good["eventName"] == "Encrypt" and "errorCode" not in good
    assert good["userIdentity"]["arn"] == "arn:aws:iam::111122223333:user/alice"
    assert good["userIdentity"]["accessKeyId"] == access_key["AccessKeyId"]
    assert good["sourceIPAddress"] == "127.0.0.1"
    assert good["requestParameters"]["encryptionContext"] == {"case": "audit"}

    bad = by["bad-signature"]
    assert bad["eventName"] == "Encrypt" and bad["errorCode"] == "InvalidSignatureException"
    # The caller was not proven: no principal, only the access key id it claimed.
    assert bad["userIdentity"] == {"type": "Unknown", "accessKeyId": access_key["AccessKeyId"]}
    assert by["bad-json"]["errorCode"] == "SerializationException"
    assert by["no-auth"]["errorCode"] == "MissingAuthenticationTokenException"

    # The plaintext reached the log in no form.
    dump = json.dumps(list(by.values()))
    for form in (marker.hex(), base64.b64encode(marker).decode(), marker.decode("latin-1")):
        assert form not in dump

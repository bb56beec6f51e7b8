"""Plaintext, data keys and other secrets never reach the audit log nor the logs.

Each case scans the whole store (every table, via the database file and its
WAL) and the captured log output for the secret in raw, base64 and hex form.
"""
from __future__ import annotations

import base64
import logging
from datetime import UTC
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core.audit import AuditReader, build_event
from kms_core.errors import KMSError

from .conftest import raw_rows


def _forms(secret: bytes) -> list[bytes]:
    forms = [secret, base64.b64encode(secret), secret.hex().encode(), secret.hex().upper().encode(),
             base64.urlsafe_b64encode(secret)]
    try:  # JSON-escaped text form of a printable secret
        forms.append(secret.decode("ascii").encode("unicode_escape"))
    except UnicodeDecodeError:
        pass
    return forms


def _store_bytes(engine) -> bytes:
    path = Path(engine.store.url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def _assert_absent(secret: bytes, *haystacks: bytes):
    for form in _forms(secret):
        for h in haystacks:
            assert form not in h, "a secret reached the audit log or the log output"


# Printable secrets make "raw" containment meaningful in a JSON text; binary ones
# cover everything else.  A fixed marker in front keeps a match by chance with
# the store's own bytes (schema text, zero pages) impossible; the generated
# part still decides what the engine and the audit log handle.
MARK = b"\x02S3CR3T:"
secrets = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=8, max_size=200)
      .map(lambda t: b"S3CR3T:" + t.encode()),
    st.binary(min_size=8, max_size=512).map(lambda b: MARK + b))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(plaintext=secrets)
def test_no_plaintext_or_data_key_in_the_log(engine, audit, akms, caplog, plaintext):
    caplog.set_level(logging.DEBUG)
    key = akms.create_key()["KeyMetadata"]["KeyId"]
    other = akms.create_key()["KeyMetadata"]["KeyId"]
    secrets_seen = [plaintext]
    blob = akms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext={"purpose": "test"})["CiphertextBlob"]
    assert akms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "test"})["Plaintext"] == plaintext
    with pytest.raises(ClientError):  # wrong context: a failure that carried the ciphertext
        akms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
    re_blob = akms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"purpose": "test"},
                              DestinationKeyId=other)["CiphertextBlob"]
    dk = akms.generate_data_key(KeyId=key, KeySpec="AES_256")
    secrets_seen.append(dk["Plaintext"])
    secrets_seen.append(akms.generate_random(NumberOfBytes=32)["Plaintext"])
    akms.disable_key(KeyId=key)
    with pytest.raises(ClientError):  # a failed Encrypt still had the plaintext in its request
        akms.encrypt(KeyId=key, Plaintext=plaintext)
    akms.enable_key(KeyId=key)
    audit.flush()
    rows = raw_rows(audit)
    assert len(rows) >= 10
    log_text = caplog.text.encode()
    store = _store_bytes(engine)
    for s in secrets_seen:
        _assert_absent(s, store, log_text, "\n".join(rows).encode())
    # ciphertext blobs are not recorded either (CloudTrail omits them)
    for b in (blob, re_blob, dk["CiphertextBlob"]):
        _assert_absent(b, "\n".join(rows).encode())


@settings(max_examples=60, deadline=None)
@given(value=st.binary(min_size=16, max_size=64),
       member=st.sampled_from(["Plaintext", "CiphertextBlob", "PublicKey", "ImportToken",
                               "EncryptedKeyMaterial", "Message", "Signature", "Mac",
                               "GrantTokens", "SomeFutureBlob", "PrivateKeyPlaintext"]),
       nest=st.integers(0, 2))
def test_secret_members_are_dropped_at_any_depth(value, member, nest):
    from datetime import datetime
    v = [base64.b64encode(value).decode()] if member == "GrantTokens" else value
    params = {"KeyId": "alias/x", member: v}
    for _ in range(nest):
        params = {"Outer": params, "List": [params]}
    result = {"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
              member: v}
    for op in ("Encrypt", "CreateKey", "SomeNewOperation"):
        ev = build_event(None, op, params, result, None, datetime.now(UTC),
                         account_id="111122223333", region="us-east-1")
        import json
        text = json.dumps(ev).encode()
        _assert_absent(value, text)


def test_writer_failure_logs_no_event_content(engine, audit, akms, caplog, monkeypatch):
    """A failing database append is logged by error type only, and retried."""
    caplog.set_level(logging.DEBUG, logger="kms_core.audit")
    real = type(audit)._append
    calls = {"n": 0}

    def flaky(self, events):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise KMSError("KMSInternalException", "database down: " + events[0][0])
        return real(self, events)

    monkeypatch.setattr(type(audit), "_append", flaky)
    secret = b"TOP-SECRET-PLAINTEXT-0123456789"
    key = akms.create_key()["KeyMetadata"]["KeyId"]
    akms.encrypt(KeyId=key, Plaintext=secret, EncryptionContext={"ctx": "visible-context-value"})
    assert audit.flush(30)
    assert calls["n"] >= 3 and audit.failures == 2
    assert "KMSError" in caplog.text
    assert "visible-context-value" not in caplog.text and "database down" not in caplog.text
    _assert_absent(secret, caplog.text.encode())
    assert [r.count("Encrypt") for r in raw_rows(audit)][-1] == 1
    assert AuditReader(engine.store).verify().ok

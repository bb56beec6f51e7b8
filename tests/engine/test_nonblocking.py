"""Engine.call_nonblocking answers from memory or raises WouldBlock having done nothing."""
import time

import pytest

from kms_core.store import WouldBlock


def test_cache_hits_answer_and_misses_would_block(make_engine):
    engine = make_engine(cache_ttl=30)
    key = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    calls = []
    engine.auditor = lambda ctx, op, p, result, err: calls.append((op, err))
    blob = engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})["CiphertextBlob"]  # warms the cache
    calls.clear()
    assert engine.call_nonblocking("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == b"x"
    assert calls == [("Decrypt", None)]
    calls.clear()
    with pytest.raises(WouldBlock):  # a write needs the database
        engine.call_nonblocking("DisableKey", {"KeyId": key})
    with pytest.raises(WouldBlock):  # an uncached alias needs a read
        engine.call_nonblocking("Encrypt", {"KeyId": "alias/aws/s3", "Plaintext": b"x"})
    assert calls == []  # nothing audited for the attempts that would block
    assert engine.call("DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyState"] == "Enabled"


def test_generation_check_due_would_block(make_engine):
    engine = make_engine(cache_ttl=0.01)
    key = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})
    time.sleep(0.02)
    with pytest.raises(WouldBlock):
        engine.call_nonblocking("Encrypt", {"KeyId": key, "Plaintext": b"x"})
    engine.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})  # the blocking path still works

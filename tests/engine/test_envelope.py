"""kms_core.envelope: the data-key cache's bounds and single-flight creation."""
import threading
import time

import pytest

from kms_core.envelope import CachedKey, DataKeyCache


def key(n=0):
    return CachedKey(bytes([n]) * 32, b"wrapped", "key")


def test_bounds_uses_bytes_age_entries(monkeypatch):
    c = DataKeyCache(max_age=10, max_uses=3, max_bytes=100, max_entries=2)
    made = []

    def factory():
        made.append(1)
        return key(len(made))
    a = c.get_or_create("a", factory, nbytes=10)
    assert c.get_or_create("a", factory, nbytes=10) is a
    assert c.get_or_create("a", factory, nbytes=10) is a
    assert c.get_or_create("a", factory, nbytes=10) is not a  # 4th use: a new key
    b = c.get_or_create("b", factory, nbytes=95)
    assert c.get_or_create("b", factory, nbytes=10) is not b  # over max_bytes
    c.get_or_create("c", factory)
    assert len(c) == 2  # LRU bound
    now = time.monotonic()
    monkeypatch.setattr("kms_core.envelope.time.monotonic", lambda: now + 11)
    assert c.get("c") is None  # past max_age
    with pytest.raises(ValueError):
        DataKeyCache(max_age=0)


def test_single_flight_and_errors():
    c = DataKeyCache()
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)
        return key()
    threads = [threading.Thread(target=c.get_or_create, args=("k", slow)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and c.get("k").uses == 12

    def failing():
        raise RuntimeError("KMS unavailable")
    with pytest.raises(RuntimeError):
        c.get_or_create("x", failing)
    assert c.get_or_create("x", lambda: key(7)).plaintext == bytes([7]) * 32


def test_repr_hides_key_bytes():
    k = key(9)
    assert "\\x09" not in repr(k) and "09" * 4 not in repr(k)

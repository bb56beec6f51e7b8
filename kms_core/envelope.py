"""Envelope-encryption helpers shared by the engine and the integrations.

Safe recipes only: canonical encryption-context encoding (used as AEAD
associated data) and a bounded cache for data keys, so that callers make few
KMS calls.  Integrations import this module and ``kms_core.client``; nothing
else of the engine.
"""
from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["MAX_CONTEXT_BYTES", "CachedKey", "DataKeyCache", "encode_context"]

# The encoding's 16-bit lengths: the engine refuses larger contexts before
# they get here (ValidationException); this is for direct callers.
MAX_CONTEXT_BYTES = 65535


def _too_large() -> ValueError:
    return ValueError(f"an encryption context may have at most {MAX_CONTEXT_BYTES} pairs, "
                      f"each key and value at most {MAX_CONTEXT_BYTES} bytes in UTF-8")


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """Canonical, unambiguous bytes of an encryption context.

    Pairs sorted by the UTF-8 bytes of the key; ``u16 count`` then, per pair,
    ``u16 len(key) key u16 len(value) value``.  Order-independent (as AWS's
    matching is) and injective, unlike the concatenation moto uses.  Raises
    ValueError for a context the format cannot hold (see MAX_CONTEXT_BYTES)
    or one that is not valid Unicode.
    """
    if not context:
        return b"\x00\x00"
    try:
        items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    except UnicodeEncodeError:
        raise ValueError("an encryption context key or value is not valid Unicode "
                         "(a lone UTF-16 surrogate)") from None
    if len(items) > MAX_CONTEXT_BYTES:
        raise _too_large()
    out = [struct.pack(">H", len(items))]
    for k, v in items:
        if len(k) > MAX_CONTEXT_BYTES or len(v) > MAX_CONTEXT_BYTES:
            raise _too_large()
        out.append(struct.pack(">H", len(k)))
        out.append(k)
        out.append(struct.pack(">H", len(v)))
        out.append(v)
    return b"".join(out)


class CachedKey:
    """A plaintext data key with its wrapped form and usage counters.

    ``repr`` never shows key bytes.
    """

    __slots__ = ("bytes", "created", "extra", "key_id", "plaintext", "uses", "wrapped")

    def __init__(self, plaintext: bytes, wrapped: bytes, key_id: str, extra: Any = None):
        self.plaintext = plaintext
        self.wrapped = wrapped
        self.key_id = key_id
        self.created = time.monotonic()
        self.uses = 0
        self.bytes = 0
        self.extra = extra

    def __repr__(self) -> str:
        return f"<CachedKey key_id={self.key_id!r} uses={self.uses}>"


class DataKeyCache:
    """Thread-safe LRU of data keys bounded by age, uses, bytes and entries.

    ``max_age`` seconds, ``max_uses`` messages (files, values) per key,
    ``max_bytes`` protected per key, ``max_entries`` keys held.  An entry past
    any bound is dropped and a fresh key is made by the caller's factory.
    """

    def __init__(self, *, max_age: float = 300.0, max_uses: int = 2**32,
                 max_bytes: int = 2**62, max_entries: int = 1000):
        if max_age <= 0 or max_uses < 1 or max_bytes < 1 or max_entries < 1:
            raise ValueError("cache bounds must be positive")
        self.max_age = max_age
        self.max_uses = max_uses
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, CachedKey] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, entry: CachedKey, nbytes: int) -> bool:
        return (time.monotonic() - entry.created < self.max_age
                and entry.uses + 1 <= self.max_uses
                and entry.bytes + nbytes <= self.max_bytes)

    def get_or_create(self, cache_key: Hashable, factory: Callable[[], CachedKey],
                      nbytes: int = 0) -> CachedKey:
        """Return a usable entry, counting one use of ``nbytes``.

        Only one caller runs ``factory`` (a KMS call) for a given key at a time;
        concurrent callers wait for its result instead of each making a key.
        """
        while True:
            with self._lock:
                entry = self._entries.get(cache_key)
                if entry is not None and self._fresh(entry, nbytes):
                    self._entries.move_to_end(cache_key)
                    entry.uses += 1
                    entry.bytes += nbytes
                    return entry
                if entry is not None:
                    del self._entries[cache_key]
                pending = self._pending.get(cache_key)
                if pending is None:
                    pending = self._pending[cache_key] = threading.Event()
                    break
            pending.wait()  # another thread is making this key; then look again
        try:
            new = factory()  # outside the lock: may call KMS
        finally:
            with self._lock:
                del self._pending[cache_key]
            pending.set()
        with self._lock:
            new.uses += 1
            new.bytes += nbytes
            self._entries[cache_key] = new
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return new

    def add_bytes(self, entry: CachedKey, nbytes: int) -> None:
        """Count bytes protected after the fact (a streamed file's size is known at close)."""
        with self._lock:
            entry.bytes += nbytes

    def get(self, cache_key: Hashable) -> CachedKey | None:
        """Look up without counting a use (for decrypt-side caches)."""
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is None:
                return None
            if time.monotonic() - entry.created >= self.max_age:
                del self._entries[cache_key]
                return None
            self._entries.move_to_end(cache_key)
            return entry

    def put(self, cache_key: Hashable, entry: CachedKey) -> None:
        with self._lock:
            self._entries[cache_key] = entry
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

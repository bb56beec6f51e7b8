"""Retention: export events (JSON lines, or CloudTrail's ``{"Records": [...]}``
file shape) and prune the oldest behind an anchor (docs/audit-log.md, "Retention").

Pruning replaces the pruned prefix by one row, ``kms_audit_pruned``, carrying the
chain state at the last pruned record (its number, MAC and time) under an HMAC
with the chain key; ``verify`` checks that row and resumes the chain from it.
It prunes in chunks, each one transaction that deletes records and moves the
anchor together, so a prune killed at any point leaves a verifiable log and the
same command resumes it.  Records are verified before they are pruned: a
tampered record is never hidden behind an anchor.
"""
from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Select, delete, func, insert, select, update

from ..errors import StoreError
from ..store import Store
from .chain import (
    _KEY_AAD,
    FORMAT_VERSION,
    audit_events,
    audit_head,
    audit_pruned,
    event_mac,
    genesis_mac,
    pruned_mac,
    same,
)

FORMATS = ("jsonl", "cloudtrail")


# ------------------------------------------------------------------ export
def iter_events(store: Store, *, before: float | None = None, after: float | None = None,
                up_to_seq: int | None = None, page: int = 5000) -> Iterator[tuple[int, str]]:
    """``(seq, event JSON)`` oldest first, read in pages (the log can be large)."""
    t = audit_events.c
    last = 0
    while True:
        q = _within(select(t.seq, t.event).where(t.seq > last), before, after, up_to_seq)
        with store.reading() as conn:
            rows = conn.execute(q.order_by(t.seq).limit(page)).all()
        if not rows:
            return
        for r in rows:
            yield r.seq, r.event
        last = rows[-1].seq


def count_events(store: Store, *, before: float | None = None, after: float | None = None,
                 up_to_seq: int | None = None) -> int:
    q = _within(select(func.count()).select_from(audit_events), before, after, up_to_seq)
    with store.reading() as conn:
        return int(conn.execute(q).scalar() or 0)


def _within(q: Select, before: float | None, after: float | None, up_to_seq: int | None) -> Select:
    """``q`` limited to events before/at-or-after a time and up to a sequence number."""
    t = audit_events.c
    if before is not None:
        q = q.where(t.event_time < before)
    if after is not None:
        q = q.where(t.event_time >= after)
    if up_to_seq is not None:
        q = q.where(t.seq <= up_to_seq)
    return q


def open_output(target: str) -> AbstractContextManager[Any]:
    """A binary writer for ``target``: ``-`` (stdout), a local path (created 0600:
    the trail names principals and keys), or an fsspec URL (``s3://…``) when
    fsspec is installed."""
    if target == "-":
        return _Unclosed(getattr(sys.stdout, "buffer", None) or _TextOut(sys.stdout))
    if "://" in target and not target.startswith("file://"):
        try:
            import fsspec  # noqa: PLC0415 - optional dependency, only for URLs
        except ImportError:
            raise StoreError(f"exporting to {target.split('://', 1)[0]}:// needs fsspec "
                             "(pip install fsspec and the filesystem's package)") from None
        return fsspec.open(target, "wb")
    path = target.removeprefix("file://")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


class _TextOut(io.RawIOBase):
    """Bytes to a text stream that has no binary buffer (a replaced sys.stdout)."""

    def __init__(self, text: IO[str]):
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.text.write(bytes(b).decode())
        return len(b)


class _Unclosed(AbstractContextManager):
    def __init__(self, f: IO[bytes] | io.RawIOBase):
        self.f = f

    def __enter__(self) -> Any:
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.flush()


def write_events(out: IO[bytes], events: Iterator[tuple[int, str]], fmt: str,
                 progress: Callable[[int], Any] | None = None) -> int:
    """Write ``events`` in ``fmt``; returns how many.  The stored JSON text is
    written as it is, so an exported event is byte for byte the MAC'd one."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    n = 0
    if fmt == "cloudtrail":
        out.write(b'{"Records":[')
    for _, body in events:
        if fmt == "cloudtrail":
            out.write(b"," if n else b"")
            out.write(body.encode())
        else:
            out.write(body.encode() + b"\n")
        n += 1
        if progress is not None:
            progress(1)
    if fmt == "cloudtrail":
        out.write(b"]}\n")
    return n


# ------------------------------------------------------------------ prune
@dataclass
class PruneResult:
    pruned_to: int          # records 1..pruned_to are now behind the anchor
    removed: int            # records this run removed
    target: int             # the record the run was asked to prune up to


class TamperedLog(StoreError):
    """The records to prune fail verification: nothing past them is pruned."""


def prune_target(store: Store, before: float) -> int:
    """The last record to prune: every record before the first one at or after
    ``before`` (so a late-stamped record is never skipped), and never past the head."""
    t = audit_events.c
    with store.reading() as conn:
        head = conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1)).scalar() or 0
        first_kept = conn.execute(select(func.min(t.seq)).where(t.event_time >= before)).scalar()
    return min(head, first_kept - 1) if first_kept is not None else head


def prune(store: Store, before: float, *, chunk: int = 5000,
          progress: Callable[[int], Any] | None = None) -> PruneResult:
    """Prune every record older than ``before`` (epoch seconds) behind the anchor."""
    with store.reading() as conn:
        head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        anchor = conn.execute(select(audit_pruned).where(audit_pruned.c.id == 1)).first()
    if head is None:
        return PruneResult(0, 0, 0)
    try:
        key = store.unseal(head.sealed_key, _KEY_AAD)
    except StoreError:
        raise StoreError("the audit log's MAC key cannot be unsealed: nothing was pruned") from None
    done, prev = 0, genesis_mac(key)
    if anchor is not None:
        if not same(anchor.anchor, pruned_mac(key, anchor.seq, bytes(anchor.mac), anchor.event_time)):
            raise TamperedLog("the audit log's pruning anchor was altered: nothing was pruned "
                              "(run `kms audit verify`)")
        done, prev = anchor.seq, bytes(anchor.mac)
    target = prune_target(store, before)
    removed = 0
    while done < target:
        upto = min(done + chunk, target)
        prev, when = _verified_chunk(store, key, done, upto, prev)
        _commit_chunk(store, key, anchor_exists=done > 0 or anchor is not None,
                      upto=upto, mac=prev, when=when)
        removed += upto - done
        if progress is not None:
            progress(upto - done)
        done = upto
    return PruneResult(done, removed, target)


def _verified_chunk(store: Store, key: bytes, done: int, upto: int,
                    prev: bytes) -> tuple[bytes, float]:
    """Check records done+1..upto chain from ``prev``; their last MAC and time."""
    t = audit_events.c
    with store.reading() as conn:
        rows = conn.execute(select(t.seq, t.event, t.mac, t.event_time)
                            .where(t.seq > done, t.seq <= upto).order_by(t.seq)).all()
    expected, when = done + 1, 0.0
    for r in rows:
        if r.seq != expected:
            raise TamperedLog(f"record {expected} is missing: nothing from it on was pruned "
                              "(run `kms audit verify`)")
        if not same(bytes(r.mac), event_mac(key, r.seq, prev, r.event)):
            raise TamperedLog(f"record {r.seq} fails its MAC: nothing from it on was pruned "
                              "(run `kms audit verify`)")
        prev, when, expected = bytes(r.mac), r.event_time, r.seq + 1
    if expected != upto + 1:
        raise TamperedLog(f"record {expected} is missing: nothing from it on was pruned "
                          "(run `kms audit verify`)")
    return prev, when


def _commit_chunk(store: Store, key: bytes, *, anchor_exists: bool, upto: int, mac: bytes,
                  when: float) -> None:
    """Delete records up to ``upto`` and move the anchor there, in one transaction."""
    values = {"format": FORMAT_VERSION, "seq": upto, "mac": mac, "event_time": when,
              "pruned_at": time.time(), "anchor": pruned_mac(key, upto, mac, when)}
    with store.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, the write lock
        if anchor_exists:
            row = conn.execute(select(audit_pruned.c.seq).where(audit_pruned.c.id == 1)
                               .with_for_update()).first()
            if row is not None and row.seq >= upto:  # another prune got here first
                return
            conn.execute(update(audit_pruned).where(audit_pruned.c.id == 1).values(**values))
        else:
            conn.execute(insert(audit_pruned).values(id=1, **values))
        conn.execute(delete(audit_events).where(audit_events.c.seq <= upto))

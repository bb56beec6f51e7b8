"""GetKeyLastUsage's one adapter to the audit trail.

Last usage is read from the audit log (every call is one CloudTrail-shaped event there),
so the request path writes nothing extra: only GetKeyLastUsage reads.  The two queries
below are the only code that knows the audit log's table; they use its index columns
(``event_name``, ``key_ids``, ``error_code``, ``event_time``) and read one event.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select

# The operations AWS tracks (KeyLastUsageTrackingOperation in the service model).
TRACKED_OPERATIONS = ("Decrypt", "DeriveSharedSecret", "Encrypt", "GenerateDataKey",
                      "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
                      "GenerateDataKeyWithoutPlaintext", "GenerateMac", "ReEncrypt", "Sign",
                      "Verify", "VerifyMac")


@dataclass(frozen=True)
class LastUsage:
    operation: str
    timestamp: float
    event_id: str
    request_id: str | None


def _events_table(store: Any) -> Any:
    # Cold start: the audit module is loaded only when GetKeyLastUsage is called.
    from kms_core import audit  # noqa: PLC0415 - cold start: only GetKeyLastUsage reads the log

    audit.AuditReader(store)  # makes sure the log's tables exist in this store
    return audit.audit_events


def flush(auditor: Any) -> None:
    """Let events still queued in this process's audit writer reach the log, so that a
    call made just before GetKeyLastUsage is seen (the writer batches in the background)."""
    wait = getattr(auditor, "flush", None)
    if callable(wait):
        wait(5.0)


def read(store: Any, key_id: str, region: str) -> tuple[float | None, LastUsage | None]:
    """(when the audit log began recording, or None if it is empty; the newest successful
    tracked operation on ``key_id`` in ``region``, or None).  A multi-Region key has the same
    id in every Region: its events carry the word ``<key id>/<Region>`` in ``key_ids``
    (``audit.events.key_tokens``), so one Region's usage is found as cheaply as any key's."""
    t = _events_table(store).c
    word = f"{key_id}/{region}" if key_id.startswith("mrk-") else key_id
    newest = (select(t.event_time, t.event)
              .where(and_(t.key_ids.contains(f" {word} ", autoescape=True),
                          t.event_name.in_(TRACKED_OPERATIONS), t.error_code.is_(None)))
              .order_by(t.seq.desc()).limit(1))
    with store.reading() as conn:
        began = conn.execute(select(func.min(t.event_time))).scalar()
        row = conn.execute(newest).first()
    if row is None:
        return began, None
    ev = json.loads(row.event)
    return began, LastUsage(ev["eventName"], float(row.event_time), ev["eventID"], ev.get("requestID"))

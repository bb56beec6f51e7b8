"""The console's one adapter to the rest of kms_core.

Everything the console needs besides ``Engine.call`` goes through here: the
store (for its own sessions table), the access keys it signs people in with,
and the audit log's reader.  Those modules are being restructured; when they
move, this file is the only one to fix.
"""
from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kms_core.audit import AuditReader
from kms_core.engine import RequestContext
from kms_core.server.credentials import AccessKeys

__all__ = ["Backend", "RequestContext", "Verification"]


@dataclass
class Verification:
    ok: bool
    checked_at: float
    problems: list[str] = field(default_factory=list)
    last_seq: int = 0


class Backend:
    """What the console reaches besides ``engine.call``, for one engine."""

    VERIFY_TTL = 15.0  # seconds a chain verification result is shown before re-checking

    def __init__(self, engine: Any):
        self.engine = engine
        self.store = engine.store
        self.account_id: str = engine.settings.account_id
        self.region: str = engine.settings.region
        self._keys: AccessKeys | None = None
        self._reader: AuditReader | None = None
        self._verified: Verification | None = None
        self._verify_lock = threading.Lock()

    # -- engine ----------------------------------------------------------------------
    def call(self, operation: str, params: dict, ctx: RequestContext) -> dict:
        return self.engine.call(operation, params, ctx)

    # -- access keys (sign-in) -------------------------------------------------------
    @property
    def access_keys(self) -> AccessKeys:
        if self._keys is None:
            self._keys = AccessKeys(self.store, self.account_id)
        return self._keys

    def check_access_key(self, access_key_id: str, secret: str) -> str | None:
        """The principal ARN of an active access key whose secret matches, else None."""
        cred = self.access_keys.resolve(access_key_id)
        if cred is None:
            # Spend about as long as a real comparison, so timing does not say which ids exist.
            hmac.compare_digest(secret.encode(), b"x" * 40)
            return None
        good = hmac.compare_digest(secret.encode("utf-8", "replace"), cred.secret.encode())
        return cred.principal if good and cred.status == "Active" else None

    def user_arns(self) -> list[str]:
        """IAM user ARNs that hold access keys: the people one can choose as administrators/users."""
        names = sorted({m["UserName"] for m in self.access_keys.list()["AccessKeyMetadata"]})
        return [f"arn:aws:iam::{self.account_id}:user/{n}" for n in names]

    # -- audit -----------------------------------------------------------------------
    @property
    def reader(self) -> AuditReader:
        if self._reader is None:
            self._reader = AuditReader(self.store)
        return self._reader

    def events(self, *, limit: int, key: str | None = None, principal: str | None = None,
               operation: str | None = None, start: float | None = None, end: float | None = None,
               errors_only: bool = False) -> list[dict]:
        """Newest first, parsed."""
        flush = getattr(getattr(self.engine, "auditor", None), "flush", None)
        if flush is not None:
            flush(timeout=2.0)  # the log commits in the background: show the latest actions too
        rows = self.reader.events(limit=limit, key=key, principal=principal, operation=operation,
                                  start=start, end=end, errors_only=errors_only)
        out = []
        for seq, text in reversed(rows):
            ev = json.loads(text)
            ev["_seq"] = seq
            out.append(ev)
        return out

    @property
    def auditing(self) -> bool:
        """Whether this server records requests (``kms serve --no-audit`` turns it off)."""
        return getattr(self.engine, "auditor", None) is not None

    def verification(self) -> Verification:
        """The chain's verification status, re-checked at most every VERIFY_TTL seconds."""
        now = time.monotonic()
        v = self._verified
        if v is not None and now - v.checked_at < self.VERIFY_TTL:
            return v
        with self._verify_lock:
            v = self._verified
            if v is not None and time.monotonic() - v.checked_at < self.VERIFY_TTL:
                return v
            rep = self.reader.verify(max_problems=20)
            v = Verification(ok=rep.ok, checked_at=time.monotonic(),
                             problems=[str(p) for p in rep.problems],
                             last_seq=rep.head_seq or 0)
            self._verified = v
            return v

"""Server-side console sessions, kept in the key store so every worker process sees them.

The cookie carries a random 256-bit token; the table keeps only its SHA-256, so
whoever can read the database cannot take over a session.  A session ends when
its owner signs out, after ``IDLE`` seconds without a request, or ``ABSOLUTE``
seconds after sign-in, whichever comes first.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, insert, select, update

from kms_core.store import create_tables

IDLE = 30 * 60.0
ABSOLUTE = 8 * 3600.0
_TOUCH_EVERY = 60.0  # write last_seen at most this often

metadata = MetaData()
console_sessions = Table(
    "kms_console_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("principal", String(2048), nullable=False),
    Column("access_key_id", String(128), nullable=True),
    Column("csrf", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("flash", Text, nullable=True),
)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass
class Session:
    token_hash: str
    principal: str
    access_key_id: str | None
    csrf: str
    created: float
    last_seen: float

    def __repr__(self) -> str:  # never the CSRF token
        return f"<Session {self.principal}>"


class Sessions:
    def __init__(self, store, clock=time.time):
        self.store = store
        self.clock = clock
        create_tables(store.engine, [console_sessions])  # safe when workers start at once

    def create(self, principal: str, access_key_id: str | None) -> str:
        """A new session; returns the cookie token (a fresh one every sign-in: no fixation)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.engine.begin() as conn:
            # Sweep expired sessions now and then, not on every request.
            conn.execute(delete(console_sessions).where(
                (console_sessions.c.last_seen < now - IDLE) | (console_sessions.c.created < now - ABSOLUTE)))
            conn.execute(insert(console_sessions).values(
                token_hash=_hash(token), principal=principal, access_key_id=access_key_id,
                csrf=secrets.token_urlsafe(32), created=now, last_seen=now))
        return token

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        h = _hash(token)
        with self.store.reading() as conn:
            row = conn.execute(select(console_sessions).where(console_sessions.c.token_hash == h)).first()
        if row is None:
            return None
        now = self.clock()
        if now - row.last_seen > IDLE or now - row.created > ABSOLUTE:
            self.delete(token)
            return None
        if now - row.last_seen > _TOUCH_EVERY:
            with self.store.engine.begin() as conn:
                conn.execute(update(console_sessions).where(console_sessions.c.token_hash == h)
                             .values(last_seen=now))
        return Session(h, row.principal, row.access_key_id, row.csrf, row.created, now)

    def delete(self, token: str | None) -> None:
        if not token:
            return
        with self.store.engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == _hash(token)))

    # -- one-shot messages shown on the next page ("flash") ----------------------------
    def flash(self, session: Session, kind: str, text: str, code: str | None = None) -> None:
        msg = json.dumps({"kind": kind, "text": text, "code": code})
        with self.store.engine.begin() as conn:
            conn.execute(update(console_sessions).where(console_sessions.c.token_hash == session.token_hash)
                         .values(flash=msg))

    def pop_flash(self, session: Session) -> dict | None:
        with self.store.reading() as conn:
            row = conn.execute(select(console_sessions.c.flash)
                               .where(console_sessions.c.token_hash == session.token_hash)).first()
        if row is None or row.flash is None:
            return None
        with self.store.engine.begin() as conn:
            conn.execute(update(console_sessions).where(console_sessions.c.token_hash == session.token_hash)
                         .values(flash=None))
        return json.loads(row.flash)

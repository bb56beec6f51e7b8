"""Access keys for SigV4: IAM-shaped users' long-term keys, kept in the key store.

The table lives on the store's ``metadata``; the secret is stored sealed with
the store's root key (AAD binds it to its access key id, so a sealed secret
cannot be moved to another row), never in clear.  The server resolves access
keys through :class:`CredentialCache`, which keeps a resolved key for
``ttl`` seconds so that a deletion on any node takes effect within that time.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import Column, DateTime, LargeBinary, String, Table, delete, insert, select

from kms_core.errors import KMSError
from kms_core.store import metadata

access_keys = Table(
    "kms_access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("account_id", String(12), nullable=False),
    Column("status", String(16), nullable=False),
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("create_date", DateTime(timezone=True), nullable=False),
)

# Our addition (docs/policies.md): an access key made for a service (`--service s3`) signs
# requests that come through that service (kms:ViaService), which AWS-managed keys require.
# A table of its own, so stores made before it need no migration; the service is also bound
# into the sealed secret's associated data, so a row added here cannot promote a plain key.
access_key_services = Table(
    "kms_access_key_services",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("service", String(64), nullable=False),
)

_WITH_SERVICE = access_keys.outerjoin(
    access_key_services, access_keys.c.access_key_id == access_key_services.c.access_key_id)

# IAM's UserName rules: 1-64 of [\w+=,.@-].
_USER_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
# IAM access key ids: "AKIA" + 16 of A-Z2-7 (base32 alphabet), 20 chars.
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _aad(access_key_id: str, service: str | None = None) -> bytes:
    return f"access-key|{access_key_id}".encode() + (f"|service={service}".encode() if service else b"")


def check_service(service: str) -> str:
    """A service that owns AWS-managed keys (``alias/aws/<service>``)."""
    from kms_core.engine.records import MANAGED_SERVICES  # noqa: PLC0415 - kms create-access-key stays light

    if service not in MANAGED_SERVICES:
        raise KMSError("ValidationException",
                       f"Unknown service {service!r}: one of {', '.join(sorted(MANAGED_SERVICES))}")
    return service


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    user_name: str
    account_id: str
    status: str
    secret: str = field(repr=False)
    service: str | None = None   # requests signed with it come through this service

    def via_service(self, region: str) -> str | None:
        """kms:ViaService for a request signed with this key in ``region``."""
        return f"{self.service}.{region}.amazonaws.com" if self.service else None

    @property
    def principal(self) -> str:
        return f"arn:aws:iam::{self.account_id}:user/{self.user_name}"


def new_access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_B32) for _ in range(16))


def new_secret() -> str:
    # 30 random bytes -> 40 base64 characters, IAM's secret length.
    return base64.b64encode(secrets.token_bytes(30)).decode("ascii")


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name):
        raise KMSError(
            "ValidationException",
            "1 validation error detected: Value at 'userName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length 1-64",
        )
    return name


def _iso(d: dt.datetime) -> str:
    if d.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
        d = d.replace(tzinfo=dt.UTC)
    return d.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessKeys:
    """Create, list, delete and resolve access keys in a store."""

    def __init__(self, store, account_id: str):
        self.store = store
        self.account_id = account_id
        store.ensure_tables(access_keys, access_key_services)

    def create(self, user_name: str, service: str | None = None) -> dict:
        """Create a key (for ``service``, if given); returns IAM's CreateAccessKey response
        shape (with the secret), plus ``Service`` for a service key."""
        check_user_name(user_name)
        if service is not None:
            check_service(service)
        akid, secret = new_access_key_id(), new_secret()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        sealed = self.store.seal(secret.encode("ascii"), _aad(akid, service))
        with self.store.transaction() as conn:
            conn.execute(
                insert(access_keys).values(
                    access_key_id=akid,
                    user_name=user_name,
                    account_id=self.account_id,
                    status="Active",
                    sealed_secret=sealed,
                    create_date=now,
                )
            )
            if service is not None:
                conn.execute(insert(access_key_services).values(access_key_id=akid, service=service))
        key = {"UserName": user_name, "AccessKeyId": akid, "Status": "Active",
               "SecretAccessKey": secret, "CreateDate": _iso(now)}
        if service is not None:
            key["Service"] = service
        return {"AccessKey": key}

    def list(self, user_name: str | None = None) -> dict:
        """IAM's ListAccessKeys shape (never the secrets)."""
        q = (select(access_keys.c.user_name, access_keys.c.access_key_id, access_keys.c.status,
                    access_keys.c.create_date, access_key_services.c.service)
             .select_from(_WITH_SERVICE)
             .order_by(access_keys.c.user_name, access_keys.c.create_date))
        if user_name is not None:
            q = q.where(access_keys.c.user_name == user_name)
        with self.store.reading() as conn:
            rows = conn.execute(q).all()
        listed = []
        for r in rows:
            item = {"UserName": r.user_name, "AccessKeyId": r.access_key_id, "Status": r.status,
                    "CreateDate": _iso(r.create_date)}
            if r.service:
                item["Service"] = r.service
            listed.append(item)
        return {"AccessKeyMetadata": listed, "IsTruncated": False}

    def delete(self, access_key_id: str, user_name: str | None = None) -> None:
        q = delete(access_keys).where(access_keys.c.access_key_id == access_key_id)
        if user_name is not None:
            q = q.where(access_keys.c.user_name == user_name)
        with self.store.transaction() as conn:  # tells every process before returning
            n = conn.execute(q).rowcount
            if n:
                conn.execute(delete(access_key_services)
                             .where(access_key_services.c.access_key_id == access_key_id))
        if n == 0:
            # IAM's error for an unknown key.
            raise KMSError("NoSuchEntity", f"The Access Key with id {access_key_id} cannot be found.")

    def resolve(self, access_key_id: str) -> Credential | None:
        # A read-only connection: on SQLite a plain connect() would BEGIN
        # IMMEDIATE and queue behind the audit log's writes.
        with self.store.reading() as conn:
            row = conn.execute(select(access_keys, access_key_services.c.service)
                               .select_from(_WITH_SERVICE)
                               .where(access_keys.c.access_key_id == access_key_id)).first()
        if row is None:
            return None
        secret = self.store.unseal(row.sealed_secret, _aad(row.access_key_id, row.service)).decode("ascii")
        return Credential(row.access_key_id, row.user_name, row.account_id, row.status, secret,
                          row.service)


class CredentialCache:
    """Resolved access keys (and misses) for ``ttl`` seconds, bounded in size.

    ``peek``/``lookup`` never touch the database, so the server can call them
    on the event loop and run ``load`` in a thread only on a miss.  ``lookup``
    also asks for one early reload once an entry is past half its ``ttl``
    (refresh-ahead): under steady traffic entries are reloaded in the
    background before they expire, so requests never wait for the store, and
    never several at once, while a deleted key still stops working within
    ``ttl``.
    """

    _MISS = object()

    def __init__(self, keys: AccessKeys, ttl: float = 1.0, max_entries: int = 10000,
                 clock=time.monotonic):
        self.keys = keys
        self.ttl = ttl
        self.max = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._reloading: set[str] = set()
        # A write to the store on this host (kms delete-access-key, another worker) empties the
        # cache before that call returns (kms_core/changes.py); ``ttl`` bounds the rest.
        self._changes = keys.store.changes
        self._seen = self._changes.value()

    def __repr__(self) -> str:
        return f"CredentialCache(entries={len(self._entries)}, ttl={self.ttl})"

    def peek(self, access_key_id: str):
        """``(True, credential-or-None)`` when cached and fresh, else ``(False, None)``."""
        hit, value, _ = self.lookup(access_key_id, refresh=False)
        return hit, value

    def lookup(self, access_key_id: str, refresh: bool = True):
        """``(hit, credential-or-None, reload)`` as ``peek``; ``reload`` is true for one
        caller once a fresh entry is past half its ttl: that caller should run
        ``load`` in the background."""
        now = self.clock()
        with self._lock:
            seen = self._changes.value()
            if seen != self._seen:
                self._entries.clear()
                self._seen = seen
            hit = self._entries.get(access_key_id)
            if hit is None or hit[0] <= now:
                return False, None, False
            reload = (refresh and hit[0] - now < self.ttl / 2
                      and access_key_id not in self._reloading)
            if reload:
                self._reloading.add(access_key_id)
            value = hit[1]
        return True, (None if value is self._MISS else value), reload

    def load(self, access_key_id: str) -> Credential | None:
        before = self._changes.value()
        try:
            cred = self.keys.resolve(access_key_id)
        finally:
            with self._lock:
                self._reloading.discard(access_key_id)
        with self._lock:
            if self._changes.value() != before:
                return cred  # the store changed while we read: don't keep what may be stale
            if self._seen != before:  # what we hold predates a change: start afresh
                self._entries.clear()
                self._seen = before
            self._entries[access_key_id] = (self.clock() + self.ttl, self._MISS if cred is None else cred)
            self._entries.move_to_end(access_key_id)
            while len(self._entries) > self.max:
                self._entries.popitem(last=False)
        return cred

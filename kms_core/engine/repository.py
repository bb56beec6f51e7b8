"""The key repository: every SQL statement the engine runs, and its caches.

Handlers never see a connection.  Reads of keys, aliases and grants are cached in
memory; any write here drops the affected entries, and the whole cache is dropped when
the store's generation counter moves (another process wrote), checked at most every
``settings.cache_ttl`` seconds by the engine (``refresh``).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from kms_core import keytypes
from kms_core.errors import KMSError, StoreError
from kms_core.store import Store, WouldBlock, _check_io
from kms_core.store import aliases as T_ALIASES
from kms_core.store import grants as T_GRANTS
from kms_core.store import import_parameters as T_IMPORT
from kms_core.store import key_materials as T_MAT
from kms_core.store import keys as T_KEYS
from kms_core.store import tags as T_TAGS

from .records import DAY, ENABLED, PENDING_DELETION, PENDING_IMPORT, PENDING_REPLICA_DELETION, KeyRecord

_KEY_COLUMNS = ("key_id", "account_id", "region", "description", "creation_date", "key_state", "key_manager",
                "origin", "key_spec", "key_usage", "deletion_date", "pending_window_days", "rotation_enabled",
                "rotation_period_days", "next_rotation_date", "on_demand_rotations", "current_version",
                "policy", "managed_alias", "valid_to", "expiration_model", "primary_region")

# Multi-Region keys: what one Region's row shares with every other Region's row of the same key
# (written to all of them in one statement); everything else is per Region.
SHARED_COLUMNS = frozenset({"rotation_enabled", "rotation_period_days", "next_rotation_date",
                            "on_demand_rotations", "current_version", "import_fingerprint",
                            "primary_region"})


def row_id(key_id: str, region: str) -> str:
    """The ``kms_keys`` row of a key in a Region: the key id itself for single-Region keys,
    ``mrk-<hex>/<region>`` for multi-Region keys (a hash of the Region past 64 characters)."""
    if not key_id.startswith("mrk-"):
        return key_id
    rid = f"{key_id}/{region}"
    return rid if len(rid) <= 64 else f"{key_id}/{hashlib.sha256(region.encode()).hexdigest()[:27]}"


def public_id(rid: str) -> str:
    """The key id callers see for a row id (``row_id``'s inverse)."""
    return rid.split("/", 1)[0]


def _owner(row: RowMapping) -> str:
    """The id material rows are stored under: the shared key id."""
    return str(row["mrk_id"] or row["key_id"])


class ReplicaExists(Exception):
    """ReplicateKey: the key already has a row in that Region."""


class AliasExists(Exception):
    """CreateAlias: the name is taken."""


class TooMany(Exception):
    """A per-key quota (aliases, tags, grants, on-demand rotations) would be exceeded."""


class MaterialMismatch(Exception):
    """ImportKeyMaterial: not the material imported before."""


def grant_from_row(r: RowMapping) -> dict[str, Any]:
    g = {"GrantId": r["grant_id"], "Name": r["name"], "CreationDate": r["creation_date"],
         "GranteePrincipal": r["grantee_principal"], "RetiringPrincipal": r["retiring_principal"],
         "IssuingAccount": f"arn:aws:iam::{r['issuing_account']}:root",
         "Operations": json.loads(r["operations"])}
    if r["constraints"]:
        g["Constraints"] = json.loads(r["constraints"])
    return g


class KeyRepository:
    """Keys, materials, aliases, tags, grants and import parameters in the sealed store."""

    def __init__(self, store: Store, cache_ttl: float):
        self.store = store
        self.cache_ttl = cache_ttl
        self.lock = threading.RLock()
        self.keys: dict[str, KeyRecord] = {}
        self._aliases: dict[tuple[str, str, str], str] = {}
        self._grants: dict[str, list[dict[str, Any]]] = {}
        self._gen: int | None = None
        self.gen_checked = 0.0
        self.changes = store.changes
        self.seen_change = self.changes.value()

    # ------------------------------------------------------------------ cache
    def refresh(self) -> None:
        """Drop the caches if another process changed the store."""
        _check_io()  # under call_nonblocking: never wait for the lock on an event loop
        checked = self.gen_checked
        with self.lock:
            if self.gen_checked != checked and self.changes.value() == self.seen_change:
                # Another thread checked while this one waited for the lock, and nothing
                # changed since: one query, not one per waiting request (a slow database
                # would otherwise see them all, one after another, under this lock).
                return
            now = time.monotonic()
            seen = self.changes.value()  # before the read: a change after it triggers another refresh
            try:
                gen = self.store.generation()
            except WouldBlock:
                raise
            except Exception as e:  # pragma: no cover - database down
                raise KMSError("KMSInternalException", "The key store is unavailable.") from e
            if gen != self._gen:
                self.keys.clear()
                self._aliases.clear()
                self._grants.clear()
                self._gen = gen
            self.gen_checked = now
            self.seen_change = seen

    def stale(self, cache_ttl: float) -> bool:
        """Whether ``refresh`` is due: the store changed (this host, or a notification from
        another), or ``cache_ttl`` passed since the last check."""
        return self.changes.value() != self.seen_change or time.monotonic() - self.gen_checked >= cache_ttl

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached state (all of it, or one key's: for a multi-Region key, every Region's
        row, since they share material and rotation)."""
        with self.lock:
            if key_id is None or key_id.startswith("mrk-"):
                self.keys.clear()
                self._grants.clear()
            else:
                self.keys.pop(key_id, None)
                self._grants.pop(key_id, None)
            self._aliases.clear()

    # ------------------------------------------------------------------ keys
    def get(self, key_id: str, account: str, region: str) -> KeyRecord | None:
        """The key (cached), or None if it does not exist in this account and Region."""
        rid = row_id(key_id, region)
        rec = self.keys.get(rid)
        if rec is not None and rec.account_id == account and rec.region == region:
            return rec
        _check_io()
        with self.lock:
            rec = self._load(rid, account, region)
            if rec is not None:
                self.keys[rid] = rec
        return rec

    def _load(self, rid: str, account: str, region: str) -> KeyRecord | None:
        with self.store.reading() as conn:
            row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == rid)).mappings().first()
            # Exact id: MySQL's default collations would match another case.
            if row is None or row["key_id"] != rid or row["account_id"] != account or row["region"] != region:
                return None
            key_id = _owner(row)
            mats = conn.execute(select(T_MAT).where(T_MAT.c.key_id == key_id)).mappings().all()
            group = (conn.execute(select(T_KEYS.c.region, T_KEYS.c.key_state, T_KEYS.c.deletion_date)
                                  .where(T_KEYS.c.mrk_id == key_id)).all() if row["mrk_id"] else [])
        rec = KeyRecord()
        for name in _KEY_COLUMNS:
            setattr(rec, name, row[name])
        rec.key_id = key_id
        rec.row_id = rid
        rec.regions = tuple(sorted(g.region for g in group))
        rec.rotation_enabled = bool(rec.rotation_enabled)
        rec.arn = f"arn:aws:kms:{region}:{account}:key/{key_id}"
        rec.key_type = keytypes.get(rec.key_spec)
        rec.encrypter = rec.key_type.encrypter()
        rec.materials = {}
        rec.material_ids = {}
        for m in mats:
            secret = self.store.unseal(m["sealed"], Store.material_aad(key_id, m["version"]))
            rec.materials[m["version"]] = keytypes.Material(key_id, m["version"], secret)
            rec.material_ids[m["version"]] = m["material_id"]
        events = [t for t in (rec.deletion_date if rec.key_state == PENDING_DELETION else None,
                              rec.next_rotation_date if (rec.rotation_enabled and rec.key_state == ENABLED) else None,
                              rec.valid_to if rec.key_state == ENABLED else None) if t is not None]
        if rec.key_state == PENDING_REPLICA_DELETION:  # waits for its replicas' deletion dates
            events += [g.deletion_date for g in group
                       if g.key_state == PENDING_DELETION and g.deletion_date is not None]
        rec.next_event = min(events) if events else float("inf")
        return rec

    def settle(self, key_id: str, now: float) -> bool:
        """Apply what the clock says has happened: deletion, rotation, expiry.
        Returns False when the key no longer exists."""
        with self.store.transaction() as conn:
            row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == key_id)).mappings().first()
            if row is not None and row["mrk_id"]:
                # Other Regions' rows that are due first (a primary waits for its replicas).
                for other in conn.execute(select(T_KEYS).where(and_(
                        T_KEYS.c.mrk_id == row["mrk_id"], T_KEYS.c.key_id != key_id,
                        T_KEYS.c.key_state == PENDING_DELETION, T_KEYS.c.deletion_date <= now))).mappings().all():
                    self._delete_key_rows(conn, other)
                row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == key_id)).mappings().first()
            if row is None:
                exists = False
            elif row["key_state"] == PENDING_DELETION and row["deletion_date"] <= now:
                self._delete_key_rows(conn, row)
                exists = False
            else:
                exists = True
                self._settle_row(conn, row, now)
        self.invalidate(key_id)
        return exists

    def _settle_row(self, conn: Connection, row: RowMapping, now: float) -> None:
        key_id = row["key_id"]
        if (row["origin"] == "EXTERNAL" and row["valid_to"] is not None
                and row["valid_to"] <= now and row["key_state"] != PENDING_DELETION):
            # Expired imported material is deleted; the key waits for a new import.
            self._drop_material(conn, row, key_state=PENDING_IMPORT, valid_to=None)
        nxt = row["next_rotation_date"]
        if row["rotation_enabled"] and row["key_state"] == ENABLED and nxt is not None:
            period = row["rotation_period_days"] * DAY
            version = row["current_version"]
            # Catch up on every period that passed while the key was enabled.
            for _ in range(64):
                if nxt > now:
                    break
                version += 1
                self._add_material(conn, _owner(row), row["key_spec"], version, nxt, "AUTOMATIC")
                nxt += period
            else:
                nxt = now + period
            self._update_row(conn, key_id, {"current_version": version, "next_rotation_date": nxt})

    @staticmethod
    def _update_row(conn: Connection, rid: str, values: dict[str, Any]) -> None:
        """Set a row's columns; for a multi-Region key the shared ones on every Region's row."""
        shared = {k: v for k, v in values.items() if k in SHARED_COLUMNS}
        if shared and rid.startswith("mrk-"):
            own = {k: v for k, v in values.items() if k not in SHARED_COLUMNS}
            conn.execute(update(T_KEYS).where(T_KEYS.c.mrk_id == public_id(rid)).values(**shared))
            if own:
                conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rid).values(**own))
        elif values:
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rid).values(**values))

    def _drop_material(self, conn: Connection, row: RowMapping, **values: Any) -> None:
        """Imported material deleted or expired in this row's Region.  The material rows are
        shared by a multi-Region key's Regions: they go only when no other Region still uses
        them (each Region imports the same material separately)."""
        others: Sequence[Any] = []
        if row["mrk_id"]:
            others = conn.execute(select(T_KEYS.c.key_id).where(and_(
                T_KEYS.c.mrk_id == row["mrk_id"], T_KEYS.c.key_id != row["key_id"],
                T_KEYS.c.key_state != PENDING_IMPORT))).all()
        if not others:
            conn.execute(delete(T_MAT).where(T_MAT.c.key_id == _owner(row)))
            values["current_version"] = 0
        self._update_row(conn, row["key_id"], values)

    @staticmethod
    def _delete_key_rows(conn: Connection, row: RowMapping) -> None:
        """Delete one Region's key (its row, grants, import parameters, aliases, tags) and the
        material once no Region's row is left.  The last replica's deletion starts its
        primary's own window (PendingReplicaDeletion -> PendingDeletion)."""
        rid, owner = row["key_id"], _owner(row)
        conn.execute(delete(T_GRANTS).where(T_GRANTS.c.key_id == rid))
        conn.execute(delete(T_IMPORT).where(T_IMPORT.c.key_id == rid))
        conn.execute(delete(T_ALIASES).where(and_(
            T_ALIASES.c.target_key_id == owner, T_ALIASES.c.account_id == row["account_id"],
            T_ALIASES.c.region == row["region"])))
        conn.execute(delete(T_TAGS).where(T_TAGS.c.key_id == rid))
        conn.execute(delete(T_KEYS).where(T_KEYS.c.key_id == rid))
        left = (conn.execute(select(T_KEYS).where(T_KEYS.c.mrk_id == owner)).mappings().all()
                if row["mrk_id"] else [])
        if not left:
            conn.execute(delete(T_MAT).where(T_MAT.c.key_id == owner))
            return
        if len(left) == 1 and left[0]["key_state"] == PENDING_REPLICA_DELETION:
            primary = left[0]
            when = row["deletion_date"] + (primary["pending_window_days"] or 30) * DAY
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == primary["key_id"]).values(
                key_state=PENDING_DELETION, deletion_date=when))

    def _add_material(self, conn: Connection, key_id: str, key_spec: str, version: int, created: float,
                      rotation_type: str | None, secret: bytes | None = None) -> str:
        secret = secret if secret is not None else keytypes.get(key_spec).generate()
        material_id = os.urandom(32).hex()
        conn.execute(insert(T_MAT).values(
            key_id=key_id, version=version, material_id=material_id, created=created,
            rotation_type=rotation_type,
            sealed=self.store.seal(secret, Store.material_aad(key_id, version))))
        return material_id

    def create_key(self, values: dict[str, Any], *, with_material: bool,
                   tags: Sequence[tuple[str, str]] = ()) -> None:
        """Insert a key row (``values``: its columns), its first material unless it awaits an
        import, and its tags, in one transaction."""
        key_id = values["key_id"]
        with self.store.transaction() as conn:
            conn.execute(insert(T_KEYS).values(**values))
            if with_material:
                self._add_material(conn, values.get("mrk_id") or key_id, values["key_spec"], 1,
                                   values["creation_date"], None)
            for k, v in tags:
                conn.execute(insert(T_TAGS).values(key_id=key_id, tag_key=k, tag_value=v))
        self.invalidate(key_id)

    def create_managed_key(self, values: dict[str, Any], alias_name: str) -> str:
        """Create an AWS-managed key and its alias exactly once (across threads and
        processes); returns the id of the key the alias names."""
        account, region, now = values["account_id"], values["region"], values["creation_date"]
        try:
            with self.store.transaction() as conn:
                existing = conn.execute(select(T_ALIASES.c.target_key_id).where(and_(
                    T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                    T_ALIASES.c.alias_name == alias_name))).scalar()
                if existing is not None:
                    return str(existing)
                conn.execute(insert(T_KEYS).values(**values))
                self._add_material(conn, values["key_id"], values["key_spec"], 1, now, None)
                conn.execute(insert(T_ALIASES).values(
                    account_id=account, region=region, alias_name=alias_name,
                    target_key_id=values["key_id"], creation_date=now, last_updated=now))
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):  # lost a race on another node
                self.invalidate()
                raced = self.alias_target(account, region, alias_name)
                if raced is not None:
                    return raced
            raise
        self.invalidate()
        return str(values["key_id"])

    def update_key(self, key_id: str, **values: Any) -> None:
        """Set columns of one row (a row id); shared columns of a multi-Region key go to
        every Region's row (``SHARED_COLUMNS``)."""
        with self.store.transaction() as conn:
            self._update_row(conn, key_id, values)
        self.invalidate(key_id)

    def replicate(self, key_id: str, values: dict[str, Any], tags: Sequence[tuple[str, str]] = ()) -> None:
        """ReplicateKey: a new Region's row of multi-Region key ``key_id`` (``values``: its own
        columns), with the shared columns as they are now; raise ReplicaExists."""
        rid = values["key_id"]
        try:
            with self.store.transaction() as conn:
                rows = conn.execute(select(T_KEYS).where(T_KEYS.c.mrk_id == key_id)).mappings().all()
                if any(r["region"] == values["region"] for r in rows):
                    raise ReplicaExists()
                src = next(r for r in rows if r["region"] == r["primary_region"])
                shared = {c: src[c] for c in SHARED_COLUMNS}
                conn.execute(insert(T_KEYS).values(
                    **shared, **values, mrk_id=key_id, origin=src["origin"], key_spec=src["key_spec"],
                    key_usage=src["key_usage"], key_manager=src["key_manager"]))
                for k, v in tags:
                    conn.execute(insert(T_TAGS).values(key_id=rid, tag_key=k, tag_value=v))
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):  # another node replicated it first
                raise ReplicaExists() from None
            raise
        self.invalidate(rid)

    def key_regions(self, key_id: str) -> list[RowMapping]:
        """Every Region's row of a multi-Region key (region, key_state, account_id)."""
        with self.store.reading() as conn:
            return list(conn.execute(select(T_KEYS.c.key_id, T_KEYS.c.region, T_KEYS.c.key_state,
                                            T_KEYS.c.account_id)
                                     .where(T_KEYS.c.mrk_id == key_id)).mappings().all())

    def add_version(self, key_id: str, key_spec: str, created: float, rotation_type: str,
                    **values: Any) -> None:
        """New current material (rotation), plus other column changes, in one transaction."""
        with self.store.transaction() as conn:
            version = conn.execute(select(T_KEYS.c.current_version)
                                   .where(T_KEYS.c.key_id == key_id)).scalar_one() + 1
            self._add_material(conn, public_id(key_id), key_spec, version, created, rotation_type)
            self._update_row(conn, key_id, {"current_version": version, **values})
        self.invalidate(key_id)

    def rotate_on_demand(self, key_id: str, key_spec: str, now: float, limit: int) -> None:
        """Raise TooMany when the key has had ``limit`` on-demand rotations."""
        with self.store.transaction() as conn:
            row = conn.execute(select(T_KEYS.c.on_demand_rotations, T_KEYS.c.current_version)
                               .where(T_KEYS.c.key_id == key_id)).one()
            if row.on_demand_rotations >= limit:
                raise TooMany()
            version = row.current_version + 1
            self._add_material(conn, public_id(key_id), key_spec, version, now, "ON_DEMAND")
            self._update_row(conn, key_id, {"current_version": version,
                                            "on_demand_rotations": row.on_demand_rotations + 1})
        self.invalidate(key_id)

    def key_ids(self, account: str, region: str, after: str | None, limit: int) -> list[str]:
        public = func.coalesce(T_KEYS.c.mrk_id, T_KEYS.c.key_id)
        q = (select(public).where(and_(T_KEYS.c.account_id == account, T_KEYS.c.region == region))
             .order_by(public).limit(limit))
        if after is not None:
            q = q.where(public > after)
        with self.store.reading() as conn:
            return list(conn.execute(q).scalars())

    def purge_expired(self, now: float) -> None:
        """Delete every key whose deletion window has run out."""
        with self.store.reading() as conn:
            due = list(conn.execute(select(T_KEYS.c.key_id).where(and_(
                T_KEYS.c.key_state == PENDING_DELETION, T_KEYS.c.deletion_date <= now))
                .order_by(T_KEYS.c.deletion_date)).scalars())
        if not due:
            return
        with self.store.transaction() as conn:
            for key_id in due:
                still = conn.execute(select(T_KEYS).where(and_(
                    T_KEYS.c.key_id == key_id, T_KEYS.c.key_state == PENDING_DELETION))).mappings().first()
                if still is not None and still["deletion_date"] <= now:
                    self._delete_key_rows(conn, still)
            # A primary whose last replica just went may itself be due already.
            for row in conn.execute(select(T_KEYS).where(and_(
                    T_KEYS.c.key_state == PENDING_DELETION, T_KEYS.c.deletion_date <= now))).mappings().all():
                self._delete_key_rows(conn, row)
        self.invalidate()

    # ------------------------------------------------------------------ materials
    def materials(self, key_id: str) -> list[Any]:
        """(version, material_id, created, rotation_type) rows, oldest first."""
        with self.store.reading() as conn:
            return list(conn.execute(select(T_MAT.c.version, T_MAT.c.material_id, T_MAT.c.created,
                                            T_MAT.c.rotation_type)
                                     .where(T_MAT.c.key_id == key_id).order_by(T_MAT.c.version)).all())

    # ------------------------------------------------------------------ aliases
    def alias_target(self, account: str, region: str, name: str) -> str | None:
        k = (account, region, name)
        target = self._aliases.get(k)
        if target is not None:
            return target
        with self.store.reading() as conn:
            target = conn.execute(select(T_ALIASES.c.target_key_id).where(and_(
                T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                T_ALIASES.c.alias_name == name))).scalar()
        if target is not None:
            self._aliases[k] = target
        return target

    def create_alias(self, account: str, region: str, name: str, key_id: str, now: float,
                     max_per_key: int) -> None:
        """Raise AliasExists or TooMany."""
        try:
            with self.store.transaction() as conn:
                exists = conn.execute(select(T_ALIASES.c.alias_name).where(and_(
                    T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                    T_ALIASES.c.alias_name == name))).first()
                if exists:
                    raise AliasExists()
                count = conn.execute(select(func.count()).select_from(T_ALIASES).where(and_(
                    T_ALIASES.c.target_key_id == key_id, T_ALIASES.c.account_id == account,
                    T_ALIASES.c.region == region))).scalar_one()
                if count >= max_per_key:
                    raise TooMany()
                conn.execute(insert(T_ALIASES).values(
                    account_id=account, region=region, alias_name=name, target_key_id=key_id,
                    creation_date=now, last_updated=now))
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):
                raise AliasExists() from None
            raise
        self.invalidate()

    def update_alias(self, account: str, region: str, name: str, key_id: str, now: float) -> None:
        with self.store.transaction() as conn:
            conn.execute(update(T_ALIASES).where(and_(
                T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                T_ALIASES.c.alias_name == name)).values(target_key_id=key_id, last_updated=now))
        self.invalidate()

    def delete_alias(self, account: str, region: str, name: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(T_ALIASES).where(and_(
                T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                T_ALIASES.c.alias_name == name)))
        self.invalidate()

    def aliases(self, account: str, region: str, key_id: str | None) -> list[RowMapping]:
        q = select(T_ALIASES).where(and_(T_ALIASES.c.account_id == account, T_ALIASES.c.region == region))
        if key_id is not None:
            q = q.where(T_ALIASES.c.target_key_id == key_id)
        with self.store.reading() as conn:
            return list(conn.execute(q).mappings())

    # ------------------------------------------------------------------ tags
    def put_tags(self, key_id: str, new: Sequence[tuple[str, str]], max_tags: int) -> None:
        """Add or overwrite tags; raise TooMany past ``max_tags``."""
        with self.store.transaction() as conn:
            existing = {r.tag_key for r in conn.execute(
                select(T_TAGS.c.tag_key).where(T_TAGS.c.key_id == key_id))}
            if len(existing | {k for k, _ in new}) > max_tags:
                raise TooMany()
            for k, v in new:
                if k in existing:
                    conn.execute(update(T_TAGS).where(and_(T_TAGS.c.key_id == key_id,
                                                           T_TAGS.c.tag_key == k)).values(tag_value=v))
                else:
                    conn.execute(insert(T_TAGS).values(key_id=key_id, tag_key=k, tag_value=v))

    def delete_tags(self, key_id: str, tag_keys: Iterable[str]) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(T_TAGS).where(and_(T_TAGS.c.key_id == key_id,
                                                   T_TAGS.c.tag_key.in_(list(tag_keys)))))

    def tags(self, key_id: str, after: str | None, limit: int) -> list[Any]:
        q = (select(T_TAGS.c.tag_key, T_TAGS.c.tag_value).where(T_TAGS.c.key_id == key_id)
             .order_by(T_TAGS.c.tag_key).limit(limit))
        if after is not None:
            q = q.where(T_TAGS.c.tag_key > after)
        with self.store.reading() as conn:
            return list(conn.execute(q).all())

    # ------------------------------------------------------------------ grants
    def key_grants(self, key_id: str) -> list[dict[str, Any]]:
        """The key's grants in creation order (cached)."""
        grants = self._grants.get(key_id)
        if grants is None:
            with self.store.reading() as conn:
                rows = conn.execute(select(T_GRANTS).where(T_GRANTS.c.key_id == key_id)
                                    .order_by(T_GRANTS.c.creation_date, T_GRANTS.c.grant_id)).mappings().all()
            grants = [grant_from_row(r) for r in rows]
            self._grants[key_id] = grants
        return grants

    def forget_grants(self, key_id: str) -> None:
        with self.lock:
            self._grants.pop(key_id, None)

    def grant(self, grant_id: str) -> RowMapping | None:
        with self.store.reading() as conn:
            return conn.execute(select(T_GRANTS).where(T_GRANTS.c.grant_id == grant_id)).mappings().first()

    def create_grant(self, key_id: str, values: dict[str, Any], same_as: dict[str, Any],
                     max_grants: int) -> str:
        """Insert a grant; with a Name, return the existing grant's id when an identical one
        exists (``same_as``: its principals, sorted operations and constraints).  Raise
        TooMany past ``max_grants``."""
        name = values["name"]
        with self.store.transaction() as conn:
            if name is not None:
                for r in conn.execute(select(T_GRANTS).where(and_(
                        T_GRANTS.c.key_id == key_id, T_GRANTS.c.name == name))).mappings():
                    g = grant_from_row(r)
                    same = {"GranteePrincipal": g["GranteePrincipal"],
                            "RetiringPrincipal": g.get("RetiringPrincipal"),
                            "Operations": sorted(g["Operations"]), "Constraints": g.get("Constraints")}
                    if same == same_as:  # idempotent per key and name
                        return str(g["GrantId"])
            count = conn.execute(select(func.count()).select_from(T_GRANTS)
                                 .where(T_GRANTS.c.key_id == key_id)).scalar_one()
            if count >= max_grants:
                raise TooMany()
            grant_id = os.urandom(32).hex()
            conn.execute(insert(T_GRANTS).values(grant_id=grant_id, key_id=key_id, **values))
        self.invalidate(key_id)
        return grant_id

    def delete_grant(self, key_id: str, grant_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(T_GRANTS).where(T_GRANTS.c.grant_id == grant_id))
        self.invalidate(key_id)

    def retirable_grants(self, retiring: str) -> list[RowMapping]:
        """Every grant naming ``retiring`` as its retiring principal, with its key's Region
        and account."""
        with self.store.reading() as conn:
            return list(conn.execute(select(T_GRANTS, T_KEYS.c.region, T_KEYS.c.account_id, T_KEYS.c.mrk_id)
                                     .join(T_KEYS, T_KEYS.c.key_id == T_GRANTS.c.key_id)
                                     .where(T_GRANTS.c.retiring_principal == retiring)
                                     .order_by(T_GRANTS.c.grant_id)).mappings().all())

    # ------------------------------------------------------------------ imported material
    @staticmethod
    def _import_aad(key_id: str, token_id: str) -> bytes:
        return f"import|{key_id}|{token_id}".encode()

    def save_import_parameters(self, key_id: str, wrapping_algorithm: str, wrapping_key_spec: str,
                               private_key_der: bytes, valid_to: float) -> str:
        """Keep a wrapping key (sealed); returns its token id."""
        token_id = os.urandom(32).hex()
        with self.store.transaction() as conn:
            conn.execute(insert(T_IMPORT).values(
                token_id=token_id, key_id=key_id, wrapping_algorithm=wrapping_algorithm,
                wrapping_key_spec=wrapping_key_spec,
                private_key_sealed=self.store.seal(private_key_der, self._import_aad(key_id, token_id)),
                valid_to=valid_to))
        return token_id

    def import_parameters(self, token_id: str) -> tuple[RowMapping, bytes] | None:
        """The parameters row and its private key (DER, in clear), or None."""
        with self.store.reading() as conn:
            row = conn.execute(select(T_IMPORT).where(T_IMPORT.c.token_id == token_id)).mappings().first()
        if row is None:
            return None
        der = self.store.unseal(row["private_key_sealed"], self._import_aad(row["key_id"], token_id))
        return row, der

    def import_material(self, key_id: str, key_spec: str, secret: bytes, fingerprint: str, now: float,
                        values: dict[str, Any]) -> str:
        """Store imported material as version 1 (or check it equals what is there) and set the
        key's columns; returns the KeyMaterialId.  Raise MaterialMismatch when the material is
        not the one imported before (compared in constant time; after a deletion, by its
        fingerprint: only that is kept)."""
        import hmac  # noqa: PLC0415 - only imports need it

        rid, key_id = key_id, public_id(key_id)  # the row (a Region's key) and the material's owner
        with self.store.transaction() as conn:
            existing = conn.execute(select(T_MAT).where(and_(T_MAT.c.key_id == key_id,
                                                              T_MAT.c.version == 1))).mappings().first()
            if existing is not None:
                old = self.store.unseal(existing["sealed"], Store.material_aad(key_id, 1))
                if not hmac.compare_digest(old, secret):
                    raise MaterialMismatch()
                material_id = str(existing["material_id"])
            else:
                prior = conn.execute(select(T_KEYS.c.import_fingerprint)
                                     .where(T_KEYS.c.key_id == rid)).scalar()
                if prior is not None and not hmac.compare_digest(prior, fingerprint):
                    raise MaterialMismatch()
                material_id = self._add_material(conn, key_id, key_spec, 1, now, None, secret=secret)
                conn.execute(update(T_MAT).where(and_(T_MAT.c.key_id == key_id, T_MAT.c.version == 1))
                             .values(import_state="IMPORTED"))
                self._update_row(conn, rid, {"import_fingerprint": fingerprint})
            self._update_row(conn, rid, {"current_version": 1, **values})
        self.invalidate(rid)
        return material_id

    def delete_material(self, key_id: str, **values: Any) -> None:
        """Delete every material version (of a multi-Region key: once no other Region uses
        it) and set the key's columns."""
        with self.store.transaction() as conn:
            row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == key_id)).mappings().one()
            values.pop("current_version", None)
            self._drop_material(conn, row, **values)
        self.invalidate(key_id)


def new_key_id(multi_region: bool = False) -> str:
    """A new key id: a UUID, or ``mrk-`` + 32 lower-case hex digits for a multi-Region key."""
    return "mrk-" + uuid.uuid4().hex if multi_region else str(uuid.uuid4())


__all__ = ["SHARED_COLUMNS", "AliasExists", "KeyRepository", "MaterialMismatch", "ReplicaExists", "TooMany",
           "grant_from_row", "new_key_id", "public_id", "row_id"]

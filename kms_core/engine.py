"""The KMS engine: AWS KMS semantics over the sealed store.

``Engine.call(operation, params, ctx)`` is the single entry point used by the
in-process client, the server and the CLI.  Parameters and results are in
boto3's Python form (bytes, datetimes); failures are ``KMSError`` only.

Hot path (Encrypt/Decrypt/GenerateDataKey on a cached key) touches no
storage: keys are cached with their unsealed material, and the cache is
dropped whenever the store's generation counter moves (checked at most every
``settings.cache_ttl`` seconds), so changes made by other processes are
honoured within that bound.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import blob as blobfmt
from .clock import SystemClock
from .envelope import encode_context
from .errors import KMSError, StoreError, invalid_ciphertext, invalid_state, not_found, validation
from .settings import Settings
from .policy import IAM_ONLY, NOT_POLICY_CONTROLLED, access_denied, parse_policy, _principal_match
from .store import (Store, WouldBlock, _check_io, aliases as T_ALIASES, grants as T_GRANTS, import_parameters as T_IMPORT,
                    key_materials as T_MAT, keys as T_KEYS, tags as T_TAGS)

from .validation import validate as _validate

DAY = 86400.0
ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT = "Enabled", "Disabled", "PendingDeletion", "PendingImport"
SYMMETRIC = "SYMMETRIC_DEFAULT"
MAX_ON_DEMAND_ROTATIONS = 25
MAX_ALIASES_PER_KEY = 50
MAX_TAGS = 50
DEFAULT_ROTATION_DAYS = 365

# Predefined AWS-managed aliases (alias/aws/<service>) and the description AWS gives their keys.
MANAGED_SERVICES = {
    "s3": "S3 objects", "elasticfilesystem": "Elastic File System data", "rds": "RDS database data",
    "dynamodb": "DynamoDB data", "lambda": "Lambda functions", "ebs": "EBS volumes",
    "secretsmanager": "Secrets Manager secrets", "ssm": "SSM parameters", "acm": "ACM private keys",
    "redshift": "Redshift data", "es": "Elasticsearch data", "glue": "Glue data",
    "kinesis": "Kinesis data", "sns": "SNS data", "sqs": "SQS messages", "backup": "Backup data",
    "codecommit": "CodeCommit repositories", "xray": "X-Ray traces", "logs": "CloudWatch Logs",
}

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(key|alias)/(.+)$")
_ALIAS_RE = re.compile(r"^[a-zA-Z0-9:/_-]+$")

# Operations that create a predefined AWS-managed key when they name its alias.
_CREATES_MANAGED = {"Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "DescribeKey",
                    "ReEncrypt"}
# ReEncrypt is authorised as two permissions, each about its own context.
_CONTEXT_PARAM = {"ReEncryptFrom": "SourceEncryptionContext",
                  "ReEncryptTo": "DestinationEncryptionContext"}
# Admin operations an AWS-managed key's policy does not allow.
_MANAGED_DENIED = {"DisableKey", "EnableKey", "ScheduleKeyDeletion", "CancelKeyDeletion",
                   "UpdateKeyDescription", "TagResource", "UntagResource", "EnableKeyRotation",
                   "DisableKeyRotation", "RotateKeyOnDemand", "CreateAlias", "UpdateAlias",
                   "PutKeyPolicy", "ImportKeyMaterial", "DeleteImportedKeyMaterial"}


@dataclass
class RequestContext:
    """Who is calling, from where; ``None`` fields take the engine's defaults."""
    region: str | None = None
    account_id: str | None = None
    principal: str | None = None          # e.g. arn:aws:iam::111122223333:user/alice
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    access_key_id: str | None = None
    via_service: str | None = None
    authenticated: bool = True


def _ts(dt: float | None) -> datetime | None:
    return None if dt is None else datetime.fromtimestamp(dt, timezone.utc)


def default_policy(account_id: str) -> str:
    return json.dumps({
        "Version": "2012-10-17", "Id": "key-default-1",
        "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                       "Action": "kms:*", "Resource": "*"}]}, indent=2)


def managed_policy(account_id: str, region: str, service: str) -> str:
    via = f"{service}.{region}.amazonaws.com"
    return json.dumps({
        "Version": "2012-10-17", "Id": f"auto-{service}-1",
        "Statement": [
            {"Sid": f"Allow access through {service} for all principals in the account that are authorized to use {service}",
             "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:CreateGrant", "kms:DescribeKey"],
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": via, "kms:CallerAccount": account_id}}},
            {"Sid": "Allow direct access to key metadata to the account", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
             "Resource": "*"}]}, indent=2)


class KeyRecord:
    """A cached snapshot of one key and its unsealed material versions."""
    __slots__ = ("key_id", "arn", "account_id", "region", "description", "creation_date",
                 "key_state", "key_manager", "origin", "key_spec", "key_usage", "deletion_date",
                 "pending_window_days", "rotation_enabled", "rotation_period_days",
                 "next_rotation_date", "on_demand_rotations", "current_version", "policy",
                 "managed_alias", "valid_to", "expiration_model", "aeads", "material_ids",
                 "next_event", "id_bytes")

    def __repr__(self) -> str:
        return f"<KeyRecord {self.key_id} {self.key_state}>"


class Engine:
    """AWS KMS semantics.  Thread-safe; one per store per process is enough."""

    def __init__(self, store: Store, settings: Settings, clock=None):
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._keys: dict[str, KeyRecord] = {}
        self._aliases: dict[tuple[str, str, str], str] = {}
        self._grants: dict[str, list[dict]] = {}
        self._decisions: dict[tuple, str] = {}
        self._gen: int | None = None
        self._gen_checked = 0.0
        # Hooks for key policies / grants and the audit trail (issue: server).
        self.authorizer: Callable | None = None
        self.auditor: Callable | None = None
        self._handlers: dict[str, Callable] = {
            name: getattr(self, "_op_" + name) for name in OPERATIONS_SERVED}

    @classmethod
    def open(cls, settings: Settings, clock=None) -> "Engine":
        return cls(Store(settings), settings, clock)

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def close(self) -> None:
        self.store.dispose()

    # ------------------------------------------------------------------ dispatch
    def call(self, operation: str, params: dict | None = None,
             ctx: RequestContext | None = None) -> dict:
        params = params or {}
        if ctx is None:
            ctx = _DEFAULT_CTX
        auditor = self.auditor
        try:
            # [audit hook] the audit log refuses requests it could not record (fails closed)
            if auditor is not None and getattr(auditor, "admit", None) is not None:
                auditor.admit()
            handler = self._handlers.get(operation)
            if handler is None:
                raise KMSError("UnsupportedOperationException",
                               f"{operation} is not supported by this KMS engine.")
            _validate(operation, params)  # every limit and enum of the model, AWS's messages
            self._maybe_refresh()
            result = handler(params, ctx)
        except KMSError as err:
            if auditor is not None:
                auditor(ctx, operation, params, None, err)
            raise
        except WouldBlock:  # nothing changed, nothing audited: retried off the event loop
            raise
        except Exception as err:  # [audit hook] a bug still leaves its event (KMSInternalException)
            if auditor is not None:
                auditor(ctx, operation, params, None, err)
            raise
        if auditor is not None:
            auditor(ctx, operation, params, result, None)
        return result

    def call_nonblocking(self, operation: str, params: dict | None = None,
                         ctx: RequestContext | None = None) -> dict:
        """``call`` when it can be answered from memory; raises
        ``kms_core.store.WouldBlock`` (having changed and audited nothing) when
        it needs the database, so that the caller can retry it off its event loop."""
        from .store import no_io
        with no_io():
            return self.call(operation, params, ctx)

    def record_rejected(self, ctx: RequestContext, operation: str, error: KMSError,
                        params: dict | None = None) -> None:
        """Audit a request refused before dispatch (bad signature, bad JSON…)."""
        if self.auditor is not None:
            self.auditor(ctx, operation, params or {}, None, error)

    # ------------------------------------------------------------------ caching
    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._gen_checked < self.settings.cache_ttl:
            return
        self._refresh()

    def refresh_if_due(self, ahead: float = 0.5) -> None:
        """Run the cross-process change check once ``ahead`` × cache_ttl has
        passed, so that a caller's background thread can keep requests from
        ever paying for it (the server does this)."""
        if time.monotonic() - self._gen_checked >= self.settings.cache_ttl * ahead:
            self._refresh()

    def _refresh(self) -> None:
        _check_io()  # under call_nonblocking: never wait for the lock on an event loop
        with self._lock:
            now = time.monotonic()
            try:
                gen = self.store.generation()
            except WouldBlock:
                raise
            except Exception as e:  # pragma: no cover - database down
                raise KMSError("KMSInternalException", "The key store is unavailable.") from e
            if gen != self._gen:
                self._keys.clear()
                self._aliases.clear()
                self._grants.clear()
                self._gen = gen
            self._gen_checked = now

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached state (all of it, or one key's)."""
        with self._lock:
            if key_id is None:
                self._keys.clear()
                self._grants.clear()
            else:
                self._keys.pop(key_id, None)
                self._grants.pop(key_id, None)
            self._aliases.clear()

    def _now(self) -> float:
        ts = getattr(self.clock, "timestamp", None)
        return ts() if ts is not None else self.clock.now().timestamp()

    def _region(self, ctx: RequestContext) -> str:
        return ctx.region or self.settings.region

    def _account(self, ctx: RequestContext) -> str:
        return ctx.account_id or self.settings.account_id

    def _principal(self, ctx: RequestContext) -> str:
        return ctx.principal or f"arn:aws:iam::{self._account(ctx)}:root"

    def key_arn(self, key_id: str, ctx: RequestContext) -> str:
        return f"arn:aws:kms:{self._region(ctx)}:{self._account(ctx)}:key/{key_id}"

    def alias_arn(self, name: str, ctx: RequestContext) -> str:
        return f"arn:aws:kms:{self._region(ctx)}:{self._account(ctx)}:{name}"

    # ------------------------------------------------------------------ loading
    def _load(self, key_id: str, account: str, region: str) -> KeyRecord | None:
        with self.store.reading() as conn:
            row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == key_id)).mappings().first()
            if row is None or row["account_id"] != account or row["region"] != region:
                return None
            mats = conn.execute(select(T_MAT).where(T_MAT.c.key_id == key_id)).mappings().all()
        rec = KeyRecord()
        for name in ("key_id", "account_id", "region", "description", "creation_date",
                     "key_state", "key_manager", "origin", "key_spec", "key_usage",
                     "deletion_date", "pending_window_days", "rotation_enabled",
                     "rotation_period_days", "next_rotation_date", "on_demand_rotations",
                     "current_version", "policy", "managed_alias", "valid_to", "expiration_model"):
            setattr(rec, name, row[name])
        rec.rotation_enabled = bool(rec.rotation_enabled)
        rec.arn = f"arn:aws:kms:{region}:{account}:key/{key_id}"
        rec.id_bytes = uuid.UUID(key_id).bytes
        rec.aeads = {}
        rec.material_ids = {}
        for m in mats:
            material = self.store.unseal(m["sealed"], Store.material_aad(key_id, m["version"]))
            rec.aeads[m["version"]] = AESGCM(material)
            rec.material_ids[m["version"]] = m["material_id"]
        events = [t for t in (rec.deletion_date if rec.key_state == PENDING_DELETION else None,
                              rec.next_rotation_date if (rec.rotation_enabled and rec.key_state == ENABLED) else None,
                              rec.valid_to if rec.key_state == ENABLED else None) if t is not None]
        rec.next_event = min(events) if events else float("inf")
        return rec

    def _get(self, key_id: str, ctx: RequestContext, *, settle: bool = True) -> KeyRecord | None:
        rec = self._keys.get(key_id)
        if rec is None or rec.account_id != self._account(ctx) or rec.region != self._region(ctx):
            _check_io()
            with self._lock:
                rec = self._load(key_id, self._account(ctx), self._region(ctx))
                if rec is None:
                    return None
                self._keys[key_id] = rec
        if settle and rec.next_event <= self._now():
            rec = self._settle(rec, ctx)
        return rec

    def _settle(self, rec: KeyRecord, ctx: RequestContext) -> KeyRecord | None:
        """Apply what the clock says has happened: deletion, rotation, expiry."""
        now = self._now()
        with self.store.transaction() as conn:
            row = conn.execute(select(T_KEYS).where(T_KEYS.c.key_id == rec.key_id)).mappings().first()
            if row is None:
                deleted = True
            elif row["key_state"] == PENDING_DELETION and row["deletion_date"] <= now:
                self._delete_key_rows(conn, rec.key_id)
                deleted = True
            else:
                deleted = False
                if (row["origin"] == "EXTERNAL" and row["valid_to"] is not None
                        and row["valid_to"] <= now and row["key_state"] != PENDING_DELETION):
                    # Expired imported material is deleted; the key waits for a new import.
                    conn.execute(delete(T_MAT).where(T_MAT.c.key_id == rec.key_id))
                    conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(
                        key_state=PENDING_IMPORT, valid_to=None, current_version=0))
                nxt = row["next_rotation_date"]
                if row["rotation_enabled"] and row["key_state"] == ENABLED and nxt is not None:
                    period = row["rotation_period_days"] * DAY
                    version = row["current_version"]
                    # Catch up on every period that passed while the key was enabled.
                    for _ in range(64):
                        if nxt > now:
                            break
                        version += 1
                        self._add_material(conn, rec.key_id, version, nxt, "AUTOMATIC")
                        nxt += period
                    else:
                        nxt = now + period
                    conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(
                        current_version=version, next_rotation_date=nxt))
        self.invalidate(rec.key_id)
        if deleted:
            return None
        return self._get(rec.key_id, ctx, settle=False)

    def _delete_key_rows(self, conn, key_id: str) -> None:
        conn.execute(delete(T_GRANTS).where(T_GRANTS.c.key_id == key_id))
        conn.execute(delete(T_IMPORT).where(T_IMPORT.c.key_id == key_id))
        conn.execute(delete(T_ALIASES).where(T_ALIASES.c.target_key_id == key_id))
        conn.execute(delete(T_TAGS).where(T_TAGS.c.key_id == key_id))
        conn.execute(delete(T_MAT).where(T_MAT.c.key_id == key_id))
        conn.execute(delete(T_KEYS).where(T_KEYS.c.key_id == key_id))

    def _add_material(self, conn, key_id: str, version: int, created: float,
                      rotation_type: str | None, material: bytes | None = None) -> str:
        material = material if material is not None else os.urandom(32)
        material_id = os.urandom(32).hex()
        conn.execute(insert(T_MAT).values(
            key_id=key_id, version=version, material_id=material_id, created=created,
            rotation_type=rotation_type,
            sealed=self.store.seal(material, Store.material_aad(key_id, version))))
        return material_id

    # ------------------------------------------------------------------ resolving
    def _not_found_id(self, key_id: str, ctx: RequestContext) -> KMSError:
        return not_found(f"Key '{self.key_arn(key_id, ctx)}' does not exist")

    def _resolve(self, ref: str, ctx: RequestContext, operation: str, *,
                 alias_ok: bool) -> KeyRecord:
        """Find the key named by a key id, key ARN, alias name or alias ARN."""
        if not isinstance(ref, str) or not ref:
            raise validation("1 validation error detected: Value at 'keyId' failed to satisfy "
                             "constraint: Member must have length greater than or equal to 1")
        rec = self._keys.get(ref)  # fast path: a plain key id already cached
        if rec is not None and rec.account_id == self._account(ctx) and rec.region == self._region(ctx):
            if rec.next_event <= self._now():
                rec = self._settle(rec, ctx)
                if rec is None:
                    raise self._not_found_id(ref, ctx)
            return rec
        kind, name = "key", ref
        if ref.startswith("arn:"):
            m = _ARN_RE.match(ref)
            if not m:
                raise not_found(f"Invalid arn {ref}") if ":kms:" in ref else not_found(f"Invalid keyId '{ref}'")
            _, region, account, kind, rest = m.groups()
            if region != self._region(ctx):
                raise not_found(f"Invalid arn {region}")
            if account != self._account(ctx):
                # Cross-account use needs the other account's key policy; no other accounts here.
                raise not_found(f"Key '{ref}' does not exist" if kind == "key"
                                else f"Alias {ref} is not found.")
            name = rest if kind == "key" else "alias/" + rest
        elif ref.startswith("alias/"):
            kind = "alias"
        if kind == "alias":
            if not alias_ok:
                raise not_found(f"Invalid keyId '{ref}'")
            key_id = self._alias_target(name, ctx)
            if key_id is None:
                if name.startswith("alias/aws/") and operation in _CREATES_MANAGED:
                    service = name[len("alias/aws/"):]
                    if service in MANAGED_SERVICES:
                        key_id = self._create_managed_key(name, ctx)
                if key_id is None:
                    raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
            rec = self._get(key_id, ctx)
            if rec is None:
                raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
            return rec
        key_id = name.lower()
        if not _UUID_RE.match(key_id):
            raise not_found(f"Invalid keyId '{ref}'")
        rec = self._get(key_id, ctx)
        if rec is None:
            raise self._not_found_id(key_id, ctx)
        return rec

    def _alias_target(self, name: str, ctx: RequestContext) -> str | None:
        k = (self._account(ctx), self._region(ctx), name)
        target = self._aliases.get(k)
        if target is not None:
            return target
        with self.store.reading() as conn:
            target = conn.execute(select(T_ALIASES.c.target_key_id).where(and_(
                T_ALIASES.c.account_id == k[0], T_ALIASES.c.region == k[1],
                T_ALIASES.c.alias_name == name))).scalar()
        if target is not None:
            self._aliases[k] = target
        return target

    def _create_managed_key(self, alias_name: str, ctx: RequestContext) -> str:
        """Create the AWS-managed key for ``alias/aws/<service>`` exactly once."""
        account, region = self._account(ctx), self._region(ctx)
        service = alias_name[len("alias/aws/"):]
        now = self._now()
        try:
            with self.store.transaction() as conn:
                existing = conn.execute(select(T_ALIASES.c.target_key_id).where(and_(
                    T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                    T_ALIASES.c.alias_name == alias_name))).scalar()
                if existing is not None:
                    return existing
                key_id = str(uuid.uuid4())
                conn.execute(insert(T_KEYS).values(
                    key_id=key_id, account_id=account, region=region,
                    description=f"Default key that protects my {MANAGED_SERVICES[service]} when no other key is defined",
                    creation_date=now, key_state=ENABLED, key_manager="AWS", origin="AWS_KMS",
                    key_spec=SYMMETRIC, key_usage="ENCRYPT_DECRYPT", rotation_enabled=True,
                    rotation_period_days=DEFAULT_ROTATION_DAYS,
                    next_rotation_date=now + DEFAULT_ROTATION_DAYS * DAY, on_demand_rotations=0,
                    current_version=1, policy=managed_policy(account, region, service),
                    managed_alias=alias_name))
                self._add_material(conn, key_id, 1, now, None)
                conn.execute(insert(T_ALIASES).values(
                    account_id=account, region=region, alias_name=alias_name,
                    target_key_id=key_id, creation_date=now, last_updated=now))
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):  # lost a race on another node
                self.invalidate()
                existing = self._alias_target(alias_name, ctx)
                if existing is not None:
                    return existing
            raise
        self.invalidate()
        return key_id

    # ------------------------------------------------------------------ checks
    def _check_crypto_state(self, rec: KeyRecord) -> None:
        state = rec.key_state
        if state == ENABLED:
            return
        if state == DISABLED:
            raise KMSError("DisabledException", f"{rec.arn} is disabled.")
        if state == PENDING_DELETION:
            raise invalid_state(f"{rec.arn} is pending deletion.")
        if state == PENDING_IMPORT:
            raise invalid_state(f"{rec.arn} is pending import.")
        raise invalid_state(f"{rec.arn} is {state}.")

    def _check_not_pending_deletion(self, rec: KeyRecord) -> None:
        if rec.key_state == PENDING_DELETION:
            raise invalid_state(f"{rec.arn} is pending deletion.")

    def _deny_if_managed(self, rec: KeyRecord, operation: str, ctx: RequestContext) -> None:
        if rec.key_manager == "AWS" and operation in _MANAGED_DENIED:
            raise access_denied(self._principal(ctx), "kms:" + operation, rec.arn, explicit=False)

    def _authorize(self, operation: str, rec: KeyRecord | None, ctx: RequestContext,
                   params: dict) -> None:
        """Key policy + grants.  A client that names no principal is the trusted
        local application (docs/policies.md) and is not evaluated."""
        tokens = params.get("GrantTokens")
        if tokens:
            for t in tokens:
                if _parse_grant_token(t) is None:
                    raise KMSError("InvalidGrantTokenException", "The grant token is not valid.")
        if self.authorizer is not None:
            self.authorizer(operation, rec, ctx, params)
        principal = ctx.principal
        if principal is None or rec is None or operation in IAM_ONLY or operation in NOT_POLICY_CONTROLLED:
            return
        action = "kms:" + operation
        policy = parse_policy(rec.policy)
        account = self._account(ctx)
        if policy.has_conditions:
            decision = policy.decide(principal, account, action,
                                     self._condition_context(operation, rec, ctx, params))
        else:
            k = (rec.policy, principal, action)
            decision = self._decisions.get(k)
            if decision is None:
                decision = policy.decide(principal, account, action, {})
                if len(self._decisions) > 65536:
                    self._decisions.clear()
                self._decisions[k] = decision
        if decision == "Allow":
            return
        if decision == "Deny":
            raise access_denied(principal, action, rec.arn, explicit=True)
        if self._grant_allows(operation, rec, ctx, params):
            return
        raise access_denied(principal, action, rec.arn, explicit=False)

    def _condition_context(self, operation: str, rec: KeyRecord, ctx: RequestContext,
                           params: dict) -> dict:
        principal = ctx.principal or ""
        m = re.match(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):", principal)
        via = ctx.via_service
        if via is None and rec.managed_alias:
            # There are no AWS services here: the application itself plays the
            # service that owns an AWS-managed key (docs/policies.md).
            via = f"{rec.managed_alias[len('alias/aws/'):]}.{self._region(ctx)}.amazonaws.com"
        c: dict[str, Any] = {
            "kms:CallerAccount": m.group(1) if m else self._account(ctx),
            "aws:PrincipalArn": principal, "aws:PrincipalAccount": m.group(1) if m else None,
            "aws:SourceIp": ctx.source_ip, "kms:ViaService": via,
            "kms:KeySpec": rec.key_spec, "kms:KeyUsage": rec.key_usage, "kms:KeyOrigin": rec.origin,
            "kms:GrantIsForAWSResource": "true" if ctx.via_service else "false",
        }
        ec = params.get(_CONTEXT_PARAM.get(operation, "EncryptionContext"))
        if operation == "CreateGrant":
            cons = params.get("Constraints") or {}
            ec = cons.get("EncryptionContextEquals") or cons.get("EncryptionContextSubset")
            c["kms:GrantOperations"] = list(params.get("Operations") or [])
        if isinstance(ec, dict):
            for k, v in ec.items():
                c["kms:EncryptionContext:" + k] = v
            c["kms:EncryptionContextKeys"] = list(ec)
        if operation in ("Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                         "GenerateDataKeyWithoutPlaintext"):
            c["kms:EncryptionAlgorithm"] = SYMMETRIC
        ref = params.get("KeyId") or params.get("DestinationKeyId")
        if isinstance(ref, str) and "alias/" in ref:
            c["kms:RequestAlias"] = ref if ref.startswith("alias/") else "alias/" + ref.split(":alias/", 1)[-1]
        if operation == "ScheduleKeyDeletion":
            c["kms:ScheduleKeyDeletionPendingWindowInDays"] = params.get("PendingWindowInDays", 30)
        if operation == "EnableKeyRotation":
            c["kms:RotationPeriodInDays"] = params.get("RotationPeriodInDays", DEFAULT_ROTATION_DAYS)
        return {k: v for k, v in c.items() if v is not None}

    def _key_grants(self, key_id: str) -> list[dict]:
        grants = self._grants.get(key_id)
        if grants is None:
            with self.store.reading() as conn:
                rows = conn.execute(select(T_GRANTS).where(T_GRANTS.c.key_id == key_id)
                                    .order_by(T_GRANTS.c.creation_date, T_GRANTS.c.grant_id)).mappings().all()
            grants = [_grant_from_row(r) for r in rows]
            self._grants[key_id] = grants
        return grants

    def _grant_allows(self, operation: str, rec: KeyRecord, ctx: RequestContext, params: dict) -> bool:
        ec = params.get(_CONTEXT_PARAM.get(operation, "EncryptionContext")) or {}
        account = self._account(ctx)
        for g in self._key_grants(rec.key_id):
            if operation not in g["Operations"]:
                continue
            if not _principal_match(g["GranteePrincipal"], ctx.principal, account):
                continue
            if operation == "CreateGrant":
                if _grant_is_narrower(params, g):
                    return True
                continue
            cons = g.get("Constraints") or {}
            if operation not in ("DescribeKey", "RetireGrant") and cons:
                if "EncryptionContextEquals" in cons and ec != cons["EncryptionContextEquals"]:
                    continue
                if "EncryptionContextSubset" in cons and any(
                        ec.get(k) != v for k, v in cons["EncryptionContextSubset"].items()):
                    continue
            return True
        return False

    def check_lockout(self, policy_text: str, ctx: RequestContext, bypass: bool) -> None:
        """AWS's lockout safety check: the caller must be able to change the policy later."""
        if bypass or ctx.principal is None:
            return  # the trusted local application is never evaluated, so it cannot be locked out
        principal = ctx.principal
        if parse_policy(policy_text).decide(principal, self._account(ctx), "kms:PutKeyPolicy", {}) != "Allow":
            raise KMSError("MalformedPolicyDocumentException",
                           "The new key policy will not allow you to update the key policy in the future.")

    @staticmethod
    def _check_symmetric_algorithm(alg: str | None) -> None:
        if alg is not None and alg != SYMMETRIC:
            raise KMSError("InvalidKeyUsageException",
                           f"The encryption algorithm {alg} is not valid for this key.")

    @staticmethod
    def _context(params: dict, name: str = "EncryptionContext") -> bytes:
        ec = params.get(name)
        if ec is None:
            return b"\x00\x00"
        if not isinstance(ec, dict):
            raise validation(f"{name} must be a map of strings to strings.")
        return encode_context(ec)

    @staticmethod
    def _dry_run(params: dict) -> None:
        if params.get("DryRun"):
            raise KMSError("DryRunOperationException",
                           "The request would have succeeded, but the DryRun option is set.")

    @staticmethod
    def _no_recipient(params: dict) -> None:
        if params.get("Recipient") is not None:
            raise KMSError("UnsupportedOperationException",
                           "Recipient (Nitro Enclaves attestation) is not supported by this KMS engine.")

    def _crypto_key(self, ref: str, ctx: RequestContext, operation: str, params: dict) -> KeyRecord:
        rec = self._resolve(ref, ctx, operation, alias_ok=True)
        if rec.key_usage != "ENCRYPT_DECRYPT":
            raise KMSError("InvalidKeyUsageException",
                           f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")
        self._check_crypto_state(rec)
        self._authorize(operation, rec, ctx, params)
        return rec

    def _admin_key(self, ref: str, ctx: RequestContext, operation: str, params: dict) -> KeyRecord:
        rec = self._resolve(ref, ctx, operation, alias_ok=False)
        self._authorize(operation, rec, ctx, params)
        self._deny_if_managed(rec, operation, ctx)
        return rec

    # ------------------------------------------------------------------ metadata
    def _metadata(self, rec: KeyRecord) -> dict:
        md: dict[str, Any] = {
            "AWSAccountId": rec.account_id, "KeyId": rec.key_id, "Arn": rec.arn,
            "CreationDate": _ts(rec.creation_date), "Enabled": rec.key_state == ENABLED,
            "Description": rec.description, "KeyUsage": rec.key_usage, "KeyState": rec.key_state,
            "Origin": rec.origin, "KeyManager": rec.key_manager,
            "CustomerMasterKeySpec": rec.key_spec, "KeySpec": rec.key_spec,
            "EncryptionAlgorithms": [SYMMETRIC], "MultiRegion": False,
        }
        if rec.key_state == PENDING_DELETION:
            md["DeletionDate"] = _ts(rec.deletion_date)
            md["PendingDeletionWindowInDays"] = rec.pending_window_days
        if rec.origin == "EXTERNAL":
            md["ExpirationModel"] = rec.expiration_model or "KEY_MATERIAL_EXPIRES"
            if rec.valid_to is not None:
                md["ValidTo"] = _ts(rec.valid_to)
        if rec.current_version and rec.current_version in rec.material_ids:
            md["CurrentKeyMaterialId"] = rec.material_ids[rec.current_version]
        return md

    # ================================================================== operations
    # -- key lifecycle ---------------------------------------------------------------
    def _op_CreateKey(self, p: dict, ctx: RequestContext) -> dict:
        spec = p.get("KeySpec") or p.get("CustomerMasterKeySpec") or SYMMETRIC
        if p.get("KeySpec") and p.get("CustomerMasterKeySpec"):
            raise validation("You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
                             "CustomerMasterKeySpec is deprecated.")
        usage = p.get("KeyUsage") or "ENCRYPT_DECRYPT"
        if spec != SYMMETRIC:
            raise KMSError("UnsupportedOperationException",
                           f"KeySpec {spec} is not supported by this KMS engine; use SYMMETRIC_DEFAULT.")
        if usage != "ENCRYPT_DECRYPT":
            raise validation(f"KeyUsage {usage} is not compatible with KeySpec {spec}")
        origin = p.get("Origin") or "AWS_KMS"
        if p.get("CustomKeyStoreId") is not None or origin in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"):
            raise KMSError("CustomKeyStoreNotFoundException",
                           "Custom key stores are not supported by this KMS engine.")
        if origin not in ("AWS_KMS", "EXTERNAL"):
            raise validation(f"Origin {origin} is not valid.")
        if p.get("MultiRegion"):
            raise KMSError("UnsupportedOperationException",
                           "Multi-Region keys are not supported by this KMS engine.")
        account, region = self._account(ctx), self._region(ctx)
        policy = p.get("Policy")
        if policy is None:
            policy = default_policy(account)
        else:
            check_policy_document(policy)
        tag_list = self._check_tags(p.get("Tags") or [])
        self._authorize("CreateKey", None, ctx, p)
        if p.get("Policy") is not None:
            self.check_lockout(policy, ctx, bool(p.get("BypassPolicyLockoutSafetyCheck")))
        now = self._now()
        key_id = str(uuid.uuid4())
        external = origin == "EXTERNAL"
        with self.store.transaction() as conn:
            conn.execute(insert(T_KEYS).values(
                key_id=key_id, account_id=account, region=region,
                description=p.get("Description") or "", creation_date=now,
                key_state=PENDING_IMPORT if external else ENABLED, key_manager="CUSTOMER",
                origin=origin, key_spec=spec, key_usage=usage, rotation_enabled=False,
                on_demand_rotations=0, current_version=0 if external else 1, policy=policy))
            if not external:
                self._add_material(conn, key_id, 1, now, None)
            for t in tag_list:
                conn.execute(insert(T_TAGS).values(key_id=key_id, tag_key=t[0], tag_value=t[1]))
        self.invalidate(key_id)
        rec = self._get(key_id, ctx)
        return {"KeyMetadata": self._metadata(rec)}

    def _op_DescribeKey(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "DescribeKey", alias_ok=True)
        self._authorize("DescribeKey", rec, ctx, p)
        return {"KeyMetadata": self._metadata(rec)}

    def _op_UpdateKeyDescription(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "UpdateKeyDescription", p)
        self._check_not_pending_deletion(rec)
        self._write_key(rec, description=p["Description"])
        return {}

    def _write_key(self, rec: KeyRecord, **values) -> None:
        with self.store.transaction() as conn:
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(**values))
        self.invalidate(rec.key_id)

    def _op_EnableKey(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "EnableKey", p)
        if rec.key_state in (PENDING_IMPORT, PENDING_DELETION):
            self._check_crypto_state(rec)
        if rec.key_state == ENABLED:
            return {}
        now = self._now()
        values: dict[str, Any] = {"key_state": ENABLED}
        if rec.rotation_enabled and rec.next_rotation_date is not None and rec.next_rotation_date <= now:
            # No rotation happens while disabled; an overdue one happens on re-enable.
            with self.store.transaction() as conn:
                version = rec.current_version + 1
                self._add_material(conn, rec.key_id, version, now, "AUTOMATIC")
                conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(
                    key_state=ENABLED, current_version=version,
                    next_rotation_date=now + rec.rotation_period_days * DAY))
            self.invalidate(rec.key_id)
            return {}
        self._write_key(rec, **values)
        return {}

    def _op_DisableKey(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "DisableKey", p)
        if rec.key_state in (PENDING_IMPORT, PENDING_DELETION):
            self._check_crypto_state(rec)
        if rec.key_state != DISABLED:
            self._write_key(rec, key_state=DISABLED)
        return {}

    def _op_ScheduleKeyDeletion(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "ScheduleKeyDeletion", p)
        self._check_not_pending_deletion(rec)
        days = p.get("PendingWindowInDays")
        days = 30 if days is None else days  # 7–30 is enforced by the operation table
        deletion = self._now() + days * DAY
        self._write_key(rec, key_state=PENDING_DELETION, deletion_date=deletion,
                        pending_window_days=days)
        return {"KeyId": rec.arn, "DeletionDate": _ts(deletion), "KeyState": PENDING_DELETION,
                "PendingWindowInDays": days}

    def _op_CancelKeyDeletion(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "CancelKeyDeletion", p)
        if rec.key_state != PENDING_DELETION:
            raise invalid_state(f"{rec.arn} is not pending deletion.")
        state = PENDING_IMPORT if (rec.origin == "EXTERNAL" and not rec.aeads) else DISABLED
        self._write_key(rec, key_state=state, deletion_date=None, pending_window_days=None)
        return {"KeyId": rec.arn}

    def _op_ListKeys(self, p: dict, ctx: RequestContext) -> dict:
        self._authorize("ListKeys", None, ctx, p)
        self._purge_expired(ctx)
        limit = self._limit(p, 100, 1000)
        after = self._marker(p, "keys")
        q = (select(T_KEYS.c.key_id).where(and_(T_KEYS.c.account_id == self._account(ctx),
                                               T_KEYS.c.region == self._region(ctx)))
             .order_by(T_KEYS.c.key_id).limit(limit + 1))
        if after is not None:
            q = q.where(T_KEYS.c.key_id > after)
        with self.store.reading() as conn:
            ids = list(conn.execute(q).scalars())
        page, more = ids[:limit], len(ids) > limit
        out: dict[str, Any] = {"Keys": [{"KeyId": k, "KeyArn": self.key_arn(k, ctx)} for k in page],
                               "Truncated": more}
        if more:
            out["NextMarker"] = self._make_marker(page[-1], "keys")
        return out

    def _purge_expired(self, ctx: RequestContext) -> None:
        now = self._now()
        with self.store.reading() as conn:
            due = list(conn.execute(select(T_KEYS.c.key_id).where(and_(
                T_KEYS.c.key_state == PENDING_DELETION, T_KEYS.c.deletion_date <= now))).scalars())
        if not due:
            return
        with self.store.transaction() as conn:
            for key_id in due:
                still = conn.execute(select(T_KEYS.c.deletion_date).where(and_(
                    T_KEYS.c.key_id == key_id, T_KEYS.c.key_state == PENDING_DELETION))).scalar()
                if still is not None and still <= now:
                    self._delete_key_rows(conn, key_id)
        self.invalidate()

    # -- pagination ------------------------------------------------------------------
    @staticmethod
    def _limit(p: dict, default: int, maximum: int) -> int:
        # The per-operation range (e.g. 1–100 for ListAliases) is enforced by the operation table.
        limit = p.get("Limit")
        return default if limit is None else limit

    @staticmethod
    def _make_marker(last: str, kind: str) -> str:
        # Opaque to callers; names the list it belongs to so it cannot be replayed on another.
        return base64.urlsafe_b64encode(json.dumps({"list": kind, "after": last}).encode()).decode()

    @staticmethod
    def _marker(p: dict, kind: str) -> str | None:
        marker = p.get("Marker")
        if marker is None:
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(marker.encode()))
            after = doc["after"]
            if not isinstance(after, str) or doc.get("list") != kind:
                raise ValueError
            return after
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeError):
            raise KMSError("InvalidMarkerException",
                           "The marker that specifies where pagination should next begin is not valid.") from None

    # -- aliases ---------------------------------------------------------------------
    def _check_alias_name(self, name: str, ctx: RequestContext) -> None:
        if not isinstance(name, str) or not name.startswith("alias/"):
            raise validation('Alias must start with the prefix "alias/". Please see '
                             "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
        if not _ALIAS_RE.match(name) or len(name) > 256:
            raise validation(f"1 validation error detected: Value '{name}' at 'aliasName' failed to "
                             "satisfy constraint: Member must satisfy regular expression pattern: "
                             "^[a-zA-Z0-9:/_-]+$")
        if name == "alias/" or name.endswith("/"):
            raise KMSError("InvalidAliasNameException", f"Alias name {name} is not valid.")
        if name.startswith("alias/aws/") or name == "alias/aws":
            raise KMSError("InvalidAliasNameException",
                           "Alias names that begin with alias/aws/ are reserved for AWS managed keys.")

    def _alias_target_key(self, ref: str, ctx: RequestContext, operation: str, p: dict) -> KeyRecord:
        rec = self._resolve(ref, ctx, operation, alias_ok=False)
        self._authorize(operation, rec, ctx, p)
        if rec.key_manager == "AWS":  # an AWS-managed key can be no alias's target
            raise access_denied(self._principal(ctx), "kms:" + operation, rec.arn, explicit=False)
        self._check_not_pending_deletion(rec)
        return rec

    def _op_CreateAlias(self, p: dict, ctx: RequestContext) -> dict:
        name = p["AliasName"]
        self._check_alias_name(name, ctx)
        rec = self._alias_target_key(p["TargetKeyId"], ctx, "CreateAlias", p)
        account, region, now = self._account(ctx), self._region(ctx), self._now()
        try:
            with self.store.transaction() as conn:
                exists = conn.execute(select(T_ALIASES.c.alias_name).where(and_(
                    T_ALIASES.c.account_id == account, T_ALIASES.c.region == region,
                    T_ALIASES.c.alias_name == name))).first()
                if exists:
                    raise KMSError("AlreadyExistsException",
                                   f"An alias with the name {self.alias_arn(name, ctx)} already exists")
                count = conn.execute(select(func.count()).select_from(T_ALIASES).where(
                    T_ALIASES.c.target_key_id == rec.key_id)).scalar_one()
                if count >= MAX_ALIASES_PER_KEY:
                    raise KMSError("LimitExceededException",
                                   f"The key {rec.arn} already has the maximum of {MAX_ALIASES_PER_KEY} aliases.")
                conn.execute(insert(T_ALIASES).values(
                    account_id=account, region=region, alias_name=name, target_key_id=rec.key_id,
                    creation_date=now, last_updated=now))
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):
                raise KMSError("AlreadyExistsException",
                               f"An alias with the name {self.alias_arn(name, ctx)} already exists") from None
            raise
        self.invalidate()
        return {}

    def _op_UpdateAlias(self, p: dict, ctx: RequestContext) -> dict:
        name = p["AliasName"]
        self._check_alias_name(name, ctx)
        current = self._alias_target(name, ctx)
        if current is None:
            raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
        rec = self._alias_target_key(p["TargetKeyId"], ctx, "UpdateAlias", p)
        old = self._get(current, ctx, settle=False)
        if old is not None and (old.key_spec != rec.key_spec or old.key_usage != rec.key_usage):
            raise validation(f"Alias {self.alias_arn(name, ctx)} cannot be changed from a "
                             f"{old.key_spec}/{old.key_usage} key to a {rec.key_spec}/{rec.key_usage} key: "
                             "the new target must have the same key spec and key usage.")
        with self.store.transaction() as conn:
            conn.execute(update(T_ALIASES).where(and_(
                T_ALIASES.c.account_id == self._account(ctx), T_ALIASES.c.region == self._region(ctx),
                T_ALIASES.c.alias_name == name)).values(target_key_id=rec.key_id,
                                                         last_updated=self._now()))
        self.invalidate()
        return {}

    def _op_DeleteAlias(self, p: dict, ctx: RequestContext) -> dict:
        name = p["AliasName"]
        self._check_alias_name(name, ctx)
        target = self._alias_target(name, ctx)
        if target is None:
            raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
        rec = self._get(target, ctx, settle=False)
        self._authorize("DeleteAlias", rec, ctx, p)
        with self.store.transaction() as conn:
            conn.execute(delete(T_ALIASES).where(and_(
                T_ALIASES.c.account_id == self._account(ctx), T_ALIASES.c.region == self._region(ctx),
                T_ALIASES.c.alias_name == name)))
        self.invalidate()
        return {}

    def _op_ListAliases(self, p: dict, ctx: RequestContext) -> dict:
        self._purge_expired(ctx)
        limit = self._limit(p, 50, 100)
        after = self._marker(p, "aliases")
        account, region = self._account(ctx), self._region(ctx)
        q = select(T_ALIASES).where(and_(T_ALIASES.c.account_id == account,
                                         T_ALIASES.c.region == region))
        key_filter = p.get("KeyId")
        if key_filter is not None:
            rec = self._resolve(key_filter, ctx, "ListAliases", alias_ok=False)
            self._authorize("ListAliases", rec, ctx, p)
            q = q.where(T_ALIASES.c.target_key_id == rec.key_id)
        else:
            self._authorize("ListAliases", None, ctx, p)
        with self.store.reading() as conn:
            rows = {r["alias_name"]: r for r in conn.execute(q).mappings()}
        entries = []
        for name, r in rows.items():
            entries.append({"AliasName": name, "AliasArn": self.alias_arn(name, ctx),
                            "TargetKeyId": r["target_key_id"],
                            "CreationDate": _ts(r["creation_date"]),
                            "LastUpdatedDate": _ts(r["last_updated"])})
        if key_filter is None:  # predefined AWS aliases exist before their keys do
            for service in MANAGED_SERVICES:
                name = f"alias/aws/{service}"
                if name not in rows:
                    entries.append({"AliasName": name, "AliasArn": self.alias_arn(name, ctx)})
        entries.sort(key=lambda e: e["AliasName"])
        if after is not None:
            entries = [e for e in entries if e["AliasName"] > after]
        page, more = entries[:limit], len(entries) > limit
        out: dict[str, Any] = {"Aliases": page, "Truncated": more}
        if more:
            out["NextMarker"] = self._make_marker(page[-1]["AliasName"], "aliases")
        return out

    # -- cryptography ----------------------------------------------------------------
    def _op_Encrypt(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._crypto_key(p["KeyId"], ctx, "Encrypt", p)
        self._check_symmetric_algorithm(p.get("EncryptionAlgorithm"))
        plaintext = p["Plaintext"]
        self._dry_run(p)
        v = rec.current_version
        return {"CiphertextBlob": blobfmt.seal(rec.aeads[v], rec.id_bytes, v, bytes(plaintext),
                                               self._context(p)),
                "KeyId": rec.arn, "EncryptionAlgorithm": SYMMETRIC}

    def _open_blob(self, blob: Any, ctx: RequestContext, operation: str, p: dict,
                   key_param: str, context_param: str) -> tuple[KeyRecord, bytes, int]:
        header = blobfmt.parse_header(bytes(blob))
        rec = self._get(header.key_id, ctx)
        if rec is None:
            raise invalid_ciphertext()
        named = p.get(key_param)
        if named is not None:
            wanted = self._resolve(named, ctx, operation, alias_ok=True)
            if wanted.key_id != rec.key_id:
                raise KMSError("IncorrectKeyException",
                               "The key ID in the request does not identify a CMK that can perform this operation.")
        self._check_crypto_state(rec)
        self._authorize(operation, rec, ctx, p)
        aead = rec.aeads.get(header.material_version)
        if aead is None:
            raise invalid_ciphertext()
        return rec, blobfmt.open_(aead, header, bytes(blob), self._context(p, context_param)), \
            header.material_version

    def _op_Decrypt(self, p: dict, ctx: RequestContext) -> dict:
        self._no_recipient(p)
        self._check_symmetric_algorithm(p.get("EncryptionAlgorithm"))
        if "CiphertextBlob" not in p:
            raise validation("CiphertextBlob is required.")
        rec, plaintext, version = self._open_blob(p["CiphertextBlob"], ctx, "Decrypt", p,
                                                  "KeyId", "EncryptionContext")
        self._dry_run(p)
        return {"KeyId": rec.arn, "Plaintext": plaintext, "EncryptionAlgorithm": SYMMETRIC,
                "KeyMaterialId": rec.material_ids[version]}

    def _op_ReEncrypt(self, p: dict, ctx: RequestContext) -> dict:
        self._check_symmetric_algorithm(p.get("SourceEncryptionAlgorithm"))
        self._check_symmetric_algorithm(p.get("DestinationEncryptionAlgorithm"))
        if "CiphertextBlob" not in p:
            raise validation("CiphertextBlob is required.")
        src, plaintext, version = self._open_blob(p["CiphertextBlob"], ctx, "ReEncryptFrom", p,
                                                  "SourceKeyId", "SourceEncryptionContext")
        dst = self._crypto_key(p["DestinationKeyId"], ctx, "ReEncryptTo", p)
        self._dry_run(p)
        v = dst.current_version
        blob = blobfmt.seal(dst.aeads[v], dst.id_bytes, v, plaintext,
                            self._context(p, "DestinationEncryptionContext"))
        return {"CiphertextBlob": blob, "SourceKeyId": src.arn, "KeyId": dst.arn,
                "SourceEncryptionAlgorithm": SYMMETRIC, "DestinationEncryptionAlgorithm": SYMMETRIC,
                "SourceKeyMaterialId": src.material_ids[version],
                "DestinationKeyMaterialId": dst.material_ids[v]}

    @staticmethod
    def _data_key_length(p: dict) -> int:
        # Exactly one of the two, the enum and 1–1024 are enforced by the operation table.
        spec = p.get("KeySpec")
        if spec is not None:
            return 32 if spec == "AES_256" else 16
        return p["NumberOfBytes"]

    def _generate(self, p: dict, ctx: RequestContext, operation: str) -> tuple[KeyRecord, bytes, bytes, int]:
        rec = self._crypto_key(p["KeyId"], ctx, operation, p)
        n = self._data_key_length(p)
        self._dry_run(p)
        plaintext = os.urandom(n)
        v = rec.current_version
        return rec, plaintext, blobfmt.seal(rec.aeads[v], rec.id_bytes, v, plaintext, self._context(p)), v

    def _op_GenerateDataKey(self, p: dict, ctx: RequestContext) -> dict:
        self._no_recipient(p)
        rec, plaintext, blob, v = self._generate(p, ctx, "GenerateDataKey")
        return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": rec.arn,
                "KeyMaterialId": rec.material_ids[v]}

    def _op_GenerateDataKeyWithoutPlaintext(self, p: dict, ctx: RequestContext) -> dict:
        rec, _, blob, v = self._generate(p, ctx, "GenerateDataKeyWithoutPlaintext")
        return {"CiphertextBlob": blob, "KeyId": rec.arn, "KeyMaterialId": rec.material_ids[v]}

    def _op_GenerateRandom(self, p: dict, ctx: RequestContext) -> dict:
        self._no_recipient(p)
        if p.get("CustomKeyStoreId") is not None:
            raise KMSError("CustomKeyStoreNotFoundException",
                           "Custom key stores are not supported by this KMS engine.")
        n = p["NumberOfBytes"]  # required and 1–1024: the operation table
        self._authorize("GenerateRandom", None, ctx, p)
        return {"Plaintext": os.urandom(n)}

    # -- rotation ----------------------------------------------------------------------
    def _rotation_key(self, p: dict, ctx: RequestContext, operation: str) -> KeyRecord:
        rec = self._admin_key(p["KeyId"], ctx, operation, p)
        if rec.key_state == DISABLED:
            raise KMSError("DisabledException", f"{rec.arn} is disabled.")
        self._check_not_pending_deletion(rec)
        if rec.origin == "EXTERNAL" and operation != "RotateKeyOnDemand":
            raise KMSError("UnsupportedOperationException",
                           f"{rec.arn} origin is EXTERNAL which is not valid for this operation.")
        if rec.key_state == PENDING_IMPORT:
            raise invalid_state(f"{rec.arn} is pending import.")
        if rec.key_spec != SYMMETRIC:
            raise KMSError("UnsupportedOperationException",
                           f"{rec.arn} key spec {rec.key_spec} is not valid for this operation.")
        return rec

    def _op_EnableKeyRotation(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._rotation_key(p, ctx, "EnableKeyRotation")
        period = p.get("RotationPeriodInDays")
        period = DEFAULT_ROTATION_DAYS if period is None else period  # 90–2560: the operation table
        now = self._now()
        if rec.rotation_enabled and rec.next_rotation_date is not None and rec.rotation_period_days:
            # Re-enabling changes the period; the schedule keeps its starting point.
            start = rec.next_rotation_date - rec.rotation_period_days * DAY
            nxt = max(start + period * DAY, now)
        else:
            nxt = now + period * DAY
        self._write_key(rec, rotation_enabled=True, rotation_period_days=period, next_rotation_date=nxt)
        return {}

    def _op_DisableKeyRotation(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._rotation_key(p, ctx, "DisableKeyRotation")
        self._write_key(rec, rotation_enabled=False, next_rotation_date=None)
        return {}

    def _op_GetKeyRotationStatus(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "GetKeyRotationStatus", alias_ok=False)
        self._authorize("GetKeyRotationStatus", rec, ctx, p)
        if rec.origin == "EXTERNAL":
            raise KMSError("UnsupportedOperationException",
                           f"{rec.arn} origin is EXTERNAL which is not valid for this operation.")
        enabled = rec.rotation_enabled and rec.key_state != PENDING_DELETION
        out: dict[str, Any] = {"KeyRotationEnabled": enabled, "KeyId": rec.arn}
        if enabled:
            out["RotationPeriodInDays"] = rec.rotation_period_days
            if rec.next_rotation_date is not None:
                out["NextRotationDate"] = _ts(rec.next_rotation_date)
        last_on_demand = self._last_on_demand(rec.key_id)
        if last_on_demand is not None:
            out["OnDemandRotationStartDate"] = _ts(last_on_demand)
        return out

    def _last_on_demand(self, key_id: str) -> float | None:
        with self.store.reading() as conn:
            return conn.execute(select(func.max(T_MAT.c.created)).where(and_(
                T_MAT.c.key_id == key_id, T_MAT.c.rotation_type == "ON_DEMAND"))).scalar()

    def _op_RotateKeyOnDemand(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._rotation_key(p, ctx, "RotateKeyOnDemand")
        if rec.origin == "EXTERNAL":
            raise invalid_state(f"No available key material pending rotation for the key: {rec.arn}.")
        with self.store.transaction() as conn:
            row = conn.execute(select(T_KEYS.c.on_demand_rotations, T_KEYS.c.current_version)
                               .where(T_KEYS.c.key_id == rec.key_id)).first()
            if row.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
                raise KMSError("LimitExceededException",
                               f"The on-demand rotations limit has been reached for the given key: "
                               f"{rec.arn} ({MAX_ON_DEMAND_ROTATIONS} rotations).")
            version = row.current_version + 1
            self._add_material(conn, rec.key_id, version, self._now(), "ON_DEMAND")
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(
                current_version=version, on_demand_rotations=row.on_demand_rotations + 1))
        self.invalidate(rec.key_id)
        return {"KeyId": rec.key_id}

    def _op_ListKeyRotations(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "ListKeyRotations", alias_ok=False)
        self._authorize("ListKeyRotations", rec, ctx, p)
        include = p.get("IncludeKeyMaterial") or "ROTATIONS_ONLY"
        if include not in ("ROTATIONS_ONLY", "ALL_KEY_MATERIAL"):
            raise validation(f"1 validation error detected: Value '{include}' at 'includeKeyMaterial' "
                             "failed to satisfy constraint: Member must satisfy enum value set: "
                             "[ALL_KEY_MATERIAL, ROTATIONS_ONLY]")
        limit = self._limit(p, 100, 1000)
        after = self._marker(p, "rotations:" + rec.key_id)
        with self.store.reading() as conn:
            rows = conn.execute(select(T_MAT.c.version, T_MAT.c.material_id, T_MAT.c.created,
                                       T_MAT.c.rotation_type)
                                .where(T_MAT.c.key_id == rec.key_id)
                                .order_by(T_MAT.c.version)).all()
        entries = []
        for r in rows:
            if r.rotation_type is None and include == "ROTATIONS_ONLY":
                continue
            e = {"KeyId": rec.key_id, "KeyMaterialId": r.material_id,
                 "KeyMaterialState": "CURRENT" if r.version == rec.current_version else "NON_CURRENT",
                 "RotationDate": _ts(r.created), "_v": f"{r.version:010d}"}
            if r.rotation_type is not None:
                e["RotationType"] = r.rotation_type
            entries.append(e)
        if after is not None:
            entries = [e for e in entries if e["_v"] > after]
        page, more = entries[:limit], len(entries) > limit
        out: dict[str, Any] = {"Truncated": more}
        if more:
            out["NextMarker"] = self._make_marker(page[-1]["_v"], "rotations:" + rec.key_id)
        for e in page:
            del e["_v"]
        out["Rotations"] = page
        return out

    # -- tags --------------------------------------------------------------------------
    @staticmethod
    def _check_tags(tag_list: list) -> list[tuple[str, str]]:
        out, seen = [], set()
        for t in tag_list:
            if not isinstance(t, dict) or "TagKey" not in t or "TagValue" not in t:
                raise validation("Each tag must have a TagKey and a TagValue.")
            k, v = t["TagKey"], t["TagValue"]  # lengths: the operation table
            if k.startswith("aws:"):
                raise KMSError("TagException", "Tags beginning with aws: are reserved")
            if k in seen:
                raise KMSError("TagException", "Duplicate tag keys")
            seen.add(k)
            out.append((k, v))
        if len(out) > MAX_TAGS:
            raise KMSError("TagException", "Too many tags")
        return out

    def _op_TagResource(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "TagResource", p)
        self._check_not_pending_deletion(rec)
        new = self._check_tags(p["Tags"])
        with self.store.transaction() as conn:
            existing = {r.tag_key for r in conn.execute(
                select(T_TAGS.c.tag_key).where(T_TAGS.c.key_id == rec.key_id))}
            if len(existing | {k for k, _ in new}) > MAX_TAGS:
                raise KMSError("TagException", "Too many tags")
            for k, v in new:
                if k in existing:
                    conn.execute(update(T_TAGS).where(and_(T_TAGS.c.key_id == rec.key_id,
                                                           T_TAGS.c.tag_key == k)).values(tag_value=v))
                else:
                    conn.execute(insert(T_TAGS).values(key_id=rec.key_id, tag_key=k, tag_value=v))
        return {}

    def _op_UntagResource(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "UntagResource", p)
        self._check_not_pending_deletion(rec)
        keys = p["TagKeys"]
        for k in keys:
            if isinstance(k, str) and k.startswith("aws:"):
                raise KMSError("TagException", "Tags beginning with aws: are reserved")
        with self.store.transaction() as conn:
            conn.execute(delete(T_TAGS).where(and_(T_TAGS.c.key_id == rec.key_id,
                                                   T_TAGS.c.tag_key.in_(list(keys)))))
        return {}

    def _op_ListResourceTags(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "ListResourceTags", alias_ok=False)
        self._authorize("ListResourceTags", rec, ctx, p)
        limit = self._limit(p, 50, 50)
        after = self._marker(p, "tags:" + rec.key_id)
        q = select(T_TAGS.c.tag_key, T_TAGS.c.tag_value).where(T_TAGS.c.key_id == rec.key_id) \
            .order_by(T_TAGS.c.tag_key).limit(limit + 1)
        if after is not None:
            q = q.where(T_TAGS.c.tag_key > after)
        with self.store.reading() as conn:
            rows = conn.execute(q).all()
        page, more = rows[:limit], len(rows) > limit
        out: dict[str, Any] = {"Tags": [{"TagKey": r.tag_key, "TagValue": r.tag_value} for r in page],
                               "Truncated": more}
        if more:
            out["NextMarker"] = self._make_marker(page[-1].tag_key, "tags:" + rec.key_id)
        return out

    # -- key policies (storage; evaluation is the authorizer's) ------------------------------
    def _op_GetKeyPolicy(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "GetKeyPolicy", alias_ok=False)
        self._authorize("GetKeyPolicy", rec, ctx, p)
        name = p.get("PolicyName") or "default"
        if name != "default":
            raise not_found("No such policy exists")
        return {"Policy": rec.policy, "PolicyName": "default"}

    def _op_ListKeyPolicies(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "ListKeyPolicies", alias_ok=False)
        self._authorize("ListKeyPolicies", rec, ctx, p)
        self._limit(p, 100, 1000)
        self._marker(p, "policies")
        return {"PolicyNames": ["default"], "Truncated": False}

    def _op_PutKeyPolicy(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._admin_key(p["KeyId"], ctx, "PutKeyPolicy", p)
        name = p.get("PolicyName") or "default"
        if name != "default":
            raise not_found("No such policy exists")
        check_policy_document(p["Policy"])
        self.check_lockout(p["Policy"], ctx, bool(p.get("BypassPolicyLockoutSafetyCheck")))
        self._write_key(rec, policy=p["Policy"])
        return {}

    # -- grants ------------------------------------------------------------------------
    _GRANT_OPS_SYMMETRIC = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                            "ReEncryptFrom", "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey",
                            "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"}
    _GRANT_OPS_ALL = _GRANT_OPS_SYMMETRIC | {"Sign", "Verify", "GetPublicKey", "GenerateMac",
                                             "VerifyMac", "DeriveSharedSecret"}

    def _op_CreateGrant(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "CreateGrant", alias_ok=False)
        self._check_crypto_state(rec)
        ops = list(p["Operations"])
        if not ops:
            raise validation("1 validation error detected: Value '[]' at 'operations' failed to "
                             "satisfy constraint: Member must have length greater than or equal to 1")
        for op in ops:
            if op not in self._GRANT_OPS_ALL:
                raise validation(f"1 validation error detected: Value '[{', '.join(ops)}]' at 'operations' "
                                 "failed to satisfy constraint: Member must satisfy constraint: "
                                 f"[Member must satisfy enum value set: [{', '.join(sorted(self._GRANT_OPS_ALL))}]]")
            if op not in self._GRANT_OPS_SYMMETRIC:
                raise validation(f"Grant operation {op} is not valid for a {rec.key_spec} key.")
        cons = p.get("Constraints")
        if cons:
            if set(cons) - {"EncryptionContextSubset", "EncryptionContextEquals"}:
                raise validation("Constraints may only hold EncryptionContextSubset or EncryptionContextEquals.")
            for name, pairs in cons.items():
                if not isinstance(pairs, dict) or len(pairs) > 8 or any(
                        not isinstance(v, str) or len(v) > 384 for v in pairs.values()):
                    raise validation(f"{name} must hold at most 8 pairs with values of at most 384 characters.")
        grantee = p["GranteePrincipal"]
        self._check_principal(grantee, "granteePrincipal")
        retiring = p.get("RetiringPrincipal")
        if retiring is not None:
            self._check_principal(retiring, "retiringPrincipal")
        name = p.get("Name")
        if name is not None and not re.fullmatch(r"[a-zA-Z0-9:/_-]{1,256}", name):
            raise validation(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                             "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")
        self._authorize("CreateGrant", rec, ctx, p)
        self._dry_run(p)
        wanted = {"GranteePrincipal": grantee, "RetiringPrincipal": retiring,
                  "Operations": sorted(ops), "Constraints": cons or None}
        with self.store.transaction() as conn:
            if name is not None:
                for r in conn.execute(select(T_GRANTS).where(and_(
                        T_GRANTS.c.key_id == rec.key_id, T_GRANTS.c.name == name))).mappings():
                    g = _grant_from_row(r)
                    same = {"GranteePrincipal": g["GranteePrincipal"],
                            "RetiringPrincipal": g.get("RetiringPrincipal"),
                            "Operations": sorted(g["Operations"]), "Constraints": g.get("Constraints")}
                    if same == wanted:  # idempotent per key and name: same grant, new token
                        return {"GrantToken": _make_grant_token(g["GrantId"]), "GrantId": g["GrantId"]}
            count = conn.execute(select(func.count()).select_from(T_GRANTS)
                                 .where(T_GRANTS.c.key_id == rec.key_id)).scalar_one()
            if count >= 50000:
                raise KMSError("LimitExceededException", f"The key {rec.arn} already has 50000 grants.")
            grant_id = os.urandom(32).hex()
            conn.execute(insert(T_GRANTS).values(
                grant_id=grant_id, key_id=rec.key_id, name=name, grantee_principal=grantee,
                retiring_principal=retiring, operations=json.dumps(ops),
                constraints=json.dumps(cons) if cons else None,
                issuing_account=self._account(ctx), creation_date=self._now()))
        self.invalidate(rec.key_id)
        return {"GrantToken": _make_grant_token(grant_id), "GrantId": grant_id}

    @staticmethod
    def _check_principal(value: Any, field: str) -> None:
        if not isinstance(value, str) or not re.fullmatch(r"[\w+=,.@:/-]{1,256}", value):
            raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
                             "constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$")

    def _grant_entry(self, g: dict, rec_arn: str) -> dict:
        out = {k: v for k, v in g.items() if v is not None}
        out["KeyId"] = rec_arn
        out["CreationDate"] = _ts(out["CreationDate"])
        return out

    def _page(self, entries: list[dict], sort_key: str, p: dict, default: int, maximum: int,
              list_name: str, kind: str) -> dict:
        limit = self._limit(p, default, maximum)
        after = self._marker(p, kind)
        if after is not None:
            entries = [e for e in entries if e[sort_key] > after]
        page, more = entries[:limit], len(entries) > limit
        out: dict[str, Any] = {list_name: page, "Truncated": more}
        if more:
            out["NextMarker"] = self._make_marker(page[-1][sort_key], kind)
        return out

    def _op_ListGrants(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._resolve(p["KeyId"], ctx, "ListGrants", alias_ok=False)
        self._authorize("ListGrants", rec, ctx, p)
        grants = sorted(self._key_grants(rec.key_id), key=lambda g: g["GrantId"])
        if p.get("GrantId") is not None:
            grants = [g for g in grants if g["GrantId"] == p["GrantId"]]
        if p.get("GranteePrincipal") is not None:
            grants = [g for g in grants if g["GranteePrincipal"] == p["GranteePrincipal"]]
        return self._page([self._grant_entry(g, rec.arn) for g in grants], "GrantId", p, 50, 100, "Grants",
                          "grants:" + rec.key_id)

    def _op_ListRetirableGrants(self, p: dict, ctx: RequestContext) -> dict:
        retiring = p["RetiringPrincipal"]
        self._check_principal(retiring, "retiringPrincipal")
        with self.store.reading() as conn:
            rows = conn.execute(select(T_GRANTS, T_KEYS.c.region, T_KEYS.c.account_id)
                                .join(T_KEYS, T_KEYS.c.key_id == T_GRANTS.c.key_id)
                                .where(T_GRANTS.c.retiring_principal == retiring)
                                .order_by(T_GRANTS.c.grant_id)).mappings().all()
        entries = []
        for r in rows:
            arn = f"arn:aws:kms:{r['region']}:{r['account_id']}:key/{r['key_id']}"
            entries.append(self._grant_entry(_grant_from_row(r), arn))
        return self._page(entries, "GrantId", p, 50, 100, "Grants", "retirable:" + retiring)

    def _find_grant(self, p: dict, ctx: RequestContext, operation: str) -> tuple[KeyRecord, dict]:
        token, grant_id, key_ref = p.get("GrantToken"), p.get("GrantId"), p.get("KeyId")
        if token is not None:
            parsed = _parse_grant_token(token)
            if parsed is None:
                raise KMSError("InvalidGrantTokenException", "The grant token is not valid.")
            if grant_id is not None and grant_id != parsed:
                raise KMSError("InvalidGrantIdException", "The grant ID does not match the grant token.")
            grant_id = parsed
        if grant_id is None or (operation == "RevokeGrant" and key_ref is None):
            raise validation("Specify a GrantToken, or a KeyId and a GrantId.")
        if not re.fullmatch(r"[0-9a-f]{64}", grant_id):
            raise KMSError("InvalidGrantIdException", "The grant ID is not valid.")
        with self.store.reading() as conn:
            row = conn.execute(select(T_GRANTS).where(T_GRANTS.c.grant_id == grant_id)).mappings().first()
        if key_ref is not None:
            rec = self._resolve(key_ref, ctx, operation, alias_ok=False)
            if row is not None and row["key_id"] != rec.key_id:
                row = None
        elif row is not None:
            rec = self._get(row["key_id"], ctx)
            if rec is None:
                row = None
        if row is None:
            raise not_found("Grant ID not found" if token is None else "The grant token does not identify a grant.")
        return rec, _grant_from_row(row)

    def _delete_grant(self, rec: KeyRecord, grant_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(T_GRANTS).where(T_GRANTS.c.grant_id == grant_id))
        self.invalidate(rec.key_id)

    def _op_RetireGrant(self, p: dict, ctx: RequestContext) -> dict:
        rec, g = self._find_grant(p, ctx, "RetireGrant")
        self._authorize("RetireGrant", rec, ctx, p)
        principal = ctx.principal
        if principal is not None:
            account_root = f"arn:aws:iam::{self._account(ctx)}:root"
            ok = (principal == account_root
                  or (g.get("RetiringPrincipal") and _principal_match(g["RetiringPrincipal"], principal, self._account(ctx)))
                  or ("RetireGrant" in g["Operations"]
                      and _principal_match(g["GranteePrincipal"], principal, self._account(ctx))))
            if not ok:
                raise access_denied(principal, "kms:RetireGrant", rec.arn, explicit=False)
        self._dry_run(p)
        self._delete_grant(rec, g["GrantId"])
        return {}

    def _op_RevokeGrant(self, p: dict, ctx: RequestContext) -> dict:
        rec, g = self._find_grant(p, ctx, "RevokeGrant")
        self._authorize("RevokeGrant", rec, ctx, p)
        self._deny_if_managed(rec, "RevokeGrant", ctx)
        self._dry_run(p)
        self._delete_grant(rec, g["GrantId"])
        return {}

    # -- imported key material (BYOK) ----------------------------------------------------
    _WRAPPING = {"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"}
    _WRAPPING_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}

    def _external_key(self, p: dict, ctx: RequestContext, operation: str) -> KeyRecord:
        rec = self._admin_key(p["KeyId"], ctx, operation, p)
        if rec.origin != "EXTERNAL":
            raise KMSError("UnsupportedOperationException",
                           f"{rec.arn} origin is {rec.origin} which is not valid for this operation.")
        return rec

    def _op_GetParametersForImport(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._external_key(p, ctx, "GetParametersForImport")
        self._check_not_pending_deletion(rec)
        alg, spec = p["WrappingAlgorithm"], p["WrappingKeySpec"]
        if alg not in self._WRAPPING:
            raise validation(f"1 validation error detected: Value '{alg}' at 'wrappingAlgorithm' failed to "
                             "satisfy constraint: Member must satisfy enum value set: "
                             f"[{', '.join(sorted(self._WRAPPING))}]")
        if spec not in self._WRAPPING_BITS:
            raise KMSError("UnsupportedOperationException", f"WrappingKeySpec {spec} is not supported.")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        private = rsa.generate_private_key(public_exponent=65537, key_size=self._WRAPPING_BITS[spec])
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        public = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        token_id = os.urandom(32).hex()
        valid_to = self._now() + DAY
        with self.store.transaction() as conn:
            conn.execute(insert(T_IMPORT).values(
                token_id=token_id, key_id=rec.key_id, wrapping_algorithm=alg, wrapping_key_spec=spec,
                private_key_sealed=self.store.seal(der, f"import|{rec.key_id}|{token_id}".encode()),
                valid_to=valid_to))
        token = _IMPORT_TOKEN_PREFIX + bytes.fromhex(token_id) + uuid.UUID(rec.key_id).bytes
        return {"KeyId": rec.arn, "ImportToken": token, "PublicKey": public,
                "ParametersValidTo": _ts(valid_to)}

    def _op_ImportKeyMaterial(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._external_key(p, ctx, "ImportKeyMaterial")
        self._check_not_pending_deletion(rec)
        token = p["ImportToken"]
        if (not isinstance(token, (bytes, bytearray)) or len(token) != len(_IMPORT_TOKEN_PREFIX) + 48
                or not bytes(token).startswith(_IMPORT_TOKEN_PREFIX)):
            raise KMSError("InvalidImportTokenException", "The import token is not valid.")
        token = bytes(token)
        token_id = token[len(_IMPORT_TOKEN_PREFIX):len(_IMPORT_TOKEN_PREFIX) + 32].hex()
        if str(uuid.UUID(bytes=token[-16:])) != rec.key_id:
            raise KMSError("InvalidImportTokenException", "The import token was issued for another key.")
        with self.store.reading() as conn:
            row = conn.execute(select(T_IMPORT).where(T_IMPORT.c.token_id == token_id)).mappings().first()
        if row is None or row["key_id"] != rec.key_id:
            raise KMSError("InvalidImportTokenException", "The import token is not valid.")
        now = self._now()
        if row["valid_to"] <= now:
            raise KMSError("ExpiredImportTokenException",
                           "The import token has expired. Use GetParametersForImport to get a new one.")
        model = p.get("ExpirationModel") or "KEY_MATERIAL_EXPIRES"
        valid_to = p.get("ValidTo")
        if model == "KEY_MATERIAL_EXPIRES":
            if valid_to is None:
                raise validation("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
            vt = valid_to.timestamp() if isinstance(valid_to, datetime) else float(valid_to)
            if vt <= now or vt > now + 365 * DAY:
                raise validation("ValidTo must be in the future and at most 365 days from now.")
        elif model == "KEY_MATERIAL_DOES_NOT_EXPIRE":
            if valid_to is not None:
                raise validation("A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
            vt = None
        else:
            raise validation(f"1 validation error detected: Value '{model}' at 'expirationModel' failed "
                             "to satisfy constraint: Member must satisfy enum value set: "
                             "[KEY_MATERIAL_DOES_NOT_EXPIRE, KEY_MATERIAL_EXPIRES]")
        material = self._unwrap_import(row, bytes(p["EncryptedKeyMaterial"]))
        if len(material) != 32:
            raise KMSError("IncorrectKeyMaterialException",
                           "The key material must be 256 bits (32 bytes) for a SYMMETRIC_DEFAULT key.")
        import hmac as _hmac
        with self.store.transaction() as conn:
            existing = conn.execute(select(T_MAT).where(and_(T_MAT.c.key_id == rec.key_id,
                                                              T_MAT.c.version == 1))).mappings().first()
            if existing is not None:
                old = self.store.unseal(existing["sealed"], Store.material_aad(rec.key_id, 1))
                if not _hmac.compare_digest(old, material):
                    raise KMSError("IncorrectKeyMaterialException",
                                   "The key material does not match the key material previously imported "
                                   "into this KMS key.")
                material_id = existing["material_id"]
            else:
                prior = self._imported_fingerprint(conn, rec.key_id)
                fp = _hmac.new(material, b"kms-local/imported-material-fingerprint", "sha256").hexdigest()
                if prior is not None and not _hmac.compare_digest(prior, fp):
                    raise KMSError("IncorrectKeyMaterialException",
                                   "The key material does not match the key material previously imported "
                                   "into this KMS key.")
                material_id = self._add_material(conn, rec.key_id, 1, now, None, material=material)
                conn.execute(update(T_MAT).where(and_(T_MAT.c.key_id == rec.key_id, T_MAT.c.version == 1))
                             .values(import_state="IMPORTED"))
                conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id)
                             .values(import_fingerprint=fp))
            state = ENABLED if rec.key_state == PENDING_IMPORT else rec.key_state
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(
                key_state=state, current_version=1, valid_to=vt, expiration_model=model))
        self.invalidate(rec.key_id)
        return {"KeyId": rec.arn, "KeyMaterialId": material_id}

    @staticmethod
    def _imported_fingerprint(conn, key_id: str) -> str | None:
        # Re-imports must bring the same material, even after it was deleted:
        # we keep only a fingerprint (HMAC keyed by the material), never the bytes.
        return conn.execute(select(T_KEYS.c.import_fingerprint).where(T_KEYS.c.key_id == key_id)).scalar()

    def _unwrap_import(self, row, wrapped: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
        der = self.store.unseal(row["private_key_sealed"], f"import|{row['key_id']}|{row['token_id']}".encode())
        private = serialization.load_der_private_key(der, password=None)
        alg = row["wrapping_algorithm"]
        h = hashes.SHA1() if alg.endswith("SHA_1") else hashes.SHA256()
        oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
        try:
            if alg.startswith("RSAES_OAEP"):
                return private.decrypt(wrapped, oaep)
            n = private.key_size // 8
            aes_key = private.decrypt(wrapped[:n], oaep)
            return aes_key_unwrap_with_padding(aes_key, wrapped[n:])
        except (ValueError, InvalidUnwrap):
            raise KMSError("InvalidCiphertextException",
                           "The EncryptedKeyMaterial could not be decrypted with the import parameters.") from None

    def _op_DeleteImportedKeyMaterial(self, p: dict, ctx: RequestContext) -> dict:
        rec = self._external_key(p, ctx, "DeleteImportedKeyMaterial")
        material_id = rec.material_ids.get(1)
        with self.store.transaction() as conn:
            conn.execute(delete(T_MAT).where(T_MAT.c.key_id == rec.key_id))
            values: dict[str, Any] = {"current_version": 0, "valid_to": None}
            if rec.key_state != PENDING_DELETION:
                values["key_state"] = PENDING_IMPORT
            conn.execute(update(T_KEYS).where(T_KEYS.c.key_id == rec.key_id).values(**values))
        self.invalidate(rec.key_id)
        out = {"KeyId": rec.arn}
        if material_id:
            out["KeyMaterialId"] = material_id
        return out


def check_policy_document(policy: Any):
    """Parse a key policy; MalformedPolicyDocumentException if it is not one."""
    if not isinstance(policy, str):
        raise KMSError("MalformedPolicyDocumentException", "The policy must be a JSON string.")
    if len(policy.encode("utf-8")) > 32768:
        raise KMSError("LimitExceededException", "The key policy exceeds the 32 KB quota.")
    doc = parse_policy(policy)
    for st in doc.statements:
        for pr in (st.principals or []) + (st.not_principals or []):
            if pr != "*" and not re.fullmatch(r"\d{12}|arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+|\w+:[\w.-]+", pr):
                raise KMSError("MalformedPolicyDocumentException",
                               "Policy contains a statement with one or more invalid principals.")
    return doc

_IMPORT_TOKEN_PREFIX = b"KMSLOCAL-IMPORT-1"
_GRANT_TOKEN_PREFIX = "KMSGT1"


def _make_grant_token(grant_id: str) -> str:
    # Not secret (as AWS's): names the grant, with random bytes so each call's token differs.
    raw = bytes.fromhex(grant_id) + os.urandom(16)
    return _GRANT_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_grant_token(token: Any) -> str | None:
    if not isinstance(token, str) or not token.startswith(_GRANT_TOKEN_PREFIX):
        return None
    body = token[len(_GRANT_TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw[:32].hex() if len(raw) == 48 else None


def _grant_from_row(r) -> dict:
    g = {"GrantId": r["grant_id"], "Name": r["name"], "CreationDate": r["creation_date"],
         "GranteePrincipal": r["grantee_principal"], "RetiringPrincipal": r["retiring_principal"],
         "IssuingAccount": f"arn:aws:iam::{r['issuing_account']}:root",
         "Operations": json.loads(r["operations"])}
    if r["constraints"]:
        g["Constraints"] = json.loads(r["constraints"])
    return g


def _grant_is_narrower(params: dict, parent: dict) -> bool:
    """A grantee holding CreateGrant may only grant a subset of its operations
    under equal or stricter constraints."""
    if not set(params.get("Operations") or []) <= set(parent["Operations"]):
        return False
    pc = parent.get("Constraints") or {}
    nc = params.get("Constraints") or {}
    if "EncryptionContextEquals" in pc:
        return nc.get("EncryptionContextEquals") == pc["EncryptionContextEquals"]
    if "EncryptionContextSubset" in pc:
        want = pc["EncryptionContextSubset"]
        have = nc.get("EncryptionContextEquals") or nc.get("EncryptionContextSubset") or {}
        return all(have.get(k) == v for k, v in want.items())
    return True


_DEFAULT_CTX = RequestContext()

OPERATIONS_SERVED = (
    "CreateKey", "DescribeKey", "ListKeys", "UpdateKeyDescription", "EnableKey", "DisableKey",
    "ScheduleKeyDeletion", "CancelKeyDeletion", "CreateAlias", "UpdateAlias", "DeleteAlias",
    "ListAliases", "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext", "GenerateRandom", "EnableKeyRotation", "DisableKeyRotation",
    "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations", "TagResource", "UntagResource",
    "ListResourceTags", "GetKeyPolicy", "ListKeyPolicies", "PutKeyPolicy",
    "CreateGrant", "ListGrants", "ListRetirableGrants", "RetireGrant", "RevokeGrant",
    "GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial",
)

# One engine per store per process, shared by every client made for that store.
_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: Settings, clock=None) -> Engine:
    key = (settings.store_url, settings.region, settings.account_id, settings.root_key,
           str(settings.root_key_file), id(clock) if clock is not None else None)
    eng = _ENGINES.get(key)
    if eng is not None:
        return eng
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is None:
            eng = Engine.open(settings, clock)
            _ENGINES[key] = eng
    return eng

"""The engine: dispatch, key resolution and the table-driven checks every handler uses.

``Engine.call(operation, params, ctx)`` is the single entry point used by the in-process
client, the server and the CLI.  Parameters and results are in boto3's Python form (bytes,
datetimes); failures are ``KMSError`` only.

Which operations are served, by which handler, and each operation's rules (key states,
alias acceptance, permission, accepted keys) come from the operation table
(``kms_core.model``); handlers (``kms_core.engine.handlers``) ask this class to apply them.

Hot path (Encrypt/Decrypt/GenerateDataKey on a cached key) touches no storage: keys are
cached with their unsealed material, and the cache is dropped whenever the store's
generation counter moves (checked at most every ``settings.cache_ttl`` seconds), so
changes made by other processes are honoured within that bound.
"""
from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

from kms_core import arn as arns
from kms_core.clock import SystemClock
from kms_core.envelope import encode_context
from kms_core.errors import KMSError, not_found, validation
from kms_core.keytypes import operations as keytype_ops
from kms_core.model import KEY_STATE_RULES, OPERATIONS, Operation
from kms_core.policy import access_denied
from kms_core.settings import Settings
from kms_core.store import _NO_IO, Store, WouldBlock
from kms_core.validation import validate as _validate

from .access import Authorizer
from .records import (
    DAY,
    DEFAULT_CTX,
    DEFAULT_ROTATION_DAYS,
    ENABLED,
    MANAGED_SERVICES,
    PENDING_DELETION,
    PENDING_IMPORT,
    PENDING_REPLICA_DELETION,
    SYMMETRIC,
    KeyRecord,
    Params,
    RequestContext,
    Result,
    ts,
)
from .repository import KeyRepository, new_key_id
from .templates import managed_policy

Handler = Callable[["Engine", Params, RequestContext], Result]


def _handlers() -> dict[str, Handler]:
    """Operation name -> handler, as the operation table says (``Operation.handler``)."""
    out: dict[str, Handler] = {}
    for name, op in OPERATIONS.items():
        if op.handler is not None:
            module = importlib.import_module(f"kms_core.engine.handlers.{op.handler}")
            out[name] = getattr(module, op.py_name)
    return out


class Engine:
    """AWS KMS semantics.  Thread-safe; one per store per process is enough."""

    def __init__(self, store: Store, settings: Settings, clock: Any = None):
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        # Epoch seconds now, read through the clock (tests move it, or patch time.time: never
        # bind time.time itself); the bound method is looked up once (hot path).
        stamp = getattr(self.clock, "timestamp", None)
        self.now: Callable[[], float] = (stamp if stamp is not None
                                         else lambda: float(self.clock.now().timestamp()))
        self.repo = KeyRepository(store, settings.cache_ttl)
        self.access = Authorizer(self)
        # Hooks for an external authorizer and the audit trail.
        self.authorizer: Callable[..., None] | None = None
        self.auditor: Callable[..., None] | None = None
        self._handlers = _handlers()

    @classmethod
    def open(cls, settings: Settings, clock: Any = None) -> Engine:
        return cls(Store(settings), settings, clock)

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def close(self) -> None:
        self.store.dispose()

    # ------------------------------------------------------------------ dispatch
    def call(self, operation: str, params: Params | None = None,
             ctx: RequestContext | None = None) -> Result:
        params = params or {}
        if ctx is None:
            ctx = DEFAULT_CTX
        auditor = self.auditor
        try:
            # [audit hook] the audit log refuses requests it could not record (fails closed)
            admit = getattr(auditor, "admit", None)
            if admit is not None:
                admit()
            handler = self._handlers.get(operation)
            if handler is None:
                raise KMSError("UnsupportedOperationException",
                               f"{operation} is not supported by this KMS engine.")
            _validate(operation, params)  # every limit and enum of the model, AWS's messages
            if self.repo.stale(self.settings.cache_ttl):
                self.repo.refresh()
            result = handler(self, params, ctx)
        except KMSError as err:
            if auditor is not None:
                auditor(ctx, operation, params, None, err)
            raise
        except WouldBlock:  # nothing changed, nothing audited: retried off the event loop
            raise
        except Exception:  # [audit hook] a bug still leaves its event, as the server answers it
            if auditor is not None:
                auditor(ctx, operation, params, None,
                        KMSError("KMSInternalException", "An internal error occurred."))
            raise
        if auditor is not None:
            auditor(ctx, operation, params, result, None)
        return result

    def call_nonblocking(self, operation: str, params: Params | None = None,
                         ctx: RequestContext | None = None) -> Result:
        """``call`` when it can be answered from memory; raises
        ``kms_core.store.WouldBlock`` (having changed and audited nothing) when
        it needs the database, so that the caller can retry it off its event loop."""
        _NO_IO.on = True  # kms_core.store.no_io(), without a generator per request
        try:
            return self.call(operation, params, ctx)
        finally:
            _NO_IO.on = False

    def record_rejected(self, ctx: RequestContext, operation: str, error: KMSError,
                        params: Params | None = None) -> None:
        """Audit a request refused before dispatch (bad signature, bad JSON…)."""
        if self.auditor is not None:
            self.auditor(ctx, operation, params or {}, None, error)

    # ------------------------------------------------------------------ caching
    def refresh_if_due(self, ahead: float = 0.5) -> None:
        """Run the cross-process change check once ``ahead`` × cache_ttl has
        passed, so that a caller's background thread can keep requests from
        ever paying for it (the server does this)."""
        if time.monotonic() - self.repo.gen_checked >= self.settings.cache_ttl * ahead:
            self.repo.refresh()

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached state (all of it, or one key's)."""
        self.repo.invalidate(key_id)

    # ------------------------------------------------------------------ names and time
    def region(self, ctx: RequestContext) -> str:
        return ctx.region or self.settings.region

    def account(self, ctx: RequestContext) -> str:
        return ctx.account_id or self.settings.account_id

    def principal(self, ctx: RequestContext) -> str:
        return ctx.principal or f"arn:aws:iam::{self.account(ctx)}:root"

    def key_arn(self, key_id: str, ctx: RequestContext) -> str:
        return arns.key_arn(self.region(ctx), self.account(ctx), key_id)

    def alias_arn(self, name: str, ctx: RequestContext) -> str:
        return arns.alias_arn(self.region(ctx), self.account(ctx), name)

    # ------------------------------------------------------------------ keys
    def get(self, key_id: str, ctx: RequestContext, *, settle: bool = True) -> KeyRecord | None:
        """The key with this id in the caller's account and Region, brought up to date with
        the clock (deletion, rotation, expiry) unless ``settle`` is False."""
        rec = self.repo.get(key_id, ctx.account_id or self.settings.account_id,
                            ctx.region or self.settings.region)
        if rec is not None and settle and rec.next_event <= self.now():
            if not self.repo.settle(rec.row_id, self.now()):
                return None
            rec = self.repo.get(key_id, self.account(ctx), self.region(ctx))
        return rec

    def not_found_id(self, key_id: str, ctx: RequestContext) -> KMSError:
        return not_found(f"Key '{self.key_arn(key_id, ctx)}' does not exist")

    def resolve(self, ref: str, ctx: RequestContext, operation: str, *, alias_ok: bool | None = None) -> KeyRecord:
        """Find the key named by a key id, key ARN, alias name or alias ARN; aliases only
        where the operation table says the operation accepts them."""
        if not isinstance(ref, str) or not ref:
            raise validation("1 validation error detected: Value at 'keyId' failed to satisfy "
                             "constraint: Member must have length greater than or equal to 1")
        rec = self.repo.keys.get(ref)  # fast path: a plain key id already cached
        if (rec is not None and rec.account_id == (ctx.account_id or self.settings.account_id)
                and rec.region == (ctx.region or self.settings.region)):
            if rec.next_event <= self.now():
                settled = self.get(ref, ctx)
                if settled is None:
                    raise self.not_found_id(ref, ctx)
                return settled
            return rec
        op = OPERATIONS[operation]
        parsed = arns.parse_key_ref(ref)
        if parsed.region is not None and parsed.region != self.region(ctx):
            raise not_found(f"Invalid arn {parsed.region}")
        if parsed.account is not None and parsed.account != self.account(ctx):
            # Cross-account use needs the other account's key policy; no other accounts here.
            raise not_found(f"Key '{ref}' does not exist" if parsed.kind == "key"
                            else f"Alias {ref} is not found.")
        if parsed.kind == "alias":
            if not (op.alias_ok if alias_ok is None else alias_ok):
                raise not_found(f"Invalid keyId '{ref}'")
            return self._resolve_alias(parsed.name, ctx, op)
        key_id = parsed.name
        if not arns.is_key_id(key_id):  # AWS ids are lower-case: another case names no key
            raise self.not_found_id(key_id, ctx)
        found = self.get(key_id, ctx)
        if found is None:
            raise self.not_found_id(key_id, ctx)
        return found

    def _resolve_alias(self, name: str, ctx: RequestContext, op: Operation) -> KeyRecord:
        key_id = self.repo.alias_target(self.account(ctx), self.region(ctx), name)
        if key_id is None and op.creates_managed_key and name.startswith("alias/aws/"):
            service = name[len("alias/aws/"):]
            if service in MANAGED_SERVICES:
                key_id = self._create_managed_key(name, service, ctx)
        if key_id is None:
            raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
        rec = self.get(key_id, ctx)
        if rec is None:
            raise not_found(f"Alias {self.alias_arn(name, ctx)} is not found.")
        return rec

    def _create_managed_key(self, alias_name: str, service: str, ctx: RequestContext) -> str:
        """Create the AWS-managed key for ``alias/aws/<service>`` exactly once."""
        account, region, now = self.account(ctx), self.region(ctx), self.now()
        return self.repo.create_managed_key({
            "key_id": new_key_id(), "account_id": account, "region": region,
            "description": f"Default key that protects my {MANAGED_SERVICES[service]} when no other key is defined",
            "creation_date": now, "key_state": ENABLED, "key_manager": "AWS", "origin": "AWS_KMS",
            "key_spec": SYMMETRIC, "key_usage": "ENCRYPT_DECRYPT", "rotation_enabled": True,
            "rotation_period_days": DEFAULT_ROTATION_DAYS,
            "next_rotation_date": now + DEFAULT_ROTATION_DAYS * DAY, "on_demand_rotations": 0,
            "current_version": 1, "policy": managed_policy(account, region, service),
            "managed_alias": alias_name}, alias_name)

    # ------------------------------------------------------------------ the table's rules
    @staticmethod
    def check_state(operation: str, rec: KeyRecord) -> None:
        """The operation's key-state rule (``KEY_STATE_RULES``)."""
        rule = OPERATIONS[operation].key_state_rule
        if rule is None:
            return
        bad = KEY_STATE_RULES[rule].get(rec.key_state)
        if bad is not None:
            code, message = bad
            raise KMSError(code, message.format(arn=rec.arn))

    @staticmethod
    def check_key(operation: str, rec: KeyRecord) -> None:
        """The operation's ``KeyRequirement``: KeyUsage, KeySpec, Origin."""
        req = OPERATIONS[operation].requirement
        if req.key_usages is not None and rec.key_usage not in req.key_usages:
            raise KMSError("InvalidKeyUsageException",
                           f"{rec.arn} key usage is {rec.key_usage} which is not valid for {operation}.")
        if req.key_specs is not None and rec.key_spec not in req.key_specs:
            raise KMSError(req.spec_error, f"{rec.arn} key spec {rec.key_spec} is not valid for this operation.")
        if req.origins is not None and rec.origin not in req.origins:
            raise KMSError("UnsupportedOperationException",
                           f"{rec.arn} origin is {rec.origin} which is not valid for this operation.")

    @staticmethod
    def check_key_and_state(operation: str, rec: KeyRecord) -> None:
        """``check_key`` then ``check_state``, reading the table once (the hot path)."""
        op = OPERATIONS[operation]
        req = op.requirement
        if ((req.key_usages is not None and rec.key_usage not in req.key_usages)
                or (req.key_specs is not None and rec.key_spec not in req.key_specs)
                or (req.origins is not None and rec.origin not in req.origins)):
            Engine.check_key(operation, rec)
        rule = op.key_state_rule
        if rule is not None and rec.key_state in KEY_STATE_RULES[rule]:
            Engine.check_state(operation, rec)

    def deny_if_managed(self, operation: str, rec: KeyRecord, ctx: RequestContext) -> None:
        if rec.key_manager == "AWS" and not OPERATIONS[operation].aws_managed_ok:
            raise access_denied(self.principal(ctx), "kms:" + operation, rec.arn, explicit=False)

    def authorize(self, operation: str, rec: KeyRecord | None, ctx: RequestContext, params: Params,
                  permission: str | None = None) -> None:
        """Key policy and grants (``permission`` when the operation has two, as ReEncrypt)."""
        if ctx.principal is None and self.authorizer is None and not params.get("GrantTokens"):
            return  # the trusted local application: nothing to evaluate (the hot path)
        self.access.authorize(operation, rec, ctx, params, permission)

    def crypto_key(self, ref: str, ctx: RequestContext, operation: str, params: Params,
                   permission: str | None = None) -> KeyRecord:
        """A key for a cryptographic operation: accepted keys, state, then authorization."""
        rec = self.resolve(ref, ctx, operation)
        self.check_key_and_state(operation, rec)
        self.authorize(operation, rec, ctx, params, permission)
        return rec

    def admin_key(self, ref: str, ctx: RequestContext, operation: str, params: Params) -> KeyRecord:
        """A key for an administrative operation: authorization, AWS-managed keys, accepted
        keys, then state."""
        rec = self.resolve(ref, ctx, operation)
        self.authorize(operation, rec, ctx, params)
        self.deny_if_managed(operation, rec, ctx)
        self.check_key(operation, rec)
        self.check_state(operation, rec)
        return rec

    def read_key(self, ref: str, ctx: RequestContext, operation: str, params: Params) -> KeyRecord:
        """A key for a read-only operation: authorization, accepted keys, then state."""
        rec = self.resolve(ref, ctx, operation)
        self.authorize(operation, rec, ctx, params)
        self.check_key(operation, rec)
        self.check_state(operation, rec)
        return rec

    # ------------------------------------------------------------------ shared helpers
    @staticmethod
    def context_bytes(params: Params, name: str = "EncryptionContext") -> bytes:
        ec = params.get(name)
        if ec is None:
            return b"\x00\x00"
        if not isinstance(ec, dict):
            raise validation(f"{name} must be a map of strings to strings.")
        return encode_context(ec)

    @staticmethod
    def dry_run(params: Params) -> None:
        if params.get("DryRun"):
            raise KMSError("DryRunOperationException",
                           "The request would have succeeded, but the DryRun option is set.")

    @staticmethod
    def no_recipient(params: Params) -> None:
        if params.get("Recipient") is not None:
            raise KMSError("UnsupportedOperationException",
                           "Recipient (Nitro Enclaves attestation) is not supported by this KMS engine.")

    def metadata(self, rec: KeyRecord) -> Result:
        md: Result = {
            "AWSAccountId": rec.account_id, "KeyId": rec.key_id, "Arn": rec.arn,
            "CreationDate": ts(rec.creation_date), "Enabled": rec.key_state == ENABLED,
            "Description": rec.description, "KeyUsage": rec.key_usage, "KeyState": rec.key_state,
            "Origin": rec.origin, "KeyManager": rec.key_manager,
            "CustomerMasterKeySpec": rec.key_spec, "KeySpec": rec.key_spec,
        }
        # Only the list that goes with the key's usage (an RSA SIGN_VERIFY key has no EncryptionAlgorithms).
        md.update(keytype_ops.metadata_algorithms(rec.key_spec, rec.key_usage))
        md["MultiRegion"] = rec.multi_region
        if rec.primary_region is not None:
            arn_in = rec.arn.rsplit(":", 3)[0]  # arn:aws:kms

            def entry(region: str) -> Result:
                return {"Arn": f"{arn_in}:{region}:{rec.account_id}:key/{rec.key_id}", "Region": region}
            md["MultiRegionConfiguration"] = {
                "MultiRegionKeyType": "REPLICA" if rec.is_replica else "PRIMARY",
                "PrimaryKey": entry(rec.primary_region),
                "ReplicaKeys": [entry(r) for r in rec.regions if r != rec.primary_region]}
        if rec.key_state in (PENDING_DELETION, PENDING_REPLICA_DELETION) and rec.pending_window_days:
            md["PendingDeletionWindowInDays"] = rec.pending_window_days
        if rec.key_state == PENDING_DELETION:
            md["DeletionDate"] = ts(rec.deletion_date)
            md["PendingDeletionWindowInDays"] = rec.pending_window_days
        # AWS shows ExpirationModel only once material is imported: a PendingImport key,
        # new or whose material was deleted or expired, has none (CLI example "create-key
        # --origin EXTERNAL"), and no CurrentKeyMaterialId either (current_version 0).
        if rec.origin == "EXTERNAL" and rec.current_version and rec.key_state != PENDING_IMPORT:
            md["ExpirationModel"] = rec.expiration_model or "KEY_MATERIAL_EXPIRES"
            if rec.valid_to is not None:
                md["ValidTo"] = ts(rec.valid_to)
        # AWS: "present for symmetric encryption keys with AWS_KMS or EXTERNAL origin".
        if rec.key_spec == SYMMETRIC and rec.current_version and rec.current_version in rec.material_ids:
            md["CurrentKeyMaterialId"] = rec.material_ids[rec.current_version]
        return md


# One engine per store per process, shared by every client made for that store.
_ENGINES: dict[tuple[Any, ...], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: Settings, clock: Any = None) -> Engine:
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


__all__ = ["Engine", "get_engine"]

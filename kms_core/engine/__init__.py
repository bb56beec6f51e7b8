"""The KMS engine: AWS KMS semantics over the sealed store (docs/architecture.md).

Layers, top down:

* ``core.Engine`` — ``call`` (validation, dispatch, audit hook), key resolution and the
  operation table's per-operation rules (``check_state``, ``check_key``, ``authorize``);
* ``handlers/`` — one module per area (lifecycle, aliases, crypto, rotation, grants, imports,
  tags_policies); each operation is a function ``fn(engine, params, ctx) -> result`` named
  after its Python name, found through the table's ``Operation.handler``;
* ``access`` — key policies and grants;
* ``repository.KeyRepository`` — every SQL statement and the in-memory caches;
* key material only through ``kms_core.keytypes`` (``KeyRecord.key_type``, ``.encrypter``).
"""
from __future__ import annotations

from kms_core.model import OPERATIONS as _OPERATIONS

from .access import make_grant_token, parse_grant_token
from .core import _ENGINES, Engine, get_engine
from .records import (
                      DAY,
                      DEFAULT_ROTATION_DAYS,
                      DISABLED,
                      ENABLED,
                      MANAGED_SERVICES,
                      PENDING_DELETION,
                      PENDING_IMPORT,
                      SYMMETRIC,
                      KeyRecord,
                      RequestContext,
)
from .templates import check_policy_document, default_policy, managed_policy

# The operations the engine serves (the table's ``Operation.handler``), in the table's order.
OPERATIONS_SERVED: tuple[str, ...] = tuple(n for n, op in _OPERATIONS.items() if op.handler is not None)

__all__ = ["DAY", "DEFAULT_ROTATION_DAYS", "DISABLED", "ENABLED", "MANAGED_SERVICES", "OPERATIONS_SERVED",
           "PENDING_DELETION", "PENDING_IMPORT", "SYMMETRIC", "_ENGINES", "Engine", "KeyRecord", "RequestContext",
           "check_policy_document", "default_policy", "get_engine", "make_grant_token", "managed_policy",
           "parse_grant_token"]

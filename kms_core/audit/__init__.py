"""The audit trail: one CloudTrail-shaped event per KMS request, hash-chained.

``attach(engine)`` installs an auditor on ``engine.auditor`` and returns the
:class:`AuditLog`.  The parts (docs/audit-log.md):

* :mod:`.events` — rendering a request into its event JSON (no secrets);
* :mod:`.chain` — the tables, the sealed MAC key and the HMAC formulas;
* :mod:`.writer` — the auditor hook and its background, group-committing writer;
* :mod:`.reader` — ``tail``-style queries and ``verify``;
* :mod:`.retention` — export and pruning behind an anchor.
"""
from __future__ import annotations

from .chain import (
                    _KEY_AAD,
                    EVENT_VERSION,
                    FORMAT_VERSION,
                    audit_events,
                    audit_head,
                    audit_pruned,
                    event_mac,
                    genesis_mac,
                    head_mac,
                    pruned_mac,
)
from .events import MAP_MEMBERS, SECRET_MEMBERS, _index_columns, _Renderer, _strip, build_event
from .reader import AuditReader, Problem, VerifyReport, _parse_anchor
from .writer import AuditLog, attach

__all__ = [
                    "EVENT_VERSION",
                    "FORMAT_VERSION",
                    "MAP_MEMBERS",
                    "SECRET_MEMBERS",
                    "_KEY_AAD",
                    "AuditLog",
                    "AuditReader",
                    "Problem",
                    "VerifyReport",
                    "_Renderer",
                    "_index_columns",
                    "_parse_anchor",
                    "_strip",
                    "attach",
                    "audit_events",
                    "audit_head",
                    "audit_pruned",
                    "build_event",
                    "event_mac",
                    "genesis_mac",
                    "head_mac",
                    "pruned_mac",
]

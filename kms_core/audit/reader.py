"""Reading, filtering and verifying the audit log of one store (no engine needed)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select

from ..errors import StoreError
from ..store import Store, aliases
from .chain import (
    _KEY_AAD,
    FORMAT_VERSION,
    audit_events,
    audit_head,
    audit_pruned,
    ensure_tables,
    event_mac,
    genesis_mac,
    head_mac,
    pruned_mac,
    same,
)
from .events import _index_columns, _parse_event_time


@dataclass
class Problem:
    seq: int | None
    kind: str          # altered | missing | truncated | anchor | format | index | key
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class VerifyReport:
    checked: int = 0
    head_seq: int = 0
    head_mac: bytes = b""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pruned_seq: int = 0          # records 1..pruned_seq were pruned behind a verified anchor
    pruned_time: float | None = None
    max_problems: int = 100

    def problem(self, seq: int | None, kind: str, message: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(Problem(seq, kind, message))

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def anchor(self) -> str:
        """``SEQ:HEX`` — keep it elsewhere; ``verify --anchor`` then also proves
        the log was not rolled back or replaced below it."""
        return f"{self.head_seq}:{self.head_mac.hex()}"


class AuditReader:
    """Reading, filtering and verifying the log of one store (no engine needed)."""

    def __init__(self, store: Store):
        self.store = store
        ensure_tables(store)

    # -- query -----------------------------------------------------------------------
    def _filters(self, *, key: str | None = None, principal: str | None = None,
                 operation: str | None = None, start: float | None = None,
                 end: float | None = None, errors_only: bool = False, after_seq: int | None = None):
        t = audit_events.c
        conds = []
        # autoescape: "_" and "%" in names are literal, not LIKE wildcards
        if key:
            conds.append(or_(*[t.key_ids.contains(f" {k} ", autoescape=True)
                               for k in self._key_ids(key)]))
        if principal:
            if principal.startswith("arn:"):
                conds.append(t.principal == principal)
            elif principal == "root":
                conds.append(t.principal.endswith(":root", autoescape=True))
            else:
                conds.append(t.principal.endswith("/" + principal, autoescape=True))
        if operation:
            names = [o.strip() for o in operation.split(",") if o.strip()]
            conds.append(t.event_name.in_(names))
        if start is not None:
            conds.append(t.event_time >= start)
        if end is not None:
            conds.append(t.event_time <= end)
        if errors_only:
            conds.append(t.error_code.is_not(None))
        if after_seq is not None:
            conds.append(t.seq > after_seq)
        return and_(*conds) if conds else None

    def _key_ids(self, ref: str) -> list[str]:
        """Key ids a --key filter names: a key id, key ARN, alias name or alias ARN."""
        ref = ref.strip()
        if ":key/" in ref:
            key_id = ref.rsplit("/", 1)[-1].lower()
            if key_id.startswith("mrk-") and ref.count(":") >= 5:
                return [f"{key_id}/{ref.split(':', 4)[3]}"]  # that Region's key only
            return [key_id]
        if ref.startswith("alias/") or ":alias/" in ref:
            name = "alias/" + ref.split(":alias/", 1)[1] if ":alias/" in ref else ref
            with self.store.reading() as conn:
                ids = [r[0] for r in conn.execute(
                    select(aliases.c.target_key_id).where(aliases.c.alias_name == name))]
            return ids or ["\0no-such-key\0"]
        return [ref.lower()]

    def events(self, *, limit: int | None = None, **filters) -> list[tuple[int, str]]:
        """``(seq, event JSON)`` oldest first; with ``limit``, the newest ``limit``."""
        where = self._filters(**filters)
        q = select(audit_events.c.seq, audit_events.c.event)
        if where is not None:
            q = q.where(where)
        order = audit_events.c.seq
        q = q.order_by(order.desc()).limit(limit) if limit is not None else q.order_by(order)
        with self.store.reading() as conn:
            rows = [(r.seq, r.event) for r in conn.execute(q)]
        if limit is not None:
            rows.reverse()
        return rows

    def last_seq(self) -> int:
        with self.store.reading() as conn:
            return conn.execute(select(audit_events.c.seq).order_by(
                audit_events.c.seq.desc()).limit(1)).scalar() or 0

    def current_anchor(self) -> str:
        """``SEQ:HEX`` of the newest record, after checking the head row's MAC."""
        with self.store.reading() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        if head is None:
            return f"0:{bytes(32).hex()}"
        key = self._unseal(head)
        if not same(head.anchor, head_mac(key, head.seq, bytes(head.mac))):
            raise StoreError("the audit log's anchor (head row) was altered; run `kms audit verify`")
        return f"{head.seq}:{bytes(head.mac).hex()}"

    # -- verify ----------------------------------------------------------------------
    def pruned(self) -> tuple[int, bytes, float] | None:
        """``(last pruned record, its MAC, its time)`` after checking the anchor row's
        HMAC, or None when nothing was pruned.  Raises StoreError when it was altered."""
        with self.store.reading() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            row = conn.execute(select(audit_pruned).where(audit_pruned.c.id == 1)).first()
        if row is None:
            return None
        if head is None:
            raise StoreError("the audit log's head row is missing")
        key = self._unseal(head)
        if not same(row.anchor, pruned_mac(key, row.seq, bytes(row.mac), row.event_time)):
            raise StoreError("the audit log's pruning anchor was altered; run `kms audit verify`")
        return row.seq, bytes(row.mac), row.event_time

    def _unseal(self, head) -> bytes:
        try:
            return self.store.unseal(head.sealed_key, _KEY_AAD)
        except StoreError:
            raise StoreError("the audit log's MAC key cannot be unsealed (altered, or a "
                             "different root key)") from None

    def verify(self, *, anchor: str | None = None, max_problems: int = 100) -> VerifyReport:
        """Check the whole chain, the filter columns and the head; report every problem
        (up to ``max_problems``) with the record it concerns.  A pruned prefix is
        checked through its anchor row; the chain resumes from the state it carries."""
        rep = VerifyReport(max_problems=max_problems)
        with self.store.reading() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            pruned = conn.execute(select(audit_pruned).where(audit_pruned.c.id == 1)).first()
        key = self._verify_head(head, rep)
        if key is None or head is None:
            return rep
        want_anchor = _parse_anchor(anchor) if anchor else None
        expected, prev = 1, genesis_mac(key)
        if pruned is not None:
            expected, prev = self._verify_pruned(key, pruned, head, rep)
        wanted = {head.seq} | ({want_anchor[0]} if want_anchor else set())
        macs_at: dict[int, bytes] = {}
        last = self._verify_records(key, expected, prev, wanted, macs_at, rep)
        if head.seq > last:
            rep.problem(last + 1, "truncated",
                        f"records {last + 1}..{head.seq} are missing: the log was truncated "
                        f"(the anchor covers {head.seq} records)")
        elif head.seq and head.seq in macs_at and not same(macs_at[head.seq], head.mac):
            rep.problem(head.seq, "truncated", f"record {head.seq} is not the record the anchor "
                        "names: the end of the log was replaced")
        # Records beyond the head were appended after we read it: they chained above.
        if want_anchor:
            self._check_given_anchor(want_anchor, macs_at, pruned, rep)
        return rep

    def _verify_head(self, head, rep: VerifyReport) -> bytes | None:
        """The chain key, or None (with the problem reported) when nothing can be checked."""
        if head is None:
            with self.store.reading() as conn:
                if conn.execute(select(audit_events.c.seq).limit(1)).first() is not None:
                    rep.problem(None, "anchor", "the audit log's head row (anchor and MAC key) is "
                                "missing but records exist: the log cannot be trusted")
            return None
        if head.format != FORMAT_VERSION:
            rep.problem(None, "format", f"the audit log has format {head.format}; this version "
                        f"understands {FORMAT_VERSION}")
            return None
        try:
            key = self.store.unseal(head.sealed_key, _KEY_AAD)
        except StoreError:
            rep.problem(None, "key", "the audit log's MAC key cannot be unsealed (altered, or a "
                        "different root key): no record can be verified")
            return None
        rep.head_seq, rep.head_mac = head.seq, bytes(head.mac)
        if not same(head.anchor, head_mac(key, head.seq, bytes(head.mac))):
            rep.problem(None, "anchor", "the log's anchor (head row) was altered: deletions at the "
                        "end of the log cannot be ruled out")
        return key

    @staticmethod
    def _verify_pruned(key: bytes, pruned, head, rep: VerifyReport) -> tuple[int, bytes]:
        """Where the chain resumes after a pruned prefix: ``(first record, previous MAC)``."""
        mac = bytes(pruned.mac)
        if pruned.format != FORMAT_VERSION or not same(
                pruned.anchor, pruned_mac(key, pruned.seq, mac, pruned.event_time)):
            rep.problem(pruned.seq, "anchor", f"the pruning anchor (records 1..{pruned.seq} "
                        "pruned) was altered or forged: the start of the log cannot be trusted")
        elif pruned.seq > head.seq:
            rep.problem(pruned.seq, "anchor", f"the pruning anchor names record {pruned.seq}, "
                        f"beyond the head ({head.seq}): the log was rolled back")
        rep.pruned_seq, rep.pruned_time = pruned.seq, pruned.event_time
        return pruned.seq + 1, mac

    def _verify_records(self, key: bytes, expected: int, prev: bytes, wanted: set[int],
                        macs_at: dict[int, bytes], rep: VerifyReport) -> int:
        """Stream every record in pages (the log can be large); returns the last seq seen."""
        after, page = expected - 1, 5000
        while True:
            with self.store.reading() as conn:
                rows = conn.execute(select(audit_events).where(audit_events.c.seq > after)
                                    .order_by(audit_events.c.seq).limit(page)).all()
            if not rows:
                return expected - 1
            for r in rows:
                self._verify_record(key, r, expected, prev, rep)
                if r.seq in wanted:
                    macs_at[r.seq] = bytes(r.mac)
                prev, expected = bytes(r.mac), r.seq + 1
            after = rows[-1].seq

    def _verify_record(self, key: bytes, r, expected: int, prev: bytes, rep: VerifyReport) -> None:
        seq = r.seq
        rep.checked += 1
        if r.format != FORMAT_VERSION:
            rep.problem(seq, "format", f"record {seq}: unknown format {r.format}")
        if seq != expected:
            rep.problem(seq, "missing",
                        f"record {expected} is missing (deleted)" if seq == expected + 1 else
                        f"records {expected}..{seq - 1} are missing (deleted)")
        if not same(bytes(r.mac), event_mac(key, seq, prev, r.event)):
            rep.problem(seq, "altered",
                        f"record {seq}{_event_id(r.event)} fails its MAC: it was edited, inserted, "
                        "moved, or the record before it was removed")
        elif not self._columns_match(r):
            rep.problem(seq, "index", f"record {seq}{_event_id(r.event)}: its filter columns "
                        "were edited (the event itself is intact)")

    @staticmethod
    def _check_given_anchor(want: tuple[int, bytes], macs_at: dict[int, bytes], pruned,
                            rep: VerifyReport) -> None:
        aseq, amac = want
        got = macs_at.get(aseq)
        if pruned is not None and aseq == pruned.seq:
            got = bytes(pruned.mac)
        if aseq == 0:
            return
        if got is None and pruned is not None and aseq < pruned.seq:
            rep.notes.append(f"record {aseq} named by the given anchor was pruned: it can no "
                             "longer be compared")
        elif got is None:
            rep.problem(aseq, "truncated", f"record {aseq} named by the given anchor is missing: "
                        "the log was truncated, rolled back or replaced")
        elif not same(got, amac):
            rep.problem(aseq, "anchor", f"record {aseq} differs from the given anchor: the log "
                        "was rolled back or replaced")

    @staticmethod
    def _columns_match(r) -> bool:
        try:
            ev = json.loads(r.event)
            when = datetime.fromtimestamp(r.event_time, UTC)
            want = _index_columns(ev, when)
            return (want["event_name"] == r.event_name and want["principal"] == r.principal
                    and want["key_ids"] == r.key_ids and want["error_code"] == r.error_code
                    and int(r.event_time) == int(_parse_event_time(ev["eventTime"])))
        except Exception:
            return False


def _event_id(body: str) -> str:
    try:
        return f" (eventID {json.loads(body)['eventID']})"
    except Exception:
        return ""


def _parse_anchor(text: str) -> tuple[int, bytes]:
    m = re.fullmatch(r"\s*(\d+):([0-9a-fA-F]{64})\s*", text or "")
    if not m:
        raise ValueError("an anchor is SEQ:HEX as printed by `kms audit anchor` "
                         "(a record number, a colon and 64 hex digits)")
    return int(m.group(1)), bytes.fromhex(m.group(2))

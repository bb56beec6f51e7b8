"""Limit / Marker / NextMarker for the List* operations."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kms_core.errors import KMSError

from .records import Params, Result


def limit(p: Params, default: int) -> int:
    # The per-operation range (e.g. 1–100 for ListAliases) is enforced by the operation table.
    value = p.get("Limit")
    return default if value is None else int(value)


def make_marker(last: str, kind: str) -> str:
    # Opaque to callers; names the list it belongs to so it cannot be replayed on another.
    return base64.urlsafe_b64encode(json.dumps({"list": kind, "after": last}).encode()).decode()


def marker(p: Params, kind: str) -> str | None:
    """Where the page starts (None: at the beginning); InvalidMarkerException for a marker
    that this list did not hand out."""
    value = p.get("Marker")
    if value is None:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(value.encode()))
        after = doc["after"]
        if not isinstance(after, str) or doc.get("list") != kind:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeError):
        raise KMSError("InvalidMarkerException",
                       "The marker that specifies where pagination should next begin is not valid.") from None


def page(entries: list[dict[str, Any]], sort_key: str, p: Params, default: int, list_name: str,
         kind: str) -> Result:
    """One page of ``entries`` (already sorted by ``sort_key``)."""
    n = limit(p, default)
    after = marker(p, kind)
    if after is not None:
        entries = [e for e in entries if e[sort_key] > after]
    chunk, more = entries[:n], len(entries) > n
    out: Result = {list_name: chunk, "Truncated": more}
    if more:
        out["NextMarker"] = make_marker(chunk[-1][sort_key], kind)
    return out


__all__ = ["limit", "make_marker", "marker", "page"]

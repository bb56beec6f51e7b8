"""Event history: the CloudTrail-style audit page, and the chain's verification status."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LIMITS = (25, 50, 100, 500)


def parse_time(text: str) -> float | None:
    """``datetime-local`` input (taken as UTC) or ISO 8601 -> epoch seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def summarize(ev: dict) -> dict:
    ident = ev.get("userIdentity") or {}
    keys = [r.get("ARN", "") for r in ev.get("resources") or []]
    return {"seq": ev.get("_seq"), "time": ev.get("eventTime"), "name": ev.get("eventName"),
            "principal": ident.get("arn") or ident.get("type", ""), "keys": keys,
            "key_ids": [k.rsplit("/", 1)[-1] for k in keys],
            "source": ev.get("sourceIPAddress"), "error": ev.get("errorCode"),
            "message": ev.get("errorMessage"),
            "json": json.dumps({k: v for k, v in ev.items() if k != "_seq"}, indent=2)}


def routes(con) -> list[Route]:
    async def page(request: Request) -> Response:
        session = await con.session(request)
        qp = request.query_params
        filters = {"key": qp.get("key", "").strip()[:2048], "principal": qp.get("principal", "").strip()[:2048],
                   "operation": qp.get("operation", "").strip()[:512], "start": qp.get("start", "")[:40],
                   "end": qp.get("end", "")[:40], "errors": qp.get("errors") == "1"}
        limit = int(qp["limit"]) if qp.get("limit", "").isdigit() and int(qp["limit"]) in LIMITS else 50
        bad_time = [n for n in ("start", "end") if filters[n] and parse_time(str(filters[n])) is None]
        events, error = [], None
        try:
            raw = await run_in_threadpool(lambda: con.backend.events(
                limit=limit, key=filters["key"] or None, principal=filters["principal"] or None,
                operation=filters["operation"] or None, start=parse_time(str(filters["start"])),
                end=parse_time(str(filters["end"])), errors_only=bool(filters["errors"])))
            events = [summarize(e) for e in raw]
            verification = await run_in_threadpool(con.backend.verification)
        except Exception as e:  # the log is missing or unreadable: an alarm, not a crash
            error = f"The audit log cannot be read ({type(e).__name__})."
            verification = None
        return await con.render(request, "audit.html", session, nav="audit", events=events, filters=filters,
                                limit=limit, limits=LIMITS, verification=verification, read_error=error,
                                bad_time=bad_time, auditing=con.backend.auditing)

    return [Route("/console/audit", page, methods=["GET"])]

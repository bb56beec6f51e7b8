"""``kms audit verify|tail|anchor|export|prune``: read, check, export and prune the audit trail.

Exit codes: 0 success; 1 ``verify`` found tampering; 2 bad command line;
255 the store cannot be opened or read (AWS CLI's code for other failures).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .audit import AuditReader, _parse_anchor, retention
from .errors import StoreError
from .settings import Settings
from .store import Store

RC_OK, RC_TAMPERED, RC_USAGE, RC_ERROR = 0, 1, 2, 255

_HELP = """\
kms audit verify [--anchor SEQ:HEX] [--output text|json]
    Check every record's MAC, the chain order and the anchor; name each
    record that was edited, deleted (also at the end), inserted or moved.
    Exit 1 when anything is wrong.
kms audit tail [-n N | --all] [--follow [--interval S] [--timeout S]]
               [--key KEY] [--principal WHO] [--operation NAME[,NAME]]
               [--start-time T] [--end-time T] [--errors-only] [--output json|text]
    The newest N events (default 10), oldest first, as JSON lines (default)
    or one readable line each.  KEY: key id, key ARN, alias name or alias
    ARN.  WHO: a principal ARN, an IAM user name or "root".  T: ISO 8601
    (2026-01-31T12:00:00Z) or epoch seconds.
kms audit anchor
    Print the current anchor (SEQ:HEX).  Keep it outside the store; a later
    `verify --anchor` then also detects the log being rolled back or replaced.
kms audit export [--output PATH|URL|-] [--format jsonl|cloudtrail]
                 [--start-time T] [--end-time T] [--no-progress]
    Write events, oldest first, as JSON lines (default) or as CloudTrail's
    log-file shape {"Records": [...]}; to stdout (default), a file (created
    0600) or an fsspec URL such as s3://bucket/key (needs fsspec).
kms audit prune --before T [--export PATH|URL] [--format jsonl|cloudtrail]
                [--chunk N] [--no-progress]
    Remove the records older than T behind a MAC'd anchor that `verify`
    checks (records are verified first; a tampered one is never pruned).
    With --export, those records are exported first.  Safe to interrupt:
    run the same command again to resume.
All commands take --store-url (default: KMS_STORE_URL or $KMS_HOME/kms.db)."""


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # no SystemExit from inside `kms`
        raise _Usage(message)


def _parser() -> _Parser:
    p = _Parser(prog="kms audit", add_help=False, usage=_HELP)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("--store-url", default=None)
    v = sub.add_parser("verify", parents=[common], add_help=False)
    v.add_argument("--anchor", default=None)
    v.add_argument("--output", choices=("text", "json"), default="text")
    sub.add_parser("anchor", parents=[common], add_help=False)
    t = sub.add_parser("tail", parents=[common], add_help=False)
    t.add_argument("-n", "--lines", type=int, default=10)
    t.add_argument("--all", action="store_true")
    t.add_argument("-f", "--follow", action="store_true")
    t.add_argument("--interval", type=float, default=1.0)
    t.add_argument("--timeout", type=float, default=None)
    t.add_argument("--key", default=None)
    t.add_argument("--principal", default=None)
    t.add_argument("--operation", "--event-name", dest="operation", default=None)
    t.add_argument("--start-time", default=None)
    t.add_argument("--end-time", default=None)
    t.add_argument("--errors-only", action="store_true")
    t.add_argument("--output", choices=("text", "json"), default="json")
    e = sub.add_parser("export", parents=[common], add_help=False)
    e.add_argument("--output", "-o", default="-")
    e.add_argument("--format", choices=("jsonl", "cloudtrail"), default="jsonl")
    e.add_argument("--start-time", default=None)
    e.add_argument("--end-time", default=None)
    e.add_argument("--no-progress", action="store_true")
    pr = sub.add_parser("prune", parents=[common], add_help=False)
    pr.add_argument("--before", required=True)
    pr.add_argument("--export", default=None)
    pr.add_argument("--format", choices=("jsonl", "cloudtrail"), default="jsonl")
    pr.add_argument("--chunk", type=int, default=5000)
    pr.add_argument("--no-progress", action="store_true")
    return p


def _time(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
    except ValueError:
        raise _Usage(f"{option}: {value!r} is not a time; use ISO 8601 "
                     "(2026-01-31T12:00:00Z) or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _reader(store_url):
    return AuditReader(Store(Settings.from_env(store_url=store_url)))


def _check(args) -> None:
    """Semantic checks of the command line; raises _Usage."""
    if args.command is None:
        raise _Usage("choose a command: verify, tail, anchor, export or prune")
    if args.command == "export":
        args.start = _time(args.start_time, "--start-time")
        args.end = _time(args.end_time, "--end-time")
    if args.command == "prune":
        args.before_ts = _time(args.before, "--before")
        if args.chunk < 1:
            raise _Usage("--chunk must be 1 or more")
    if args.command == "tail":
        if args.lines < 0:
            raise _Usage("-n must be 0 or more")
        if args.interval <= 0:
            raise _Usage("--interval must be more than 0")
        args.start = _time(args.start_time, "--start-time")
        args.end = _time(args.end_time, "--end-time")
    if args.command == "verify" and args.anchor:
        try:
            _parse_anchor(args.anchor)
        except ValueError as e:
            raise _Usage(f"--anchor: {e}") from None


def main(argv: list[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_HELP)
        return RC_OK if argv else RC_USAGE
    try:
        args = _parser().parse_args(argv)
        _check(args)
    except _Usage as e:
        sys.stderr.write(f"kms audit: error: {e}\n(see `kms audit --help`)\n")
        return RC_USAGE
    try:
        reader = _reader(args.store_url)
        if args.command == "verify":
            return _verify(reader, args)
        if args.command == "anchor":
            print(reader.current_anchor())
            return RC_OK
        if args.command == "export":
            return _export(reader, args)
        if args.command == "prune":
            return _prune(reader, args)
        return _tail(reader, args)
    except KeyboardInterrupt:
        return RC_OK if getattr(args, "follow", False) else 130
    except Exception as e:  # one line, never a traceback; messages carry no secrets
        sys.stderr.write(f"kms audit: {_describe(e, args)}\n")
        return RC_ERROR


def _describe(e: Exception, args) -> str:
    if isinstance(e, StoreError):
        return str(e)
    if isinstance(e, SQLAlchemyError):
        try:
            url = make_url(Settings.from_env(store_url=args.store_url).store_url)
            where = url.render_as_string(hide_password=True)
        except Exception:
            where = "the store"
        cause = getattr(e, "orig", None) or e
        first = (str(cause).strip().splitlines() or [""])[0][:300]
        return f"cannot read {where} ({type(cause).__name__}: {first})"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _verify(reader, args) -> int:
    rep = reader.verify(anchor=args.anchor)
    if args.output == "json":
        print(json.dumps({"ok": rep.ok, "checked": rep.checked, "anchor": rep.anchor,
                          "pruned": rep.pruned_seq, "notes": rep.notes,
                          "problems": [{"record": p.seq, "kind": p.kind, "message": p.message}
                                       for p in rep.problems]}, indent=2))
    elif rep.ok:
        pruned = (f" after records 1..{rep.pruned_seq} pruned (up to {_iso(rep.pruned_time)}) "
                  "behind a verified anchor" if rep.pruned_seq else "")
        print(f"OK: {rep.checked} records verified{pruned}; anchor {rep.anchor}")
        for note in rep.notes:
            print(f"note: {note}")
    else:
        for p in rep.problems:
            print(f"TAMPERED: {p.message}")
        print(f"FAILED: {len(rep.problems)} problem(s) in {rep.checked} records")
    return RC_OK if rep.ok else RC_TAMPERED


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bar(args, total: int, unit: str):
    from tqdm import tqdm  # noqa: PLC0415 - cold start: only export and prune draw a bar
    return tqdm(total=total, unit=unit, disable=args.no_progress or None, file=sys.stderr,
                dynamic_ncols=True)


def _export(reader, args) -> int:
    total = retention.count_events(reader.store, before=_end_exclusive(args.end), after=args.start)
    with _bar(args, total, "event") as bar, retention.open_output(args.output) as out:
        n = retention.write_events(out, retention.iter_events(
            reader.store, before=_end_exclusive(args.end), after=args.start), args.format, bar.update)
    sys.stderr.write(f"exported {n} events\n")
    return RC_OK


def _end_exclusive(end: float | None) -> float | None:
    return None if end is None else end + 1e-6  # --end-time is inclusive, as in tail


def _prune(reader, args) -> int:
    store = reader.store
    target = retention.prune_target(store, args.before_ts)
    if args.export:
        total = retention.count_events(store, up_to_seq=target)
        with _bar(args, total, "event") as bar, retention.open_output(args.export) as out:
            n = retention.write_events(out, retention.iter_events(store, up_to_seq=target),
                                       args.format, bar.update)
        sys.stderr.write(f"exported {n} events to {args.export}\n")
    already = reader.pruned()
    left = max(0, target - (already[0] if already else 0))
    with _bar(args, left, "record") as bar:
        res = retention.prune(store, args.before_ts, chunk=args.chunk, progress=bar.update)
    print(f"pruned {res.removed} records; records 1..{res.pruned_to} are behind the anchor")
    return RC_OK


def _filters(args) -> dict:
    return {"key": args.key, "principal": args.principal, "operation": args.operation,
            "start": args.start, "end": args.end, "errors_only": args.errors_only}


def _tail(reader, args) -> int:
    filters = _filters(args)
    rows = reader.events(limit=None if args.all else args.lines, **filters)
    last = rows[-1][0] if rows else reader.last_seq()
    out = sys.stdout
    for seq, body in rows:
        out.write(_format(seq, body, args.output) + "\n")
    out.flush()
    if not args.follow:
        return RC_OK
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while deadline is None or time.monotonic() < deadline:
        time.sleep(args.interval if deadline is None
                   else max(0.0, min(args.interval, deadline - time.monotonic())))
        for seq, body in reader.events(after_seq=last, **filters):
            out.write(_format(seq, body, args.output) + "\n")
            last = seq
        out.flush()
    return RC_OK


def _format(seq: int, body: str, output: str) -> str:
    if output == "json":
        return body
    ev = json.loads(body)
    ui = ev.get("userIdentity") or {}
    who = (ui.get("userName") or ("root" if ui.get("type") == "Root" else None)
           or ui.get("arn") or f"unknown{' ' + ui['accessKeyId'] if ui.get('accessKeyId') else ''}")
    keys = ",".join("key/" + r["ARN"].rsplit("/", 1)[-1] for r in ev.get("resources") or []) or "-"
    status = ev.get("errorCode", "OK")
    line = (f"{ev.get('eventTime')} #{seq:<7} {ev.get('eventName', ''):<32} {status:<30} "
            f"{who:<20} {keys} from {ev.get('sourceIPAddress')}")
    if ev.get("errorMessage"):
        line += f" — {ev['errorMessage'][:200]}"
    return line

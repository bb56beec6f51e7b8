"""``kms db ...``: rotation and migration tools on the command line.

    kms db rewrap --url URL --key-id alias/new [--from-key-id alias/old]
    kms db reencrypt --url URL --column myapp.models:User.ssn
    kms db encrypt-column --url URL --column myapp.models:User.ssn
    kms db decrypt-column --url URL --column myapp.models:User.ssn

``--column`` names the column as the model declares it (an encrypted type):
``module:Class.attribute`` or ``module:table.column``.  Every command is
batched and resumable: after an interruption, run it again.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import EncryptedColumnError


def _resolve(spec: str):
    if ":" not in spec or "." not in spec.split(":", 1)[1]:
        raise EncryptedColumnError(f"--column must look like module:Class.attribute, got {spec!r}",
                                   code="ValidationException")
    module, path = spec.split(":", 1)
    owner_name, attr = path.rsplit(".", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module)
        for part in owner_name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise EncryptedColumnError(f"cannot import {module}:{owner_name} ({err})",
                                   code="ValidationException") from None
    if hasattr(obj, "c") and hasattr(obj, "columns"):  # a Table
        if attr not in obj.c:
            raise EncryptedColumnError(f"table {obj.name} has no column {attr}",
                                       code="ValidationException")
        return obj.c[attr]
    if not hasattr(obj, attr):
        raise EncryptedColumnError(f"{owner_name} has no attribute {attr}",
                                   code="ValidationException")
    return getattr(obj, attr)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kms db", description="Rotation and migration tools for encrypted columns; "
        "batched and resumable (after an interruption, run the same command again).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--url", required=True, help="SQLAlchemy database URL")
        sp.add_argument("--batch-size", type=int, default=500)
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")
        sp.add_argument("--endpoint-url", help="KMS endpoint (default: the embedded engine)")

    sp = sub.add_parser("rewrap", help="rewrap data keys under another KMS key (rows untouched)")
    common(sp)
    sp.add_argument("--key-id", required=True, help="destination KMS key id, alias or ARN")
    sp.add_argument("--from-key-id", help="only data keys wrapped under this KMS key")
    for name, text in (("reencrypt", "re-encrypt a randomized column under a fresh data key "
                                      "(a deterministic column keeps its key)"),
                       ("encrypt-column", "encrypt an existing plaintext column in place"),
                       ("decrypt-column", "decrypt a column in place (leaving the product)")):
        sp = sub.add_parser(name, help=text)
        common(sp)
        sp.add_argument("--column", required=True, help="module:Class.attribute")
        if name != "reencrypt":
            sp.add_argument("--no-alter", action="store_true",
                            help="do not change the column's SQL type")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.batch_size < 1:
        print("kms db: --batch-size must be at least 1", file=sys.stderr)
        return 2
    from sqlalchemy import create_engine  # noqa: PLC0415 - cold start: `kms db --help` loads no SQLAlchemy
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - as above

    from . import configure, tools  # noqa: PLC0415 - as above
    if args.endpoint_url:
        import kms_core  # noqa: PLC0415 - as above
        configure(kms=kms_core.client(endpoint_url=args.endpoint_url))
    engine = create_engine(args.url)
    progress = not args.no_progress
    try:
        if args.command == "rewrap":
            n = tools.rewrap(engine, args.key_id, from_key_id=args.from_key_id,
                             batch_size=args.batch_size, progress=progress)
            print(f"rewrapped {n} data keys under {args.key_id}")
        else:
            column = _resolve(args.column)
            fn = {"reencrypt": tools.reencrypt, "encrypt-column": tools.encrypt_column,
                  "decrypt-column": tools.decrypt_column}[args.command]
            kw = {} if args.command == "reencrypt" else {"alter": not args.no_alter}
            n = fn(engine, column, batch_size=args.batch_size, progress=progress, **kw)
            print(f"{args.command}: {n} values processed")
            if args.command == "reencrypt" and getattr(column.type, "deterministic", False):
                print("deterministic column: its data key stays (equality lookups and UNIQUE need "
                      "one key); values under any other key were moved onto it. To rotate what "
                      "protects it, run `kms db rewrap` or rotate its KMS key.")
        return 0
    except KeyboardInterrupt:
        print("kms db: interrupted; committed batches are kept, run the same command "
              "again to resume", file=sys.stderr)
        return 130
    except EncryptedColumnError as err:
        print(f"kms db: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # database/driver errors: one line, no traceback
        if isinstance(err, SQLAlchemyError):
            print(f"kms db: database error: {type(err).__name__}: "
                  f"{str(err).splitlines()[0]}", file=sys.stderr)
            return 1
        raise
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())

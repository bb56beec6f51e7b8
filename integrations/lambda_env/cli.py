"""kms env encrypt|decrypt|exec: Lambda-style encrypted environment variables.

    kms env encrypt 's3cret' --function-name orders-api     # console-style value
    kms env encrypt DB_PASSWORD=s3cret API_TOKEN=t0k        # NAME=<value> lines
    kms env encrypt --file .env -o .env.encrypted           # kms-env v1 file
    kms env decrypt .env.encrypted                          # prints NAME=plaintext
    kms env exec --file .env.encrypted -- python app.py     # child gets plaintext
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from .errors import SecretError

_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)


def _client(args: argparse.Namespace) -> Any:
    from .core import resolve_client  # noqa: PLC0415 - cold start: `kms env --help` loads no KMS code
    return resolve_client(args.endpoint_url)[0]


def _context(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Usage(f"--context takes KEY=VALUE (got {key!r} without '=')")
        out[key] = value
    return out


class _Usage(Exception):
    pass


def _quote(value: str) -> str:
    """dotenv quoting that python-dotenv, docker and shells read back."""
    if value and all(c.isalnum() or c in "_-.,:/@+=%" for c in value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write(path: str | None, text: str) -> None:
    if not path or path == "-":
        sys.stdout.write(text)
        return
    # Write beside the target then rename, so a failure never leaves half a file.
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint-url", help="remote KMS (default: AWS_ENDPOINT_URL_KMS, else embedded)")
    p.add_argument("--key-id", help="KMS key (encrypt default: alias/aws/lambda; decrypt: pins the key)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kms env", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encrypt", help="encrypt values the way the Lambda console does")
    enc.add_argument("items", nargs="*", metavar="VALUE | NAME=VALUE",
                     help="one value, or NAME=VALUE pairs")
    enc.add_argument("--value", help="encrypt this text as is (even if it looks like NAME=VALUE)")
    enc.add_argument("--stdin", action="store_true",
                     help="read one value from standard input (keeps it out of shell history)")
    enc.add_argument("--file", help="plaintext .env file to encrypt into a kms-env file ('-' = stdin)")
    enc.add_argument("-o", "--output", help="write here (mode 0600) instead of standard output")
    enc.add_argument("--function-name", help="add the console's context {LambdaFunctionName: NAME}")
    enc.add_argument("--context", action="append", metavar="KEY=VALUE",
                     help="extra encryption context pair (repeatable)")
    _add_common(enc)

    dec = sub.add_parser("decrypt", help="print decrypted values")
    dec.add_argument("file", nargs="?", help="encrypted .env file (kms-env v1)")
    dec.add_argument("--value", help="one console- or CLI-style value")
    dec.add_argument("--name", action="append", default=[],
                     help="decrypt this variable of the current environment (repeatable)")
    dec.add_argument("--format", choices=("dotenv", "json"), default="dotenv")
    _add_ctx(dec)
    _add_common(dec)

    ex = sub.add_parser("exec", help="run a command with decrypted variables in its environment")
    ex.add_argument("--file", action="append", default=[], help="encrypted .env file (repeatable)")
    ex.add_argument("--name", action="append", default=[],
                    help="variable of the current environment to decrypt (repeatable)")
    _add_ctx(ex)
    _add_common(ex)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return parser


def _add_ctx(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--function-name",
                   help="try only the console context of this function (default: "
                        "AWS_LAMBDA_FUNCTION_NAME's context, then no context)")
    g.add_argument("--no-context", action="store_true", help="try only no encryption context")


def _contexts(args: argparse.Namespace) -> list | None:
    from .core import function_context  # noqa: PLC0415 - cold start: as above
    if args.function_name:
        return [function_context(args.function_name)]
    if args.no_context:
        return [None]
    return None


def _encrypt(args: argparse.Namespace) -> int:
    from .core import encrypt_value  # noqa: PLC0415 - cold start: as above
    from .envfile import encrypt_env_file, read_plain_env  # noqa: PLC0415 - cold start: as above
    ctx = _context(args.context)
    sources = sum(bool(x) for x in (args.items, args.value is not None, args.stdin, args.file))
    if sources != 1:
        raise _Usage("give exactly one of: VALUE, NAME=VALUE pairs, --value, --stdin, --file")
    kms = _client(args)
    common: dict[str, Any] = {"kms": kms, "key_id": args.key_id,
                              "function_name": args.function_name, "context": ctx or None}
    if args.file:
        text = encrypt_env_file(read_plain_env(_read(args.file)), **common)
        _write(args.output, text)
        return 0
    if args.value is not None or args.stdin:
        value = args.value
        if args.stdin:
            value = sys.stdin.read()
            value = value[:-1] if value.endswith("\n") else value
        _write(args.output, encrypt_value(value, **common) + "\n")
        return 0
    pairs = [_PAIR.match(item) for item in args.items]
    if len(args.items) == 1 and pairs[0] is None:
        _write(args.output, encrypt_value(args.items[0], **common) + "\n")
        return 0
    if not all(pairs):
        raise _Usage("several arguments must all be NAME=VALUE pairs")
    lines = [f"{m.group(1)}={encrypt_value(m.group(2), name=m.group(1), **common)}"
             for m in pairs if m is not None]  # all are (checked above)
    _write(args.output, "\n".join(lines) + "\n")
    return 0


def _decrypted(args: argparse.Namespace, files: list[str]) -> dict[str, str]:
    from .core import EnvSecrets  # noqa: PLC0415 - cold start: as above
    from .envfile import decrypt_env_file  # noqa: PLC0415 - cold start: as above
    kms = _client(args)
    out: dict[str, str] = {}
    for path in files:
        out.update(decrypt_env_file(_read(path), kms=kms, key_id=args.key_id))
    if args.name:
        secrets = EnvSecrets(kms=kms, contexts=_contexts(args), key_id=args.key_id)
        out.update(secrets.get_many(args.name))
    return out


def _decrypt(args: argparse.Namespace) -> int:
    if sum(bool(x) for x in (args.file, args.value is not None, args.name)) != 1:
        raise _Usage("give exactly one of: FILE, --value, --name")
    if args.value is not None:
        from .core import _blob, decrypt_value  # noqa: PLC0415 - cold start: as above
        _blob(args.value, "the value")  # refuse a non-ciphertext before opening any store
        plaintext = decrypt_value(args.value, kms=_client(args), contexts=_contexts(args),
                                  key_id=args.key_id)
        sys.stdout.buffer.write(plaintext + b"\n")
        sys.stdout.flush()
        return 0
    values = _decrypted(args, [args.file] if args.file else [])
    if args.format == "json":
        sys.stdout.write(json.dumps(values, indent=2) + "\n")
    else:
        sys.stdout.write("".join(f"{k}={_quote(v)}\n" for k, v in values.items()))
    return 0


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise _Usage("give the command after '--'")
    if not args.file and not args.name:
        raise _Usage("give --file and/or --name")
    from .core import _check_environ_safe  # noqa: PLC0415 - cold start: as above
    env = dict(os.environ)
    for name, value in _decrypted(args, args.file).items():
        _check_environ_safe(name, value)
        env[name] = value
    import subprocess  # noqa: PLC0415 - cold start: only `kms env exec` runs a child
    sys.stdout.flush()
    try:
        rc = subprocess.call(cmd, env=env)
    except FileNotFoundError:
        print(f"kms env exec: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"kms env exec: permission denied: {cmd[0]}", file=sys.stderr)
        return 126
    return 128 - rc if rc < 0 else rc


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run = {"encrypt": _encrypt, "decrypt": _decrypt, "exec": _exec}[args.command]
    try:
        return run(args)
    except _Usage as exc:
        parser.error(str(exc))
    except SecretError as exc:
        print(f"kms env {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kms env {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except Exception as exc:
        # The embedded engine's own errors (e.g. a wrong root key): message only.
        if type(exc).__module__.startswith("kms_core"):
            print(f"kms env {args.command}: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``kms fs …``: encrypt existing data, rewrap headers, inspect a file.

    kms fs encrypt SRC [DEST] [--key-id K] [--context k=v]... [--storage-options JSON]
    kms fs rewrap PATH [--key-id NEW]
    kms fs inspect PATH
"""
from __future__ import annotations

import argparse
import json
import sys

RC_OK, RC_ERROR, RC_USAGE, RC_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage-options", metavar="JSON", default="{}",
                        help="fsspec storage options for the URL, e.g. "
                             '\'{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}\'')
    common.add_argument("--kms-endpoint", metavar="URL",
                        help="a KMS endpoint (our server or AWS); default: the embedded engine")
    common.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                        help="encryption-context pair (repeatable)")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(prog="kms fs", description="Encrypted filesystem tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encrypt", parents=[common],
                         help="encrypt an existing prefix or directory (resumable)")
    enc.add_argument("src", help="file, directory or prefix URL (s3://b/p, /data, file://...)")
    enc.add_argument("dest", nargs="?", help="destination (default: encrypt in place)")
    enc.add_argument("--key-id", help="KMS key id, alias or ARN (default: the AWS managed key)")
    enc.add_argument("--bind-path", action="store_true",
                     help="bind each file's path into its encryption context")
    enc.add_argument("--chunk-size", type=int, default=65536)
    rew = sub.add_parser("rewrap", parents=[common],
                         help="re-wrap data keys under another key (no re-encryption)")
    rew.add_argument("path", help="file, directory or prefix URL")
    rew.add_argument("--key-id", help="destination key (default: each file's current key)")
    ins = sub.add_parser("inspect", parents=[common], help="show a file's header")
    ins.add_argument("path")
    return parser


def _context(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--context expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return RC_OK if e.code == 0 else RC_USAGE
    try:
        return _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: finished files are encrypted, the rest are untouched; "
                         "run the same command again to continue\n")
        return RC_INTERRUPTED
    except Exception as e:  # one line for users, never a traceback
        sys.stderr.write(f"kms fs {args.command}: {type(e).__name__}: {e}\n")
        return RC_ERROR


def _run(args) -> int:
    from . import tools  # noqa: PLC0415 - `kms` cold start: fsspec and tqdm only for `kms fs`

    storage_options = json.loads(args.storage_options)
    if not isinstance(storage_options, dict):
        raise ValueError("--storage-options must be a JSON object")
    fs_options: dict = {"encryption_context": _context(args.context)}
    if args.kms_endpoint:
        fs_options["kms_endpoint"] = args.kms_endpoint
    progress = not args.no_progress and sys.stderr.isatty()
    if args.command == "encrypt":
        fs_options.update(key_id=args.key_id, bind_path=args.bind_path, chunk_size=args.chunk_size)
        summary = tools.encrypt_tree(args.src, args.dest, storage_options=storage_options,
                                     fs_options=fs_options, progress=progress)
        print(f"encrypted {len(summary.done)} files ({summary.bytes} bytes); "
              f"{len(summary.skipped)} already encrypted")
    elif args.command == "rewrap":
        summary = tools.rewrap_tree(args.path, destination_key_id=args.key_id,
                                    storage_options=storage_options, fs_options=fs_options,
                                    progress=progress)
        print(f"rewrapped {len(summary.done)} files; {len(summary.skipped)} not encrypted")
    else:
        import fsspec  # noqa: PLC0415 - as above

        from .core import EncryptedFileSystem  # noqa: PLC0415 - as above
        inner, path = fsspec.core.url_to_fs(args.path, **storage_options)
        efs = EncryptedFileSystem(fs=inner, skip_instance_cache=True, **fs_options)
        header, f, size, _ = efs.open_header(path)
        f.close()
        print(json.dumps({"path": path, "key_id": header.key_id,
                          "encryption_context": header.context, "chunk_size": header.chunk_size,
                          "header_size": header.header_size, "ciphertext_size": size,
                          "plaintext_size": efs.info(path)["size"]}, indent=2))
    return RC_OK

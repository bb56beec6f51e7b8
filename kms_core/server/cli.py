"""``kms serve`` and the access-key commands (entry points in pyproject's ``kms.commands``)."""
from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import socket
import sys
from typing import Any

from kms_core.errors import KMSError, StoreError

log = logging.getLogger("kms.server")

DEFAULT_PORT = 8080
_FD_RESERVE = 128  # descriptors a worker keeps for its database, audit log, logs and listener


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_bind(host: str, tls: bool, allow_insecure: bool) -> tuple[str | None, str | None]:
    """(error, warning) for serving on ``host``: plain HTTP off loopback needs an explicit flag."""
    if tls or _is_loopback(host):
        return None, None
    if not allow_insecure:
        return (f"refusing to serve plain HTTP on {host}, which is not a loopback address: "
                "give --tls-cert/--tls-key, or --allow-insecure-bind to accept the risk"), None
    return None, (f"serving PLAIN HTTP on non-loopback address {host} (--allow-insecure-bind): "
                  "requests and responses, including plaintext and data keys, travel unencrypted")


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound (None if it can), checked the way
    uvicorn binds (SO_REUSEADDR), so that ``kms serve`` says so before it
    prints an address it will not serve."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"cannot resolve --host {host}: {e.strerror}"
    for family, kind, proto, _, addr in infos[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return f"port {port} on {host} is already in use (is another server running?)"
                return f"cannot listen on {host}:{port}: {e.strerror}"
    return None


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (at most 65,536;
    workers inherit it) and return the limit in force."""
    import resource  # noqa: PLC0415 - POSIX only, and only for `kms serve`

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 65536


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    return parse


def _fail(message: str, code: int = 2) -> int:
    print(f"kms: error: {message}", file=sys.stderr)
    return code


def _service_error(err: KMSError, operation: str) -> int:
    # AWS CLI's one-line shape and exit status for service errors.
    print(f"An error occurred ({err.code}) when calling the {operation} operation: {err.message}",
          file=sys.stderr)
    return 255


def serve_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="kms serve",
        description="Serve the key store over AWS KMS's wire protocol (AWS JSON 1.1, SigV4).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the number of CPUs)")
    p.add_argument("--store-url", default=None,
                   help="SQLAlchemy URL of the key store (default: KMS_STORE_URL or $KMS_HOME/kms.db)")
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    p.add_argument("--allow-insecure-bind", action="store_true",
                   help="allow plain HTTP on a non-loopback address")
    p.add_argument("--dev-credentials", action="store_true",
                   help="DEVELOPMENT ONLY: accept any access key as the account root")
    p.add_argument("--max-body", type=_positive(int), default=None,
                   help="request body limit in bytes (default 1 MiB)")
    p.add_argument("--max-header-bytes", type=_positive(int), default=16 * 1024,
                   help="limit of the request line and headers in bytes (default 16384)")
    p.add_argument("--header-timeout", type=_positive(float), default=10.0,
                   help="seconds a request's line and headers may take to arrive (default 10)")
    p.add_argument("--body-timeout", type=_positive(float), default=30.0,
                   help="seconds a request's body may take to arrive after its headers (default 30)")
    p.add_argument("--idle-timeout", type=_positive(float), default=5.0,
                   help="seconds a connection may stay idle, before its first request or between "
                        "requests (default 5)")
    p.add_argument("--max-connections", type=_positive(int), default=None,
                   help="open connections per worker; beyond it a new connection closes the oldest "
                        "idle or slow one (default: from the open-file limit, at most 4096)")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds to let in-flight requests finish on SIGTERM (default 30)")
    p.add_argument("--engine-calls", choices=["loop", "threads"], default="loop",
                   help="answer from memory on the event loop and send only calls that need the "
                        "database to a thread pool (default), or run every engine call in the pool")
    p.add_argument("--no-audit", action="store_true",
                   help="do not record requests in the audit log (docs/audit-log.md); on by default")
    p.add_argument("--audit-writer", choices=["process", "thread"], default="process",
                   help="render and append audit events in a child process of each worker, out of "
                        "the event loop's GIL (default), or in a thread of the worker")
    p.add_argument("--no-console", action="store_true", help="do not serve the web console under /console/")
    p.add_argument("--access-log", action="store_true", help="log every request line")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = p.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("--tls-cert and --tls-key go together")
    for f in (args.tls_cert, args.tls_key):
        if f is not None and not os.path.isfile(f):
            return _fail(f"no such file: {f}")
    tls = args.tls_cert is not None
    error, warning = check_bind(args.host, tls, args.allow_insecure_bind)
    if error:
        return _fail(error)
    if warning:
        log.warning("%s", warning)
    if args.port < 0 or args.port > 65535:
        return _fail("--port must be 0-65535")
    workers = args.workers or os.cpu_count() or 1
    if workers < 1:
        return _fail("--workers must be at least 1")
    busy = port_in_use(args.host, args.port)
    if busy:
        return _fail(busy, 1)
    files = raise_fd_limit()
    max_connections = args.max_connections or max(16, min(4096, files - _FD_RESERVE))
    if max_connections > files - _FD_RESERVE:
        log.warning("--max-connections %d is close to the open-file limit (%d): raise `ulimit -n`",
                    max_connections, files)

    from .app import CONFIG_ENV, MAX_BODY_BYTES, ServerConfig  # noqa: PLC0415 - the engine: not for --help or errors

    config = ServerConfig(store_url=args.store_url, dev_credentials=args.dev_credentials,
                          max_body=args.max_body or MAX_BODY_BYTES, engine_calls=args.engine_calls,
                          audit=not args.no_audit, audit_writer=args.audit_writer,
                          console=not args.no_console,
                          max_header_bytes=args.max_header_bytes, header_timeout=args.header_timeout,
                          body_timeout=args.body_timeout, max_connections=max_connections)
    # Open the store once here: a wrong root key or an unreachable database is
    # reported once, clearly, and a new store is created before workers race.
    try:
        from kms_core.settings import Settings  # noqa: PLC0415 - cold start of `kms`
        from kms_core.store import Store  # noqa: PLC0415 - cold start of `kms`

        from .credentials import access_key_services, access_keys  # noqa: PLC0415 - cold start of `kms`

        store = Store(Settings.from_env(store_url=args.store_url))
        store.ensure_tables(access_keys, access_key_services)
        store.dispose()
    except StoreError as e:
        return _fail(str(e), 1)
    except Exception as e:  # e.g. a database driver error: no traceback for users
        return _fail(f"cannot open the key store: {type(e).__name__}: {e}", 1)
    if args.dev_credentials:
        log.warning("--dev-credentials: ANY access key is accepted as the account root. Development only.")

    os.environ[CONFIG_ENV] = config.to_env()
    import signal  # noqa: PLC0415 - only when serving

    import uvicorn  # noqa: PLC0415 - only when serving (cold start of `kms`)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the
    # signal under the handlers it found; these make that a normal exit (0).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)

    scheme = "https" if tls else "http"
    log.info("kms serve: %s://%s:%d with %d worker(s)", scheme, args.host, args.port, workers)
    uvicorn.run(
        "kms_core.server.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="kms_core.server.protocol:HttpProtocol",
        lifespan="on",
        access_log=args.access_log,
        proxy_headers=False,  # the audit log's source IP must not be spoofable by a header
        server_header=False,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        timeout_graceful_shutdown=args.graceful_timeout,
        timeout_keep_alive=args.idle_timeout,
        log_level=args.log_level,
        backlog=2048,
    )
    return 0


def _keys(store_url: str | None):
    from kms_core.settings import Settings  # noqa: PLC0415 - cold start of `kms`
    from kms_core.store import Store  # noqa: PLC0415 - cold start of `kms`

    from .credentials import AccessKeys  # noqa: PLC0415 - cold start of `kms`

    settings: Any = Settings.from_env(store_url=store_url)  # its attributes are set dynamically
    return AccessKeys(Store(settings), settings.account_id)


def _run(operation: str, fn) -> int:
    try:
        out = fn()
    except KMSError as e:
        return _service_error(e, operation)
    except StoreError as e:
        return _fail(str(e), 1)
    if out is not None:
        print(json.dumps(out, indent=4))
    return 0


def create_access_key_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kms create-access-key",
                                description="Create an access key for SigV4 requests to `kms serve` "
                                            "(prints the secret once, in IAM's CreateAccessKey shape).")
    p.add_argument("--user-name", required=True)
    p.add_argument("--service", default=None,
                   help="our addition: the key signs requests coming through this service (e.g. s3, "
                        "lambda), so it may use that service's AWS-managed key alias/aws/SERVICE "
                        "(docs/policies.md)")
    p.add_argument("--store-url", default=None)
    a = p.parse_args(argv)
    return _run("CreateAccessKey", lambda: _keys(a.store_url).create(a.user_name, a.service))


def list_access_keys_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kms list-access-keys",
                                description="List access keys (never their secrets), in IAM's ListAccessKeys shape.")
    p.add_argument("--user-name", default=None)
    p.add_argument("--store-url", default=None)
    a = p.parse_args(argv)
    return _run("ListAccessKeys", lambda: _keys(a.store_url).list(a.user_name))


def delete_access_key_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kms delete-access-key", description="Delete an access key.")
    p.add_argument("--access-key-id", required=True)
    p.add_argument("--user-name", default=None)
    p.add_argument("--store-url", default=None)
    a = p.parse_args(argv)

    def go():
        _keys(a.store_url).delete(a.access_key_id, a.user_name)
        return None

    return _run("DeleteAccessKey", go)

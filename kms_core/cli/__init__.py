"""``kms``: the AWS CLI's ``aws kms`` for the local engine (or any endpoint).

``kms <operation> [--param ...]`` for every operation in botocore's KMS model,
with AWS CLI v1's option names, value syntax, output formats and exit codes;
other names are looked up in the ``kms.commands`` entry-point group.

Exit codes are AWS CLI v1's (https://docs.aws.amazon.com/cli/v1/userguide/cli-usage-returncodes.html,
checked against awscli 1.45): 0 success; 2 when argparse rejects the command
line (missing required option, unknown command, malformed option); 255 for
everything else — service errors, bad parameter values, unknown options;
130 on Ctrl-C.

Imports are kept lazy: ``kms --version`` and ``kms encrypt`` load neither
boto3 nor botocore's session machinery.
"""
from __future__ import annotations

import io
import logging
import os
import sys

__all__ = ["main"]

RC_OK = 0
RC_USAGE = 2  # argparse's code, which AWS CLI v1 keeps for command-line syntax errors
RC_ERROR = 255  # AWS CLI v1: any failure, service errors included
RC_INTERRUPTED = 130

ENTRY_POINT_GROUP = "kms.commands"


class _Usage(Exception):
    def __init__(self, message: str, code: int = RC_USAGE, argparse_style: bool = True):
        super().__init__(message)
        self.code = code
        self.argparse_style = argparse_style


def main(argv: list[str] | None = None) -> int:
    """Run ``kms`` with ``argv`` (without the program name); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        rc = _run(argv, debug)
        sys.stdout.flush()  # here, so a closed pipe is handled below and not at interpreter exit
        return _commit_audit(rc)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return RC_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error, as in the AWS CLI.
        _silence_stdout()
        return RC_OK
    except _Usage as e:
        from .argparsing import USAGE  # noqa: PLC0415 - start-up: each command loads only what it uses

        if e.argparse_style:
            sys.stderr.write(f"usage: {USAGE}kms: error: {e}\n")
        else:
            sys.stderr.write(f"usage: {USAGE}{e}\n")
        return e.code
    except Exception as e:  # the one place that turns any failure into one line
        if debug:
            import traceback  # noqa: PLC0415 - start-up: each command loads only what it uses

            traceback.print_exc()
        _error(_describe(e))
        return _commit_audit(RC_ERROR)
    finally:
        _commit_audit(RC_OK)  # idempotent: whatever path was taken, the events are committed


# The embedded engine's audit log while a command runs (see _embedded_client).
_audit_logs: list = []


def _commit_audit(rc: int) -> int:
    """Commit the audit events of this run before the process exits; a call whose event
    cannot be committed fails the command (every call is in the audit trail)."""
    committed = True
    while _audit_logs:
        audit = _audit_logs.pop()
        committed = audit.flush(timeout=30.0) and committed
        audit.close()
    if not committed:
        _error("The audit log could not record this call (its store is unreachable); "
               "the call itself may have taken effect.")
        return RC_ERROR
    return rc


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _error(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def _describe(e: Exception) -> str:
    """The user-facing text of an error: AWS CLI's wording where it has one."""
    text = str(e)
    name = type(e).__name__
    if name == "NoRegionError":
        return f"{text} You can also configure your region with --region or AWS_DEFAULT_REGION."
    if name == "NoCredentialsError":
        return f"{text}. Credentials for --endpoint-url come from the usual AWS sources (environment, --profile)."
    module = type(e).__module__ or ""
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:
        # A service error (botocore's ClientError or a subclass made for a code outside the
        # model): its text is already the AWS CLI's one line.
        return text
    if module.startswith(("kms_core.cli", "botocore")):
        return text or name  # awscli's own multi-line messages (caret under a shorthand error, report lists)
    # Anything else gets one line; --debug shows the rest.
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if module.startswith("kms_core.errors") or isinstance(e, (ValueError, OSError)):
        return first or name
    return f"{name}: {first}" if first else name


def _version() -> str:
    import platform  # noqa: PLC0415 - start-up: each command loads only what it uses
    from importlib import metadata  # noqa: PLC0415 - start-up: each command loads only what it uses

    try:
        version = metadata.version("kms-local")
    except metadata.PackageNotFoundError:  # running from a source tree
        version = "0+unknown"
    return f"kms/{version} Python/{platform.python_version()} {platform.system()}/{platform.release()}"


def _user_agent() -> str:
    """The CLI's user agent in its audit events, shaped like the AWS CLI's ``aws-cli/…``
    (the package's own version string: importlib.metadata would cost ~10 ms a call)."""
    import platform  # noqa: PLC0415 - start-up: each command loads only what it uses

    from kms_core import __version__  # noqa: PLC0415 - start-up: each command loads only what it uses

    uname = os.uname() if hasattr(os, "uname") else None
    system, release = (uname.sysname, uname.release) if uname else (platform.system(), platform.release())
    return f"kms-cli/{__version__} Python/{platform.python_version()} {system}/{release}"


def _os_user() -> str:
    """The operating-system user running this process: the effective uid's name (not $USER,
    which the caller sets at will)."""
    try:
        import pwd  # noqa: PLC0415 - POSIX only; start-up: each command loads only what it uses

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # Windows, or a uid without a passwd entry
        import getpass  # noqa: PLC0415 - start-up: each command loads only what it uses

        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _global_parser():
    from .argparsing import USAGE, ArgParser  # noqa: PLC0415 - start-up: each command loads only what it uses

    p = ArgParser(usage=USAGE)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--endpoint-url")
    p.add_argument("--no-verify-ssl", action="store_false", dest="verify_ssl", default=None)
    p.add_argument("--no-paginate", action="store_false", dest="paginate")
    p.add_argument("--output", choices=["json", "text", "table"])
    p.add_argument("--query")
    p.add_argument("--profile")
    p.add_argument("--region")
    # Our addition, not an AWS CLI option: act as this principal on the embedded engine.
    p.add_argument("--principal")
    p.add_argument("--version", action="store_true")
    p.add_argument("-h", "--help", action="store_true", dest="show_help")
    p.add_argument("--color", choices=["on", "off", "auto"], default="auto")
    p.add_argument("--no-sign-request", action="store_false", dest="sign_request")
    p.add_argument("--ca-bundle")
    p.add_argument("--cli-read-timeout", type=int, dest="read_timeout")
    p.add_argument("--cli-connect-timeout", type=int, dest="connect_timeout")
    p.add_argument("--v2-debug", action="store_true")
    p.add_argument("--no-cli-pager", action="store_true")  # AWS CLI v2 option; we never page
    p.add_argument("--cli-binary-format", choices=["raw-in-base64-out", "base64"], default=None)
    p.add_argument("command", nargs="?")
    return p


_VALUED_GLOBALS = {"--endpoint-url", "--output", "--query", "--profile", "--region", "--color", "--ca-bundle",
                   "--cli-read-timeout", "--cli-connect-timeout", "--cli-binary-format", "--principal"}


def _command_index(argv: list[str]) -> int | None:
    """Where the command name is: the first word that is not a global option or its value."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-"):
            return i
        i += 2 if word in _VALUED_GLOBALS else 1
    return None


def _run(argv: list[str], debug: bool) -> int:
    from .argparsing import UsageError  # noqa: PLC0415 - start-up: each command loads only what it uses

    at = _command_index(argv)
    if at is not None and argv[at] != "help":
        from kms_core import model  # noqa: PLC0415 - start-up: each command loads only what it uses

        if model.by_cli_name(argv[at]) is None:
            plugin = _plugins().get(argv[at])
            if plugin is not None:
                # A plug-in parses its own arguments, globals after its name included.
                return _run_plugin(plugin, argv[at + 1:])

    try:
        g, remaining = _global_parser().parse_known_args(argv)
    except UsageError as e:
        raise _Usage(str(e)) from None
    if g.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
        # botocore's wire logging would print request bodies (plaintext, data keys): keep it quiet.
        for noisy in ("botocore", "urllib3", "boto3"):
            logging.getLogger(noisy).setLevel(logging.INFO)
    if g.version:
        sys.stdout.write(_version() + "\n")
        return RC_OK
    if g.command is None and not g.show_help:
        raise _Usage("the following arguments are required: command")
    if g.command == "help" or g.command is None:
        from kms_core import model  # noqa: PLC0415 - start-up: each command loads only what it uses

        from . import helptext  # noqa: PLC0415 - start-up: each command loads only what it uses

        if remaining and model.by_cli_name(remaining[0]) is not None:  # `kms help encrypt`
            return _run_operation(model.by_cli_name(remaining[0]), ["help"], g)
        served = set(_served())
        ops = _operations()
        sys.stdout.write(helptext.main_help([o for o in ops if o.name in served],
                                            [o for o in ops if o.name not in served], sorted(_plugins())))
        return RC_OK

    from kms_core import model  # noqa: PLC0415 - start-up: each command loads only what it uses

    op = model.by_cli_name(g.command)
    if op is None:
        raise _Usage(_invalid_choice(g.command))
    if g.show_help:
        remaining = ["help"]
    return _run_operation(op, remaining, g)


def _operations():
    from kms_core import model  # noqa: PLC0415 - start-up: each command loads only what it uses

    return sorted(model.OPERATIONS.values(), key=lambda o: o.cli_name)


def _served() -> list[str]:
    """The operations the embedded engine serves: the table says (``Operation.handler``), so
    listing them does not import the engine (``kms --help`` stays fast)."""
    return [o.name for o in _operations() if o.handler is not None]


def _plugins() -> dict:
    from importlib import metadata  # noqa: PLC0415 - start-up: each command loads only what it uses

    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


class PluginError(Exception):
    pass


def _run_plugin(entry_point, args: list[str]) -> int:
    try:
        function = entry_point.load()
    except (ImportError, AttributeError) as e:
        raise PluginError(f"The '{entry_point.name}' command is registered ({entry_point.value}) "
                          f"but cannot be loaded: {e}") from e
    result = function(args)
    return RC_OK if result is None else int(result)


def _invalid_choice(name: str) -> str:
    import difflib  # noqa: PLC0415 - start-up: each command loads only what it uses

    choices = [op.cli_name for op in _operations()] + sorted(_plugins()) + ["help"]
    lines = ["argument command: Invalid choice, valid choices are:", ""]
    for i in range(0, len(choices), 2):
        lines.append(" | ".join(f"{c:<40}" for c in choices[i:i + 2]))
    close = difflib.get_close_matches(name, choices, cutoff=0.8)
    if close:
        lines += ["", "", f"Invalid choice: {name!r}, maybe you meant:", ""]
        lines += [f"  * {c}" for c in close]
    return "\n".join(lines)


def _console_policy_options(op, args: list[str]) -> tuple[list[str], str | None]:
    """`create-key --key-administrators ARN… --key-users ARN…`: the console's setup
    steps, turned into its key policy (docs/policies.md).  Returns the remaining
    arguments and the policy, if any was asked for."""
    if op.name != "CreateKey":
        return args, None
    rest: list[str] = []
    picked: dict[str, list[str]] = {"--key-administrators": [], "--key-users": []}
    current: str | None = None
    for a in args:
        if a in picked:
            current = a
        elif current is not None and not a.startswith("--"):
            picked[current].append(a)
        else:
            current = None
            rest.append(a)
    admins, users = picked["--key-administrators"], picked["--key-users"]
    if not admins and not users:
        return args, None
    if "--policy" in rest:
        raise _Usage("--policy cannot be combined with --key-administrators/--key-users",
                     code=RC_ERROR, argparse_style=False)
    import re  # noqa: PLC0415 - start-up: each command loads only what it uses

    from kms_core.policy import console_policy  # noqa: PLC0415 - start-up: each command loads only what it uses

    accounts = {m.group(1) for a in admins + users
                if (m := re.match(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):", a))}
    if len(accounts) != 1:
        raise _Usage("--key-administrators and --key-users must be IAM ARNs of one account",
                     code=RC_ERROR, argparse_style=False)
    imported = any(a == "EXTERNAL" for a in rest[rest.index("--origin") + 1:][:1]) if "--origin" in rest else False
    return rest, console_policy(accounts.pop(), administrators=admins, users=users,
                                allow_account=False, imported=imported)


def _run_operation(op, args: list[str], g) -> int:
    from . import params as P  # noqa: PLC0415 - start-up: each command loads only what it uses
    from .spec import xform_name  # noqa: PLC0415 - start-up: each command loads only what it uses

    args, console = _console_policy_options(op, args)
    table = P.build_arguments(op)
    try:
        parsed, wants_help = P.parse_operation_args(op, table, args)
    except P.UsageError as e:
        raise _Usage(str(e)) from None
    except P.UnknownArgumentError as e:
        raise _Usage(str(e), code=RC_ERROR, argparse_style=False) from None
    if wants_help:
        from . import helptext  # noqa: PLC0415 - start-up: each command loads only what it uses

        sys.stdout.write(helptext.operation_help(op, P.build_arguments(op, with_docs=True)))
        return RC_OK

    output = g.output or os.environ.get("AWS_DEFAULT_OUTPUT") or "json"
    if output not in ("json", "text", "table"):
        raise ValueError(f"Unknown output type: {output}")
    query = _compile_query(g.query)
    binary_format = g.cli_binary_format or "raw-in-base64-out"

    call_params, paging = P.build_call(op, table, parsed, binary_format)
    if console is not None:
        call_params["Policy"] = console

    if getattr(parsed, "generate_cli_skeleton", None):
        from .skeleton import skeleton  # noqa: PLC0415 - start-up: each command loads only what it uses

        if parsed.generate_cli_skeleton == "input":
            import json  # noqa: PLC0415 - start-up: each command loads only what it uses

            sys.stdout.write(json.dumps(skeleton(op.input_shape), indent=4) + "\n")
            return RC_OK
        _display(op, skeleton(op.output_shape, use_member_names=True), output, query)
        return RC_OK

    paginator = op.paginator
    paginate = g.paginate and paginator is not None
    if paginator is not None:
        tokens = P._paging_inputs(paginator)
        if any(getattr(parsed, xform_name(t)) is not None for t in tokens):
            paginate = False  # --marker/--limit on the command line: the user pages by hand (one call)
        if not paginate and paging:
            used = ", ".join("--" + name for name in P.PAGING_OPTIONS if name in paging)
            raise P.PaginationError(f"Cannot specify --no-paginate along with pagination arguments: {used}")
        if paginate:
            for name in tokens:  # as in AWS CLI v1, paging inputs from --cli-input-json are ignored
                call_params.pop(name, None)

    method = _method(op, _client(g))
    if paginate:
        from .paginate import Pages  # noqa: PLC0415 - start-up: each command loads only what it uses

        pages = Pages(method, paginator, call_params, max_items=paging.get("max-items"),
                      page_size=paging.get("page-size"), starting_token=paging.get("starting-token"))
        _display_pages(op, pages, output, query)
        return RC_OK
    _display(op, method(**call_params), output, query)
    return RC_OK


class OperationError(Exception):
    """A service error, in the AWS CLI's one-line wording."""

    def __init__(self, code: str, operation: str, message: str):
        super().__init__(f"An error occurred ({code}) when calling the {operation} operation: {message}")


def _method(op, client):
    """The client's method for ``op``; engine errors that escape as KMSError get the AWS wording too."""
    from kms_core.errors import KMSError  # noqa: PLC0415 - start-up: each command loads only what it uses

    method = getattr(client, op.py_name, None)
    if method is None:
        raise OperationError("UnsupportedOperationException", op.name, f"{op.name} is not supported by this client.")

    def call(**params):
        try:
            return method(**params)
        except KMSError as e:
            raise OperationError(e.code, op.name, e.message) from None

    return call


def _compile_query(expression):
    if expression is None:
        return None
    import jmespath  # noqa: PLC0415 - start-up: each command loads only what it uses

    try:
        return jmespath.compile(expression)
    except Exception as e:
        raise ValueError(f"Bad value for --query {expression}: {e}") from None


def _client(g):
    """The embedded engine's client, or (``--endpoint-url`` / ``AWS_ENDPOINT_URL_KMS``) a real
    boto3 client with the AWS CLI's connection options."""
    endpoint = g.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS")
    if not endpoint:
        return _embedded_client(g)
    if g.principal:
        raise ValueError("--principal applies to the embedded engine only: an endpoint "
                         "knows its caller from the access key that signs the request.")
    from urllib.parse import urlparse  # noqa: PLC0415 - start-up: each command loads only what it uses

    if not urlparse(endpoint).scheme:
        raise ValueError(f'Bad value for --endpoint-url "{endpoint}": scheme is missing.  '
                         "Must be of the form http://<hostname>/ or https://<hostname>/")
    import boto3  # noqa: PLC0415 - start-up: each command loads only what it uses
    from botocore.config import Config  # noqa: PLC0415 - start-up: each command loads only what it uses

    config = {}
    if g.read_timeout is not None:
        config["read_timeout"] = g.read_timeout or None
    if g.connect_timeout is not None:
        config["connect_timeout"] = g.connect_timeout or None
    if g.sign_request is False:
        from botocore import UNSIGNED  # noqa: PLC0415 - start-up: each command loads only what it uses

        config["signature_version"] = UNSIGNED
    kwargs = {}
    if config:
        kwargs["config"] = Config(**config)
    if g.verify_ssl is False:
        kwargs["verify"] = False
    elif g.ca_bundle:
        kwargs["verify"] = g.ca_bundle
    # What kms_core.client(endpoint_url=...) returns, built here directly: that function imports
    # the embedded engine first (~0.45 s of CPU a remote command does not need), and --profile
    # needs its own session anyway.  The region falls back like the embedded engine's default
    # instead of failing with NoRegionError.
    session = boto3.session.Session(profile_name=g.profile)
    region = g.region or os.environ.get("KMS_REGION") or session.region_name or "us-east-1"
    return session.client("kms", endpoint_url=endpoint, region_name=region, **kwargs)


def _embedded_client(g):
    """A client on the embedded engine whose every call is audited: as the trusted local
    application, or as ``--principal`` / ``KMS_PRINCIPAL`` (key policies and grants apply),
    with the OS user and the CLI's user agent in each event (docs/audit-log.md)."""
    from kms_core import arn  # noqa: PLC0415 - start-up: each command loads only what it uses
    from kms_core.audit import attach  # noqa: PLC0415 - start-up: each command loads only what it uses
    from kms_core.embedded import KMSClient  # noqa: PLC0415 - start-up: each command loads only what it uses
    from kms_core.engine import RequestContext, get_engine  # noqa: PLC0415 - start-up: each command loads only what it uses
    from kms_core.settings import Settings  # noqa: PLC0415 - start-up: each command loads only what it uses

    principal = g.principal or os.environ.get("KMS_PRINCIPAL") or None
    if principal is not None and not (principal.startswith("arn:") and arn.is_grant_principal(principal)):
        raise ValueError(f"Bad value for --principal {principal!r}: expected an IAM principal ARN "
                         "(arn:aws:iam::<account>:user/<name>, :role/<name> or :root, or an "
                         "arn:aws:sts:: session)")
    settings = Settings.from_env(region=g.region)
    engine = get_engine(settings)
    _audit_logs.append(attach(engine))
    ctx = RequestContext(region=settings.region, account_id=settings.account_id, principal=principal,
                         source_ip=None, user_agent=_user_agent(), source_identity=_os_user())
    return KMSClient(engine, ctx)


def _stdout():
    return sys.stdout


def _display(op, response, output: str, query) -> None:
    from .output import format_json, format_text, to_wire  # noqa: PLC0415 - start-up: each command loads only what it uses

    data = to_wire(response)
    if query is not None:
        data = query.search(data)
    if output == "json":
        format_json(data, _stdout())
    elif output == "text":
        format_text(data, _stdout())
    else:
        _format_table(op, data)
    sys.stdout.flush()


def _display_pages(op, pages, output: str, query) -> None:
    from .output import format_text, to_wire  # noqa: PLC0415 - start-up: each command loads only what it uses

    if output != "text":
        _display(op, pages.build_full_result(), output, query)
        return
    # AWS CLI v1 prints text page by page (the query applies to each page), then the NextToken.
    stream = _stdout()
    for page in pages:
        data = to_wire(pages.strip_tokens(page))
        format_text(query.search(data) if query is not None else data, stream)
    if pages.resume_token is not None:
        # awscli 1.45 runs --query over this line too, which prints "None" and loses the token.
        format_text({"NextToken": {"NextToken": pages.resume_token}}, stream)
    sys.stdout.flush()


def _format_table(op, data) -> None:
    from .table import format_table  # noqa: PLC0415 - start-up: each command loads only what it uses

    format_table(op.name, data, _stdout())

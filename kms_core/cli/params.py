"""Operation options generated from the service model, and turning their values into API parameters.

Mirrors awscli 1.45 (``clidriver.ServiceOperation``, ``arguments``,
``argprocess``, ``customizations/paginate.py``, ``cliinputjson.py``):

* every input member ``FooBar`` becomes ``--foo-bar``; booleans also get ``--no-foo-bar``;
  lists take several values (``--grant-tokens a b``);
* a value may come from ``file://path`` (text) or ``fileb://path`` (raw bytes);
* structures, maps and lists of structures take shorthand (``purpose=test``) or JSON;
* a blob given as a plain string is that string's UTF-8 bytes (AWS CLI v1's rule;
  ``--cli-binary-format base64`` selects v2's rule, base64 text);
* paginated operations get ``--starting-token``, ``--page-size``, ``--max-items``;
* ``--cli-input-json`` supplies parameters as one JSON document.

Checking the values against the model (types, unknown members, minimums) is left
to the client: the embedded one checks exactly what botocore checks, with botocore's
messages, and a remote one is botocore.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import json

from kms_core.model import Operation, Shape

from . import shorthand
from .argparsing import USAGE, ArgParser, UsageError  # noqa: F401 - re-exported
from .paramfiles import ParamFileError, get_paramfile
from .spec import member_doc, xform_name

SCALAR_TYPES = {"string", "float", "integer", "long", "boolean", "double", "blob", "timestamp"}
PAGING_OPTIONS = ("starting-token", "page-size", "max-items")


class ParamError(Exception):
    """A value that cannot be turned into a parameter (awscli's wording)."""

    def __init__(self, cli_name: str, message: str):
        super().__init__(f"Error parsing parameter '{cli_name}': {message}")


class UnknownArgumentError(Exception):
    pass


class PaginationError(Exception):
    pass


class Argument:
    """One ``--option`` of an operation."""

    def __init__(self, name: str, shape: Shape | None, member: str | None, required: bool = False,
                 action: str | None = None, dest: str | None = None, documentation: str = ""):
        self.name = name
        self.shape = shape
        self.member = member  # the API parameter it sets; None for CLI-only options
        self.required = required
        self.action = action
        self.dest = dest or name.replace("-", "_")
        self.documentation = documentation
        self.hidden = False

    @property
    def cli_name(self) -> str:
        return "--" + self.name

    @property
    def kind(self) -> str:
        if self.action in ("store_true", "store_false"):
            return "boolean"
        return self.shape.type if self.shape is not None else "string"

    def add_to_parser(self, parser: argparse.ArgumentParser, required: bool) -> None:
        if self.action:
            parser.add_argument(self.cli_name, action=self.action, dest=self.dest, default=None)
        elif self.kind == "list":
            parser.add_argument(self.cli_name, dest=self.dest, nargs="*", required=required)
        else:
            parser.add_argument(self.cli_name, dest=self.dest, required=required)


_PAGING_HELP = {
    "starting-token": "A token to specify where to start paginating. This is the NextToken from a "
                      "previously truncated response.",
    "page-size": "The size of each page to get in the AWS service call. This does not affect the "
                 "number of items returned in the command's output.",
    "max-items": "The total number of items to return in the command's output. If more are "
                 "available, a NextToken is provided to resume from.",
}


def build_arguments(op: Operation, with_docs: bool = False) -> dict[str, Argument]:
    """The operation's options, in the model's member order."""
    table: dict[str, Argument] = {}
    shape = op.input_shape
    if shape is not None:
        required = set(shape.required)
        for member, member_shape in shape.members.items():
            name = xform_name(member, "-")
            doc = member_doc(op.name, member) if with_docs else ""
            if member_shape.type == "boolean":
                table[name] = Argument(name, member_shape, member, action="store_true", dest=name.replace("-", "_"),
                                       documentation=doc)
                neg = Argument("no-" + name, member_shape, member, action="store_false",
                               dest=name.replace("-", "_"), documentation=doc)
                neg.hidden = True
                table["no-" + name] = neg
            else:
                table[name] = Argument(name, member_shape, member, required=member in required, documentation=doc)
    paginator = op.paginator
    if paginator:
        for token in _paging_inputs(paginator):
            table[xform_name(token, "-")].hidden = True
        for name in PAGING_OPTIONS:
            if name == "page-size" and "limit_key" not in paginator:
                continue
            table[name] = Argument(name, None, None, documentation=_PAGING_HELP[name])
    table["cli-input-json"] = Argument(
        "cli-input-json", None, None,
        documentation="Reads arguments from the JSON string provided. The JSON string follows the format "
                      "provided by --generate-cli-skeleton. Values given on the command line override it.")
    table["generate-cli-skeleton"] = Argument(
        "generate-cli-skeleton", None, None,
        documentation="Prints a JSON skeleton to standard output without sending an API request. "
                      "'input' (the default) shows the parameters, 'output' the response shape.")
    return table


def _paging_inputs(paginator: dict) -> list[str]:
    tokens = paginator["input_token"]
    tokens = list(tokens) if isinstance(tokens, list) else [tokens]
    if "limit_key" in paginator:
        tokens.append(paginator["limit_key"])
    return tokens


def parse_operation_args(op: Operation, table: dict[str, Argument], args: list[str]):
    """argparse the operation's options; returns (namespace, wants_help)."""
    if args == ["help"]:
        return None, True
    # Like awscli: --cli-input-json or --generate-cli-skeleton may supply what is otherwise required.
    relaxed = any(a in ("--cli-input-json", "--generate-cli-skeleton") or
                  a.startswith(("--cli-input-json=", "--generate-cli-skeleton=")) for a in args)
    parser = ArgParser(usage=USAGE)
    for arg in table.values():
        if arg.name == "generate-cli-skeleton":
            parser.add_argument(arg.cli_name, dest=arg.dest, nargs="?", const="input",
                                choices=["input", "output"])
            continue
        arg.add_to_parser(parser, arg.required and not relaxed)
    parser.add_argument("help", nargs="?")
    parsed, remaining = parser.parse_known_args(args)
    if parsed.help == "help":
        return parsed, True
    if parsed.help:
        remaining.append(parsed.help)
    if remaining:
        raise UnknownArgumentError(f"Unknown options: {', '.join(remaining)}")
    return parsed, False


def build_call(op: Operation, table: dict[str, Argument], parsed: argparse.Namespace,
               binary_format: str = "raw-in-base64-out") -> tuple[dict, dict]:
    """API parameters, and the paging options given (``{"max-items": 2, ...}``), from parsed options."""
    params: dict = {}
    paging: dict = {}
    values = vars(parsed)
    cli_json = values.get("cli_input_json")
    if cli_json is not None:
        # Its blobs are text too (v1: the text's bytes), like values typed on the command line.
        params.update(_blobs(op.input_shape, _load_cli_input_json(cli_json), "--cli-input-json", binary_format,
                             False))
    for arg in table.values():
        value = values.get(arg.dest)
        if value is None or arg.member is None:
            if value is not None and arg.name in PAGING_OPTIONS:
                paging[arg.name] = _paging_value(arg, value)
            continue
        if arg.action:  # --flag / --no-flag
            params[arg.member] = value
            continue
        params[arg.member] = unpack(arg, value, binary_format)
    return params, paging


def _paging_value(arg: Argument, value: str):
    if arg.name == "starting-token":
        return value
    try:
        return int(value)
    except ValueError:
        raise ParamError(arg.cli_name, f"expected an integer, received: {value!r}") from None


def _load_cli_input_json(value: str) -> dict:
    try:
        loaded = get_paramfile(value)
    except ParamFileError as e:
        raise ParamError("--cli-input-json", str(e)) from None
    if loaded is not None:
        value = loaded.decode("utf-8") if isinstance(loaded, bytes) else loaded
    try:
        data = json.loads(value)
    except ValueError as e:
        raise ParamError("--cli-input-json", f"Invalid JSON received: {e}") from None
    if not isinstance(data, dict):
        raise ParamError("--cli-input-json", "Invalid JSON received: expected a JSON object")
    return data


def unpack(arg: Argument, value, binary_format: str = "raw-in-base64-out"):
    """One option's command-line value to its Python API value (awscli's order:
    param file, then shorthand, then JSON or scalar conversion, then blobs)."""
    cli_name, shape = arg.cli_name, arg.shape
    if shape is None:  # only the model's members are unpacked; the CLI's own options have no shape
        raise ParamError(cli_name, "this option takes no value from the model")
    from_binary_file = False
    candidate = value[0] if isinstance(value, list) and len(value) == 1 else value
    try:
        loaded = get_paramfile(candidate)
    except ParamFileError as e:
        raise ParamError(cli_name, str(e)) from None
    if loaded is not None:
        value = loaded
        from_binary_file = isinstance(loaded, bytes)
    kind = shape.type
    if kind in SCALAR_TYPES:
        result = _scalar(shape, value, cli_name)
    else:
        if isinstance(value, bytes):
            value = _utf8(value, cli_name)
        result = _complex(shape, value, cli_name)
    return _blobs(shape, result, cli_name, binary_format, from_binary_file)


def _utf8(value: bytes, cli_name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParamError(cli_name, "the file's contents are not UTF-8 text") from None


def _scalar(shape: Shape, value, cli_name: str):
    kind = shape.type
    if isinstance(value, bytes) and kind != "blob":
        value = _utf8(value, cli_name)
    if kind in ("integer", "long"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ParamError(cli_name, f"expected an integer, received: {value!r}") from None
    if kind in ("float", "double"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParamError(cli_name, f"expected a number, received: {value!r}") from None
    if kind == "boolean":
        if isinstance(value, str) and value.lower() == "false":
            return False
        return bool(value)
    if kind == "timestamp":
        return _timestamp(value, cli_name)
    return value


def _timestamp(value, cli_name: str):
    if isinstance(value, datetime.datetime):
        return value
    text = str(value).strip()
    try:
        return datetime.datetime.fromtimestamp(float(text), datetime.UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ParamError(cli_name, f"Invalid timestamp value: {text!r} (use ISO 8601 or "
                                   "seconds since the epoch)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _looks_like_json(value) -> bool:
    check = value[0] if isinstance(value, list) and value else value
    return isinstance(check, str) and check.strip().startswith(("[", "{"))


def _element(shape: Shape) -> Shape:
    """A list's member shape (always present for lists in the model)."""
    if shape.member is None:
        raise ValueError(f"list shape {shape.name} has no member")
    return shape.member


def _supports_shorthand(shape: Shape) -> bool:
    if shape.type == "list":
        return _element(shape).type in ("structure", "list", "map")
    return shape.type in ("structure", "map")


def _complex(shape: Shape, value, cli_name: str):
    if _supports_shorthand(shape) and not _looks_like_json(value):
        parser = shorthand.ShorthandParser()
        try:
            parsed = [parser.parse(v) for v in value] if isinstance(value, list) else parser.parse(value)
            shorthand.coerce(parsed, shape)
        except shorthand.ShorthandParseError as e:
            raise ParamError(cli_name, str(e)) from None
        except ParamFileError as e:
            raise ParamError(cli_name, str(e)) from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ParamError(cli_name, f"a value does not fit the parameter's type ({e})") from None
        return parsed
    kind = shape.type
    if kind in ("structure", "map"):
        if isinstance(value, str) and value.lstrip().startswith("{"):
            return _json(value, cli_name)
        raise ParamError(cli_name, f"Invalid JSON:\n{value}")
    # A list: one JSON array, or one value per element.
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return _json(value, cli_name)
        value = [value]
    if len(value) == 1 and value[0].strip().startswith("["):
        return _json(value[0], cli_name)
    member = _element(shape)
    if member.type in SCALAR_TYPES:
        return [_scalar(member, v, cli_name) for v in value]
    return [_complex(member, v, cli_name) for v in value]


def _json(value: str, cli_name: str):
    try:
        return json.loads(value)
    except ValueError as e:
        raise ParamError(cli_name, f"Invalid JSON: {e}\nJSON received: {value}") from None


def _blobs(shape: Shape, value, cli_name: str, binary_format: str, raw: bool):
    """Strings given for blob shapes become bytes (v1: the text's UTF-8; v2 base64 mode: decoded)."""
    kind = shape.type
    if kind == "blob":
        if isinstance(value, str):
            if binary_format == "base64" and not raw:
                try:
                    return base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise ParamError(cli_name, "Invalid base64 (with --cli-binary-format base64, blob "
                                               "values are base64 text; use fileb:// for raw bytes)") from None
            return value.encode("utf-8", "surrogateescape")  # undecodable argv bytes come back as they were
        return value
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: _blobs(members[k], v, cli_name, binary_format, False) if k in members else v
                for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_blobs(_element(shape), v, cli_name, binary_format, False) for v in value]
    if kind == "map" and isinstance(value, dict) and shape.value is not None:
        return {k: _blobs(shape.value, v, cli_name, binary_format, False) for k, v in value.items()}
    if kind == "timestamp" and value is not None and not isinstance(value, datetime.datetime):
        return _timestamp(value, cli_name)
    return value

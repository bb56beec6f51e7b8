"""``kms help``, ``kms <command> help``: plain-text help from the service model's documentation."""
from __future__ import annotations

import html.parser
import shutil
import textwrap

from .spec import operation_doc

GLOBAL_OPTIONS = [
    ("--endpoint-url URL", "Send requests to this KMS endpoint (a real boto3 client) instead of the "
                           "embedded engine. Also AWS_ENDPOINT_URL_KMS."),
    ("--region REGION", "The region to use (default: KMS_REGION, AWS_REGION, AWS_DEFAULT_REGION, us-east-1)."),
    ("--profile NAME", "The AWS profile for credentials when talking to --endpoint-url."),
    ("--output json|text|table", "The formatting style for command output (default json; AWS_DEFAULT_OUTPUT)."),
    ("--query EXPR", "A JMESPath query to use in filtering the response data."),
    ("--no-paginate", "Make one call for the first page of results only."),
    ("--cli-binary-format FMT", "raw-in-base64-out (AWS CLI v1, default): a blob given as text is that text's "
                                "bytes; base64: it is base64 (AWS CLI v2)."),
    ("--debug", "Show the full traceback of unexpected errors and debug logging."),
    ("--no-verify-ssl", "Do not verify the endpoint's TLS certificate."),
    ("--ca-bundle PATH", "CA bundle for verifying the endpoint's TLS certificate."),
    ("--cli-read-timeout N", "Socket read timeout in seconds (0 blocks)."),
    ("--cli-connect-timeout N", "Socket connect timeout in seconds (0 blocks)."),
    ("--no-sign-request", "Do not sign requests to --endpoint-url."),
    ("--color on|off|auto", "Accepted for AWS CLI compatibility."),
    ("--no-cli-pager", "Accepted for AWS CLI v2 compatibility (kms never pages)."),
    ("--version", "Display the version of this tool."),
]


class _HTMLToText(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._list_depth = 0

    def _flush(self):
        text = " ".join("".join(self._current).split())
        if text:
            indent = "  " * max(self._list_depth - 1, 0)
            prefix = indent + "* " if self._list_depth else ""
            self.blocks.append(prefix + text)
        self._current = []

    def handle_starttag(self, tag, attrs):
        if tag in ("p", "li", "br", "note", "important", "dd", "dt"):
            self._flush()
        if tag in ("ul", "ol"):
            self._flush()
            self._list_depth += 1

    def handle_endtag(self, tag):
        if tag in ("p", "li", "note", "important", "dd", "dt"):
            self._flush()
        if tag in ("ul", "ol"):
            self._flush()
            self._list_depth = max(self._list_depth - 1, 0)

    def handle_data(self, data):
        self._current.append(data)

    def close(self):
        super().close()
        self._flush()


def html_to_text(doc: str, width: int, indent: str = "", max_blocks: int | None = None) -> str:
    parser = _HTMLToText()
    parser.feed(doc or "")
    parser.close()
    blocks = parser.blocks[:max_blocks] if max_blocks else parser.blocks
    out = []
    for block in blocks:
        out.append(textwrap.fill(block, width=width, initial_indent=indent, subsequent_indent=indent + "  "
                                 if block.lstrip().startswith("* ") else indent))
    return "\n\n".join(out)


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 100) - 2)


def main_help(served: list, others: list, plugins: list[str]) -> str:
    width = _width()
    lines = [
        "kms",
        "",
        "A local, AWS-KMS-compatible key management service. Each command mirrors",
        "`aws kms <command>` (same options, file:// and fileb:// values, shorthand and JSON,",
        "--output json|text, --query), run against the embedded engine or --endpoint-url.",
        "",
        "usage: kms [options] <command> [parameters]",
        "       kms <command> help",
        "",
        "COMMANDS",
    ]
    for op in served:
        lines.append(_summary_line(op, width))
    if others:
        lines += ["", "OTHER AWS KMS OPERATIONS (for --endpoint-url; the embedded engine does not serve them)"]
        lines += [f"  {op.cli_name}" for op in others]
    if plugins:
        lines += ["", "MORE COMMANDS (plug-ins)"]
        lines += [f"  {name}" for name in plugins]
    lines += ["", "GLOBAL OPTIONS"]
    for opt, text in GLOBAL_OPTIONS:
        lines.append(f"  {opt}")
        lines.append(textwrap.fill(text, width=width, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines) + "\n"


def _summary_line(op, width: int) -> str:
    summary = " ".join((op.summary or "").split()).split(". ")[0].rstrip(".")
    room = max(width - 40, 20)
    return f"  {op.cli_name:<38}" + textwrap.shorten(summary, width=room, placeholder="...")


def _type_label(arg) -> str:
    kind = arg.kind
    if arg.shape is None:
        return "(integer)" if arg.name in ("page-size", "max-items") else "(string)"
    if kind == "list":
        return f"(list of {arg.shape.member.type})"
    if kind == "map":
        return "(map)"
    return f"({kind})"


def operation_help(op, table: dict) -> str:
    width = _width()
    lines = ["NAME", f"  {op.cli_name} -", "", "DESCRIPTION"]
    lines.append(html_to_text(operation_doc(op.name), width, indent="  "))
    lines += ["", "SYNOPSIS", f"  kms {op.cli_name}"]
    for arg in table.values():
        if arg.hidden:
            continue
        label = arg.cli_name if arg.action else f"{arg.cli_name} <value>"
        if arg.action == "store_true":
            label = f"{arg.cli_name} | --no-{arg.name}"
        lines.append(f"    {label}" if arg.required else f"    [{label}]")
    lines += ["", "OPTIONS"]
    for arg in table.values():
        if arg.hidden:
            continue
        req = "required" if arg.required else "optional"
        lines.append(f"  {arg.cli_name} {_type_label(arg)} [{req}]")
        doc = html_to_text(arg.documentation, width, indent="      ", max_blocks=4)
        if arg.shape is not None and arg.shape.enum:
            doc += "\n\n      Possible values: " + ", ".join(arg.shape.enum)
        if (arg.shape is not None and arg.kind in ("map", "structure")) or (
                arg.kind == "list" and arg.shape is not None and arg.shape.member.type == "structure"):
            doc += "\n\n      Shorthand syntax: " + _shorthand_example(arg) + "   (or JSON)"
        if arg.kind == "blob":
            doc += ("\n\n      A blob: fileb://path for a file's raw bytes; text is taken as its UTF-8 bytes."
                    "\n      Output shows blobs base64-encoded.")
        lines.append(doc)
        lines.append("")
    lines += ["GLOBAL OPTIONS", "  See `kms help`.", ""]
    return "\n".join(lines)


def _shorthand_example(arg) -> str:
    shape = arg.shape
    if shape.type == "map":
        return "KeyName1=string,KeyName2=string"
    target = shape.member if shape.type == "list" else shape
    example = ",".join(f"{name}={member.type}" for name, member in target.members.items())
    return example + (" ..." if shape.type == "list" else "")

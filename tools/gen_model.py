"""Generate kms_core/data/kms-model.json from botocore's KMS service model.

Why a generated file: loading botocore's gzipped service-2.json with its
documentation costs ~370 ms; the compact file (documentation stripped, only
what validation, dispatch, the server and the CLI need) loads in ~1 ms.
tests/core/test_model.py regenerates it from the installed botocore and
fails if the shipped copy differs, so it cannot drift silently.

Usage:  python tools/gen_model.py            # rewrite the shipped file
        python tools/gen_model.py --check    # exit 1 if it is out of date
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "kms_core" / "data" / "kms-model.json"

# Shape keys kept as-is (everything else, notably documentation, is dropped).
_SHAPE_KEYS = ("type", "required", "min", "max", "enum", "pattern", "sensitive",
               "exception", "fault", "deprecated")
# Ranges AWS documents on a member but does not put in the model, e.g. ListAliases
# Limit "must be between 1 and 100, inclusive" while LimitType says 1-1000.
_DOC_RANGE = re.compile(r"must be between (\d+) and (\d+), inclusive")
_TAG = re.compile(r"<[^>]+>")


def _plain(doc: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", doc or "")).split())


def _summary(doc: str) -> str:
    """First sentence of an HTML documentation string (CLI help)."""
    text = _plain(doc)
    m = re.match(r"(.+?\.)(\s|$)", text)
    return m.group(1) if m else text


def build() -> dict:
    import botocore
    from botocore import xform_name
    from botocore.loaders import Loader

    loader = Loader()
    svc = loader.load_service_model("kms", "service-2")
    pag = loader.load_service_model("kms", "paginators-1")["pagination"]

    shapes: dict[str, dict] = {}
    doc_ranges: dict[str, dict[str, list[int]]] = {}
    for name in sorted(svc["shapes"]):
        src = svc["shapes"][name]
        out = {k: src[k] for k in _SHAPE_KEYS if k in src}
        if src["type"] == "structure":
            out["members"] = {m: spec["shape"] for m, spec in src["members"].items()}
            for m, spec in src["members"].items():
                found = _DOC_RANGE.search(_plain(spec.get("documentation", "")))
                if found:
                    doc_ranges.setdefault(name, {})[m] = [int(found.group(1)), int(found.group(2))]
        elif src["type"] == "list":
            out["member"] = src["member"]["shape"]
        elif src["type"] == "map":
            out["key"] = src["key"]["shape"]
            out["value"] = src["value"]["shape"]
        shapes[name] = out

    operations = {}
    for name in sorted(svc["operations"]):
        op = svc["operations"][name]
        in_shape = op.get("input", {}).get("shape")
        entry = {
            "input": in_shape,
            "output": op.get("output", {}).get("shape"),
            "errors": [e["shape"] for e in op.get("errors", [])],
            "py_name": xform_name(name),
            "cli_name": xform_name(name, "-"),
            "summary": _summary(op.get("documentation", "")),
        }
        if name in pag:
            entry["paginator"] = {k: pag[name][k] for k in sorted(pag[name])}
        if in_shape in doc_ranges:
            entry["documented_ranges"] = doc_ranges[in_shape]
        if op.get("deprecated"):
            entry["deprecated"] = True
        operations[name] = entry

    md = svc["metadata"]
    return {
        "format": 1,
        "source": {"botocore": botocore.__version__, "apiVersion": md["apiVersion"]},
        "metadata": {k: md[k] for k in ("apiVersion", "endpointPrefix", "jsonVersion",
                                        "protocol", "serviceId", "signatureVersion",
                                        "targetPrefix")},
        "operations": operations,
        "shapes": shapes,
    }


def render(data: dict) -> str:
    # One line per operation/shape: compact yet reviewable in diffs.
    lines = ["{"]
    top = list(data)
    for i, key in enumerate(top):
        comma = "," if i < len(top) - 1 else ""
        value = data[key]
        if key in ("operations", "shapes"):
            lines.append(f"{json.dumps(key)}: {{")
            names = list(value)
            for j, n in enumerate(names):
                c = "," if j < len(names) - 1 else ""
                lines.append(f"  {json.dumps(n)}: {json.dumps(value[n], separators=(',', ':'), ensure_ascii=True)}{c}")
            lines.append("}" + comma)
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render(build())
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date; run python tools/gen_model.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

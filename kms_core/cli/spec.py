"""Naming and documentation from the service model.

Operations, shapes, required-ness and paginators come from the project's
operation table (``kms_core.model``).  Help text needs the documentation that
table leaves out, so it is read here, only for ``help``, straight from
botocore's ``service-2.json`` (not via ``botocore.session``, which costs ~0.3 s).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
from functools import lru_cache

# botocore.xform_name, copied so that naming needs no botocore import;
# tests check it against botocore for every name in the model.
_FIRST_CAP = re.compile(r"(.)([A-Z][a-z]+)")
_END_CAP = re.compile(r"([a-z0-9])([A-Z])")
_SPECIAL_PLURAL = re.compile(r"[A-Z]{2,}s$")


def xform_name(name: str, sep: str = "_") -> str:
    """CamelCase to snake_case (or kebab-case with ``sep='-'``), as botocore does."""
    if sep in name:
        return name
    special = _SPECIAL_PLURAL.search(name)
    if special is not None:
        matched = special.group()
        name = f"{name[:-len(matched)]}{sep}{matched.lower()}"
    s1 = _FIRST_CAP.sub(r"\1" + sep + r"\2", name)
    return _END_CAP.sub(r"\1" + sep + r"\2", s1).lower()


def _data_dir() -> str:
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:  # pragma: no cover - botocore is a dependency
        raise RuntimeError("botocore is not installed; the KMS service model ships with it")
    base = os.path.join(os.path.dirname(spec.origin), "data", "kms")
    versions = sorted(v for v in os.listdir(base) if os.path.isdir(os.path.join(base, v)))
    return os.path.join(base, versions[-1])


def _load_json(directory: str, stem: str) -> dict:
    path = os.path.join(directory, stem + ".json")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return json.loads(f.read())
    with gzip.open(path + ".gz", "rb") as f:
        return json.loads(f.read())


@lru_cache(maxsize=1)
def _docs_model() -> dict:
    return _load_json(_data_dir(), "service-2")


def operation_doc(operation: str) -> str:
    """The operation's documentation (HTML), '' if unknown."""
    return _docs_model()["operations"].get(operation, {}).get("documentation", "")


def member_doc(operation: str, member: str) -> str:
    """An input member's documentation (HTML): the member's own, else its shape's."""
    model = _docs_model()
    ref = model["operations"].get(operation, {}).get("input")
    if not ref:
        return ""
    members = model["shapes"][ref["shape"]].get("members", {})
    m = members.get(member)
    if m is None:
        return ""
    return m.get("documentation") or model["shapes"][m["shape"]].get("documentation", "")

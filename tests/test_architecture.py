"""docs/architecture.md is the contract between the parts; this test holds the code to it.

* integrations never import each other, and import from kms_core only the modules the
  contract names;
* kms_core's lower layers never import its upper ones;
* an import inside a function says why (``# noqa: PLC0415 - <reason>``): only a cold-start
  budget or an optional dependency justifies one;
* every module is in the layout table, and every path in the table exists;
* ``import integrations`` imports nothing else.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("kms_core", "integrations")

# What an integration may import from kms_core (the client, the shared envelope code, the
# error type and the shared SigV4 signer used by the Lambda light client).
INTEGRATION_MAY_IMPORT = {"kms_core", "kms_core.envelope", "kms_core.errors", "kms_core.sigv4"}

# kms_core's layers, lowest first.  A module may import its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("kms_core.errors", "kms_core.envelope", "kms_core.operation_names", "kms_core.clock", "kms_core.changes",
     "kms_core.sigv4", "kms_core.arn"),
    ("kms_core.blob", "kms_core.model", "kms_core.keytypes", "kms_core.policy", "kms_core.settings"),
    ("kms_core.validation", "kms_core.store", "kms_core.memory_store", "kms_core.light"),
    ("kms_core.engine", "kms_core.audit"),
    ("kms_core.embedded",),
    ("kms_core.cli", "kms_core.server", "kms_core.console", "kms_core.audit_cli", "kms_core.demo",
     "kms_core.testing", "kms_core.__init__"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            found[".".join(rel.parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, inside a function?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        package = mod.rsplit(".", 1)[0] if mod.endswith(".__init__") else mod
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                out.append((name, child.lineno, in_function))
                # `from kms_core import engine` imports the submodule kms_core.engine
                for a in child.names:
                    sub = f"{name}.{a.name}"
                    if sub in MODULES or f"{sub}.__init__" in MODULES:
                        out.append((sub, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _layer(name: str) -> int | None:
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if name == prefix or name.startswith(prefix + "."):
                return i
    return None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("integrations.")))
def test_integrations_import_only_the_client_side_of_kms_core(module):
    own = ".".join(module.split(".")[:2])
    for name, line, _ in _imports(MODULES[module]):
        if name.startswith("integrations.") and name != "integrations":
            assert name == own or name.startswith(own + "."), f"{module}:{line} imports {name}"
        if _top(name) == "kms_core":
            assert name in INTEGRATION_MAY_IMPORT, f"{module}:{line} imports {name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("kms_core.")))
def test_kms_core_layers_point_down(module):
    mine = _layer(module)
    assert mine is not None, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    for name, line, _ in _imports(MODULES[module]):
        if _top(name) == "integrations":
            pytest.fail(f"{module}:{line} imports {name}: kms_core never depends on an integration")
        if _top(name) != "kms_core" or name == "kms_core":
            continue
        theirs = _layer(name)
        assert theirs is not None, f"{module}:{line} imports {name}, which is in no layer"
        assert theirs <= mine, f"{module}:{line} imports {name} from a higher layer"


_NOQA = re.compile(r"#\s*noqa:\s*[A-Z0-9, ]*PLC0415\S*\s*[-–—:]\s*\S")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_inside_functions_say_why(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    for name, line, inside in _imports(path):
        if inside and not name.startswith("__future__"):
            text = lines[line - 1]
            # a multi-line `from x import (...)` carries the comment on its first line
            assert _NOQA.search(text), (f"{module}:{line}: `{text.strip()}` is an import inside a function; "
                                        "move it to the top or say why: `# noqa: PLC0415 - <reason>`")


def _documented_paths() -> set[str]:
    text = DOC.read_text()
    return set(re.findall(r"^\|\s*`([^`]+)`", text, flags=re.M))


def test_every_module_is_in_the_layout_table():
    paths = _documented_paths()
    for module, path in MODULES.items():
        rel = str(path.relative_to(ROOT))
        parents = [str(p.relative_to(ROOT)) + "/" for p in path.parents if p != ROOT and ROOT in p.parents]
        assert rel in paths or any(p in paths for p in parents), f"{rel} is not in docs/architecture.md's table"


def test_every_path_in_the_layout_table_exists():
    for p in _documented_paths():
        for one in (s.strip() for s in p.split(",")):
            assert (ROOT / one.rstrip("/")).exists(), f"docs/architecture.md names {one}, which does not exist"


def test_import_integrations_is_light():
    code = ("import sys; before = set(sys.modules); import integrations; "
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('integrations')))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"

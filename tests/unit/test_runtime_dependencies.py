"""Every module the application imports is installed by its runtime dependencies.

`make run` installs the project without the dev extras; a module imported under src/ that only a
dev extra provides (httpx once was) breaks `civicard` on a fresh machine while every test passes.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The distributions installed by `names`, following their own unconditional requirements."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in requires if "extra ==" not in r)
    return seen


SRC = ROOT / "src" / "civicard"
# Packages only an optional extra installs, imported by nothing else under src/.
OPTIONAL = {SRC / "adapters" / "spark": "spark"}


def _imports(path: Path) -> set[str]:
    """The full names of the modules one file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _top_level_imports(paths: list[Path]) -> set[str]:
    found = {name.split(".")[0] for path in paths for name in _imports(path)}
    return found - set(sys.stdlib_module_names) - {"civicard", "__future__"}


def _optional(path: Path) -> bool:
    return any(path.is_relative_to(package) for package in OPTIONAL)


def _missing(paths: list[Path], requirements: set[str]) -> dict[str, list[str]]:
    installed = _closure(requirements)
    providers = metadata.packages_distributions()
    return {
        module: providers.get(module, ["?"])
        for module in sorted(_top_level_imports(paths))
        if not {d.lower().replace("_", "-") for d in providers.get(module, [])} & installed
    }


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project


def _runtime() -> set[str]:
    runtime = {_name(r) for r in _project()["dependencies"]}
    # Requirements pulled in through an extra (uvicorn[standard], psycopg[binary]) are not followed.
    return runtime | {"uvloop", "httptools", "websockets", "watchfiles", "python-dotenv", "psycopg-binary"}


def test_every_imported_module_comes_with_the_runtime_dependencies() -> None:
    paths = [p for p in SRC.rglob("*.py") if not _optional(p)]
    missing = _missing(paths, _runtime())
    assert missing == {}, f"imported under src/ but not installed by the runtime dependencies: {missing}"


def test_an_optional_package_needs_only_its_extra_and_nothing_else_imports_it() -> None:
    extras = _project()["optional-dependencies"]
    for package, extra in OPTIONAL.items():
        paths = list(package.rglob("*.py"))
        missing = _missing(paths, _runtime() | {_name(r) for r in extras[extra]})
        assert missing == {}, f"{package} imports what neither the runtime nor the '{extra}' extra installs: {missing}"
        dotted = "civicard." + ".".join(package.relative_to(SRC).parts)
        users = [
            str(p.relative_to(ROOT))
            for p in SRC.rglob("*.py")
            if not _optional(p) and any(n == dotted or n.startswith(dotted + ".") for n in _imports(p))
        ]
        assert users == [], f"{dotted} needs the '{extra}' extra, but runtime modules import it: {users}"

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


def _top_level_imports() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "civicard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"civicard", "__future__"}


def test_every_imported_module_comes_with_the_runtime_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    # Requirements pulled in through an extra (uvicorn[standard], psycopg[binary]) are not followed.
    runtime |= {"uvloop", "httptools", "websockets", "watchfiles", "python-dotenv", "psycopg-binary"}
    installed = _closure(runtime)
    providers = metadata.packages_distributions()
    missing = {
        module: providers.get(module, ["?"])
        for module in sorted(_top_level_imports())
        if not {d.lower().replace("_", "-") for d in providers.get(module, [])} & installed
    }
    assert missing == {}, f"imported under src/ but not installed by the runtime dependencies: {missing}"

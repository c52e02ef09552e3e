"""Loading the package's YAML data files (allow-lists, vocabularies, purposes)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def load_yaml(package: str, name: str) -> Any:
    """Parse a YAML file shipped inside `package`; cached, read on first use (never at import)."""
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return yaml.safe_load(text)

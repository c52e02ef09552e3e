"""Cleaning free text from people: collapse white space, refuse control characters, cap length."""

from __future__ import annotations

import unicodedata
from typing import Any

from civicard.shared.errors import InvalidInput


def clean_text(value: Any, name: str, max_len: int, required: bool = True) -> str:
    """Text as stored: single-spaced, no control characters (PostgreSQL refuses NUL, printers choke)."""
    label = name.replace("_", " ")
    if not isinstance(value, str):
        raise InvalidInput(f"invalid_{name}", f"The {label} must be text.")
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in value):
        raise InvalidInput(f"invalid_{name}", f"The {label} contains control characters.")
    cleaned = " ".join(value.split())
    if required and not cleaned:
        raise InvalidInput(f"missing_{name}", f"The {label} is required.")
    if len(cleaned) > max_len:
        raise InvalidInput(f"invalid_{name}", f"The {label} is longer than {max_len} characters.")
    return cleaned

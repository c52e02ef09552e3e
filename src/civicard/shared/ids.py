"""Random identifiers: 128 bits from the OS CSPRNG, as 32 lowercase hex characters."""

from __future__ import annotations

import re
import secrets

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A fresh random id; it carries no meaning (no date, no region, no sequence)."""
    return secrets.token_hex(16)


def is_id(value: str) -> bool:
    return bool(_ID.match(value))

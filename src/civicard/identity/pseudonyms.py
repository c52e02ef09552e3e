"""Sector pseudonyms: each program and each vendor sees its own stable identifier for a person.

`pseudonym = base32(HMAC-SHA256(K_sector, internal_id)[:16])`, 26 lower-case characters (128 bits),
with `K_sector = root_key.derive("pseudonym:<kind>:<id>")`. Without the root key two sectors'
pseudonyms cannot be linked to each other or to the internal id; with it they are recomputed,
never stored as a mapping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from civicard.shared.errors import InvalidInput
from civicard.shared.keys import RootKey

SECTOR_KINDS = frozenset({"program", "vendor"})
PSEUDONYM_LENGTH = 26
_SECTOR = re.compile(r"(program|vendor):[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class SectorKey:
    """One sector's key, derived once for bulk work (a cycle computes millions of pseudonyms)."""

    sector: str
    key: bytes

    @classmethod
    def derive(cls, root_key: RootKey, sector: str) -> SectorKey:
        if not _SECTOR.fullmatch(sector):
            raise InvalidInput("sector_invalid", "A sector is 'program:<id>' or 'vendor:<id>'.")
        return cls(sector, root_key.derive(f"pseudonym:{sector}"))

    def pseudonym(self, internal_id: str) -> str:
        if not internal_id:
            raise InvalidInput("internal_id_missing", "A pseudonym needs the person's internal id.")
        digest = hmac.new(self.key, internal_id.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest[:16]).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"SectorKey({self.sector!r}, <secret>)"


def pseudonym(root_key: RootKey, sector: str, internal_id: str) -> str:
    """The identifier `sector` ("program:<id>" or "vendor:<id>") sees for the person `internal_id`."""
    return SectorKey.derive(root_key, sector).pseudonym(internal_id)

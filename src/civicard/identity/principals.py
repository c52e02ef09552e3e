"""Who is signed in: a staff account, a resident (by person id) or a vendor terminal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from civicard.transparency.access import Actor

PrincipalKind = Literal["staff", "resident", "terminal"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `id` is the staff account id, the person id or the terminal id.

    Ids are random 128-bit values, so one namespace serves all three kinds. `display_name` is the
    staff member's name or the terminal's label; for a resident it is empty, because a resident's
    name is personal data and is read through the access point (purpose `self_access`).
    """

    kind: PrincipalKind
    id: str
    role: str
    display_name: str

    def actor(self) -> Actor:
        """The actor the access log records for this principal."""
        return Actor(self.id, self.role)

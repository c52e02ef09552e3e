"""How residents sign in: card handle + PIN. The interface exists now; nobody gets in until PINs do.

When the cards issue stores PINs (keyed HMACs with attempt limits), its authenticator checks the
card and PIN and then opens a session with `AuthStore.open_resident_session(person_id)` — the
only way a resident session is made. Until then `CardPinAuthenticator` refuses every attempt.
"""

from __future__ import annotations

from typing import Protocol

from civicard.identity.principals import Principal
from civicard.shared.errors import Unauthenticated


class ResidentAuthenticator(Protocol):
    def sign_in(self, card_handle: str, pin: str, client: str) -> Principal:
        """The resident holding `card_handle`, if `pin` is right; raises Unauthenticated otherwise."""
        ...


class CardPinAuthenticator:
    """Card handle + PIN. Cards and PINs are not issued yet, so every sign-in is refused."""

    def sign_in(self, card_handle: str, pin: str, client: str) -> Principal:
        raise Unauthenticated(
            "resident_sign_in_unavailable",
            "Resident sign-in opens once cards and PINs are issued; they are not issued yet.",
        )

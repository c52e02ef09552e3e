"""How residents sign in: card handle + PIN.

The implementation (`adapters/db/resident_sign_in.CardPinSignIn`) checks the PIN with the cards
service — valid unexpired card, five consecutive failures lock it — and only then opens a session
with `AuthStore.open_resident_session(person_id)`, the one way a resident session is made.
"""

from __future__ import annotations

from typing import Protocol

from civicard.identity.principals import Principal


class ResidentAuthenticator(Protocol):
    def sign_in(self, card_handle: str, pin: str, client: str) -> Principal:
        """The resident holding `card_handle`, if `pin` is right; raises a coded refusal otherwise."""
        ...

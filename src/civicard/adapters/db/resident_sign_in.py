"""Residents sign in with their card handle and PIN; each attempt shows in their own access log.

The PIN check is the cards service's (`attempt_card_pin`: only valid, unexpired cards; five
consecutive failures lock the card until a registrar resets it). The attempt is logged against
the card holder with the unauthenticated actor `card:<handle>`, so a resident sees failed tries
on their card. Attempts count against the client address's sign-in limit, so nobody can try a
common PIN across many cards. Only a right PIN opens a session (`AuthStore.open_resident_session`).
"""

from __future__ import annotations

from sqlalchemy import Engine

from civicard.adapters.db.auth_store import AuthStore, SignedIn
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.identity.cards import CardKeys, attempt_card_pin
from civicard.identity.credentials import parse_handle
from civicard.identity.principals import Principal
from civicard.shared.clock import Clock
from civicard.shared.errors import Unauthenticated
from civicard.transparency.access import AccessContext, Actor


class CardPinSignIn:
    """The ResidentAuthenticator for cards with PINs."""

    def __init__(self, engine: Engine, clock: Clock, keys: CardKeys, auth: AuthStore) -> None:
        self.engine, self.clock, self.keys, self.auth = engine, clock, keys, auth

    def sign_in(self, card_handle: str, pin: str, client: str) -> Principal:
        return self.open_session(card_handle, pin, client).principal

    def open_session(self, card_handle: str, pin: str, client: str) -> SignedIn:
        self.auth.count_sign_in_attempt(client)
        handle = parse_handle(card_handle)
        context = AccessContext(Actor(f"card:{handle}", "resident"), "resident_sign_in")
        with SqlCardUnitOfWork(self.engine, context, self.clock) as uow:
            outcome = attempt_card_pin(uow, self.keys, handle, pin, tries_used=0)
            card = uow.cards.by_handle(handle)
        outcome.raise_if_refused()
        if card is None:  # attempt_card_pin already refused unknown cards; kept so this fails closed
            raise Unauthenticated("sign_in_failed", "Card or PIN not accepted.")
        return self.auth.open_resident_session(card.person_id)

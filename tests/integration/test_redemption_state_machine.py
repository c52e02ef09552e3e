"""A hypothesis state machine over redeem / retry the same key / revoke (and replace) a card / open
a new cycle period, checking after every step that the database agrees with a simple model:
what is left, what the ledger holds, that a key's answer never changes, that a revoked card never
redeems. The town is built once per test; each example starts from the database as it finds it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.identity.cards import replace_card
from civicard.shared.clock import Clock
from tests.integration.distribution_fixtures import (
    CARD_DESK,
    PIN,
    DistributionTown,
    HeldCard,
    build_distribution_town,
    redeem_once,
    run_period,
    set_prices,
    system_uow,
)

ITEM = "RICE-1KG"
MACHINE_SETTINGS = settings(
    max_examples=5,
    stateful_step_count=10,
    deadline=None,
    # Each step is a real transaction (a new period a whole cycle): shrinking would take minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class MovableClock:
    """The server clock; a new period moves it to the first day of the next month."""

    at: datetime

    def clock(self) -> Clock:
        return Clock(lambda: self.at)


@dataclass
class Shared:
    town: DistributionTown
    time: MovableClock
    work_dir: Path
    cards: list[HeldCard] = field(default_factory=list)  # each holder's current card
    revoked: list[HeldCard] = field(default_factory=list)  # cards revoked so far (never valid again)
    sequence: list[int] = field(default_factory=lambda: [0])

    def next_key(self) -> str:
        self.sequence[0] += 1
        return f"sm-{self.sequence[0]}"


@pytest.fixture
def shared(engine: sa.Engine, tmp_path: Path) -> Shared:
    time = MovableClock(datetime(2026, 11, 15, 10, 0, tzinfo=UTC))
    town = build_distribution_town(engine, time.clock(), tmp_path, households=15, cards=4)
    return Shared(town, time, tmp_path, list(town.adults))


def _left(town: DistributionTown, households: list[str]) -> dict[str, int]:
    return {h: town.remaining(h, ITEM) for h in households}


class Redemptions(RuleBasedStateMachine):
    shared: Shared

    @initialize()
    def start(self) -> None:
        town = self.shared.town
        self.cards: list[HeldCard] = list(self.shared.cards) + list(self.shared.revoked)
        self.revoked: set[str] = {c.token for c in self.shared.revoked}
        self.households = sorted({c.household_id for c in self.cards})
        self.left = _left(town, self.households)
        self.answers: dict[str, tuple[int, bytes, str, int]] = {}  # key → (status, body, token, quantity)
        self.sales = self._sales()
        self.periods_opened = 0

    def _sales(self) -> int:
        with system_uow(self.shared.town.engine, self.shared.town.clock) as uow:
            return int(uow.connection.execute(sa.select(sa.func.count()).select_from(t.redemptions)).scalar_one())

    @rule(index=st.integers(0, 20), quantity=st.integers(1, 4))
    def redeem(self, index: int, quantity: int) -> None:
        card = self.cards[index % len(self.cards)]
        key = self.shared.next_key()
        status, body = redeem_once(self.shared.town, self.shared.town.shop, card.token, {ITEM: quantity}, key)
        self.answers[key] = (status, body, card.token, quantity)
        if card.token in self.revoked:
            assert (status, json.loads(body)["code"]) == (422, "card_revoked")
        elif quantity > self.left[card.household_id]:
            assert (status, json.loads(body)["code"]) == (422, "insufficient_remaining")
        else:
            assert status == 201, body
            receipt = json.loads(body)
            self.left[card.household_id] -= quantity
            assert receipt["items"][0]["remaining"] == self.left[card.household_id]
            self.sales += 1

    @precondition(lambda self: bool(self.answers))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.answers)))
        status, body, token, quantity = self.answers[key]
        again = redeem_once(self.shared.town, self.shared.town.shop, token, {ITEM: quantity}, key)
        assert again == (status, body), "a retry gets the first answer, byte for byte"

    @rule(index=st.integers(0, 20))
    def revoke(self, index: int) -> None:
        """The holder reports the card lost: it is revoked and a replacement issued at once."""
        i = index % len(self.cards)
        old = self.cards[i]
        if old.token in self.revoked:
            return
        town = self.shared.town
        with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
            issued = replace_card(uow, town.card_keys, old.handle, "lost", PIN)
        new = HeldCard(old.person_id, old.household_id, issued.card.id, issued.card.handle, issued.token)
        self.revoked.add(old.token)
        self.cards[i] = new
        self.cards.append(old)  # still scanned now and then: must be refused
        self.shared.cards = [new if c.card_id == old.card_id else c for c in self.shared.cards]
        self.shared.revoked.append(old)

    @precondition(lambda self: self.periods_opened < 1)
    @rule()
    def new_period(self) -> None:
        """The month turns: a cycle runs for the new period; the old period's leftovers do not carry over."""
        self.periods_opened += 1
        at = self.shared.time.at
        self.shared.time.at = at.replace(year=at.year + at.month // 12, month=at.month % 12 + 1, day=1)
        town = self.shared.town
        town.period = f"{self.shared.time.at:%Y-%m}"
        run_period(town.engine, town.clock, town.period, self.shared.work_dir / "cycle")
        with town.engine.connect() as conn:
            items = list(conn.execute(sa.select(t.items.c.code)).scalars())
        set_prices(town.engine, town.period, items, town.clock.now())
        self.left = _left(town, self.households)

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        town = self.shared.town
        assert _left(town, self.households) == self.left
        assert self._sales() == self.sales
        e, ll = t.entitlements, t.ledger_lines
        with system_uow(town.engine, town.clock) as uow:
            conn = uow.connection
            slots = conn.execute(sa.select(e.c.id, e.c.granted, e.c.remaining)).all()
            ledger = dict(
                conn.execute(
                    sa.select(ll.c.entitlement_id, sa.func.sum(ll.c.quantity)).group_by(ll.c.entitlement_id)
                ).all()
            )
        for slot in slots:
            assert 0 <= slot.remaining <= slot.granted
            assert int(ledger.get(slot.id, 0)) == slot.granted - slot.remaining


def test_redemptions_keep_their_invariants_over_any_sequence(shared: Shared) -> None:
    Redemptions.shared = shared
    run_state_machine_as_test(Redemptions, settings=MACHINE_SETTINGS)

"""Offline redemption on the server, on SQLite and PostgreSQL: the outlet bundle names nobody, synced
receipts are applied once and in seq order, and whatever cannot be applied is kept as a conflict."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.distribution.offline import (
    Receipt,
    bundle_keyring,
    bundle_signing_key,
    card_key,
    sign_bundle,
    sign_receipt,
    verify_bundle,
)
from civicard.distribution.offline_sync import (
    ReceiptOutcome,
    SignedReceipt,
    TerminalSeat,
    apply_batch,
    build_bundle,
    list_conflicts,
    require_counter_seat,
)
from civicard.distribution.sales import BasketLine
from civicard.identity.cards import revoke_card
from civicard.identity.credentials import new_handle
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor
from tests.integration.distribution_fixtures import (
    CARD_DESK,
    TEST_ROOT_KEY,
    DistributionTown,
    HeldCard,
    Till,
    add_till,
    build_distribution_town,
    system_uow,
)


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> DistributionTown:
    return build_distribution_town(engine, clock, tmp_path, households=30, cards=10)


def vendor_uow(town: DistributionTown, till: Till) -> SqlUnitOfWork:
    return SqlUnitOfWork(town.engine, AccessContext(Actor(till.terminal_id, "vendor"), "redemption"), town.clock)


def seat(town: DistributionTown, till: Till) -> TerminalSeat:
    with vendor_uow(town, till) as uow:
        return require_counter_seat(uow.offline, till.terminal_id)


def signed(till: Till, key: Ed25519PrivateKey | None, index: int, receipt: Receipt) -> SignedReceipt:
    payload = receipt.payload()
    return SignedReceipt(index, payload, sign_receipt(key or till.key, payload))


def receipt(town: DistributionTown, till: Till, seq: int, card: HeldCard | str, **items: int) -> Receipt:
    handle = card if isinstance(card, str) else card.handle
    basket = {code.replace("_", "-"): qty for code, qty in items.items()}
    return Receipt(till.terminal_id, seq, town.period, handle, basket, town.clock.now().replace(microsecond=0))


def sync(town: DistributionTown, till: Till, *batch: SignedReceipt) -> list[ReceiptOutcome]:
    return apply_batch(lambda: vendor_uow(town, till), seat(town, till), list(batch), town.clock.now())


def sell_online(town: DistributionTown, till: Till, card: HeldCard, item: str, quantity: int) -> None:
    """A sale at the till through the sale core, so the household counts as one of the outlet's."""
    with vendor_uow(town, till) as uow:
        outlet = uow.sales.outlet(till.outlet_id)
        assert outlet is not None
        basket = [BasketLine(item, quantity)]
        uow.sales.post(
            town.period, card.household_id, card.card_id, till.terminal_id, outlet, basket, "online", town.clock.now()
        )
        uow.commit()


def stored(town: DistributionTown) -> list[tuple[str, int, str, str | None]]:
    o = t.offline_receipts
    with system_uow(town.engine, town.clock) as uow:
        rows = uow.connection.execute(sa.select(o.c.terminal_id, o.c.seq, o.c.status, o.c.conflict).order_by(o.c.seq))
        return [(r.terminal_id, int(r.seq), r.status, r.conflict) for r in rows]


def test_the_bundle_carries_quantities_and_caps_but_no_handle_name_or_id(town: DistributionTown) -> None:
    regular = town.adults[0]
    sell_online(town, town.shop, regular, "RICE-1KG", 1)
    with vendor_uow(town, town.shop) as uow:
        bundle = build_bundle(uow, TEST_ROOT_KEY, town.shop.terminal_id, town.clock.now())
    raw = sign_bundle(bundle, bundle_signing_key(TEST_ROOT_KEY))
    held = verify_bundle(raw, bundle_keyring(TEST_ROOT_KEY))
    group = held.cards[card_key(held.key, regular.handle)]
    assert held.groups[group]["RICE-1KG"] == town.remaining(regular.household_id, "RICE-1KG")
    assert held.caps["RICE-1KG"] == 1 and held.caps["OIL-1L"] == 1
    assert "METFORMIN-850-60" not in held.caps  # a shop never hands out medicine, offline or not
    stranger = next(c for c in town.adults if c.household_id != regular.household_id)
    assert held.group_of(stranger.handle) is None  # never redeemed here: the caps apply to it
    with system_uow(town.engine, town.clock) as uow:
        conn = uow.connection
        secrets = {*conn.execute(sa.select(t.cards.c.handle, t.cards.c.id, t.cards.c.person_id)).all()}
        people = conn.execute(sa.select(t.persons.c.given_names, t.persons.c.first_surname)).all()
        households = conn.execute(sa.select(t.households.c.id)).scalars().all()
    words = {w for row in secrets for w in row} | {w for row in people for w in row} | set(households)
    leaked = [w for w in words if w.encode() in raw]
    assert leaked == [] and len(words) > 50


def test_a_resent_receipt_is_applied_once_and_answered_the_same(town: DistributionTown) -> None:
    card = town.adults[0]
    before = town.remaining(card.household_id, "RICE-1KG")
    batch = [
        signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=1)),
        signed(town.shop, None, 1, receipt(town, town.shop, 2, card, OIL_1L=1)),
    ]
    first = sync(town, town.shop, *batch)
    again = sync(town, town.shop, *batch)
    assert [o.status for o in first] == ["applied", "applied"]
    assert again == first and first[0].transaction_id is not None
    assert town.remaining(card.household_id, "RICE-1KG") == before - 1
    assert town.counts()["redemptions"] == 2
    with system_uow(town.engine, town.clock) as uow:
        channels = uow.connection.execute(sa.select(t.redemptions.c.channel)).scalars().all()
    assert channels == ["offline", "offline"]


def test_a_batch_sent_out_of_order_is_applied_in_seq_order(town: DistributionTown) -> None:
    card = town.adults[0]
    left = town.remaining(card.household_id, "RICE-1KG")
    everything = signed(town.shop, None, 1, receipt(town, town.shop, 1, card, RICE_1KG=left))
    one_more = signed(town.shop, None, 0, receipt(town, town.shop, 2, card, RICE_1KG=1))
    outcomes = sync(town, town.shop, one_more, everything)  # seq 2 first in the batch
    assert [(o.index, o.seq, o.status, o.reason) for o in outcomes] == [
        (0, 2, "conflict", "insufficient_remaining"),
        (1, 1, "applied", None),
    ]
    assert town.remaining(card.household_id, "RICE-1KG") == 0


def test_the_same_card_sold_offline_at_two_outlets_beyond_what_remains_leaves_one_conflict_for_review(
    town: DistributionTown,
) -> None:
    card = town.adults[0]
    left = town.remaining(card.household_id, "RICE-1KG")
    other = add_till(town.engine, "shop", "Tienda El Cruce", town.clock.now())
    here = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=left)))
    there = sync(town, other, signed(other, None, 0, receipt(town, other, 1, card, RICE_1KG=left)))
    assert (here[0].status, there[0].status, there[0].reason) == ("applied", "conflict", "insufficient_remaining")
    assert town.remaining(card.household_id, "RICE-1KG") == 0
    assert sorted(stored(town)) == sorted(
        [(town.shop.terminal_id, 1, "applied", None), (other.terminal_id, 1, "conflict", "insufficient_remaining")]
    )
    reviewer = AccessContext(Actor("reviewer-rita", "reviewer"), "offline_review")
    with SqlUnitOfWork(town.engine, reviewer, town.clock) as uow:
        conflicts = list_conflicts(uow, town.clock.now())
    assert [(c.terminal_id, c.outlet_id, c.items, c.reason) for c in conflicts] == [
        (other.terminal_id, other.outlet_id, {"RICE-1KG": left}, "insufficient_remaining")
    ]


def test_receipts_of_a_revoked_or_unknown_card_are_kept_as_conflicts(town: DistributionTown) -> None:
    card = town.adults[1]
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        revoke_card(uow, town.card_keys, card.handle, "stolen")
    before = town.counts()
    outcomes = sync(
        town,
        town.shop,
        signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=1)),
        signed(town.shop, None, 1, receipt(town, town.shop, 2, new_handle(), RICE_1KG=1)),
    )
    assert [(o.status, o.reason) for o in outcomes] == [("conflict", "card_revoked"), ("conflict", "card_unknown")]
    assert town.counts() == before
    assert [s[2:] for s in stored(town)] == [("conflict", "card_revoked"), ("conflict", "card_unknown")]


def test_a_receipt_not_signed_by_the_terminal_is_refused_and_not_stored(town: DistributionTown) -> None:
    card = town.adults[0]
    forged = signed(town.shop, Ed25519PrivateKey.generate(), 0, receipt(town, town.shop, 1, card, RICE_1KG=1))
    someone_elses = signed(town.shop, None, 1, receipt(town, town.pharmacy, 2, card, RICE_1KG=1))
    outcomes = sync(town, town.shop, forged, someone_elses)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("refused", "receipt_bad_signature"),
        ("refused", "receipt_wrong_terminal"),
    ]
    assert stored(town) == []


def test_a_reused_seq_with_another_basket_is_refused(town: DistributionTown) -> None:
    card = town.adults[0]
    first = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=1)))
    second = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=2)))
    assert (first[0].status, second[0].status, second[0].reason) == ("applied", "refused", "receipt_seq_reused")


def test_a_childs_card_is_listed_with_nothing_to_redeem_and_its_receipts_are_conflicts(
    town: DistributionTown,
) -> None:
    child = town.minors[0]
    parent = next(c for c in town.adults if c.household_id == child.household_id)
    sell_online(town, town.shop, parent, "RICE-1KG", 1)  # the household is now one of the shop's
    with vendor_uow(town, town.shop) as uow:
        bundle = build_bundle(uow, TEST_ROOT_KEY, town.shop.terminal_id, town.clock.now())
    group = bundle.group_of(child.handle)
    assert group is not None and bundle.groups[group] == {}  # not the caps an unknown card gets
    household = bundle.group_of(parent.handle)
    assert household is not None and bundle.groups[household]["RICE-1KG"] == town.remaining(
        parent.household_id, "RICE-1KG"
    )
    before = town.counts()
    outcomes = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, child, RICE_1KG=1)))
    assert [(o.status, o.reason) for o in outcomes] == [("conflict", "not_entitled")]
    assert town.counts() == before


def test_a_revoked_terminals_receipts_are_kept_as_conflicts_and_never_applied(town: DistributionTown) -> None:
    card = town.adults[0]
    before = town.counts()
    with system_uow(town.engine, town.clock) as uow:
        uow.connection.execute(
            sa.update(t.terminals).where(t.terminals.c.id == town.shop.terminal_id).values(revoked_at=town.clock.now())
        )
        uow.commit()
    outcomes = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=1)))
    assert [(o.status, o.reason) for o in outcomes] == [("conflict", "terminal_revoked")]
    assert town.counts() == before
    assert [s[2:] for s in stored(town)] == [("conflict", "terminal_revoked")]
    again = sync(town, town.shop, signed(town.shop, None, 0, receipt(town, town.shop, 1, card, RICE_1KG=1)))
    assert [(o.status, o.reason) for o in again] == [("conflict", "terminal_revoked")]  # answered the same
    reviewer = AccessContext(Actor("reviewer-1", "reviewer"), "offline_review")
    with SqlUnitOfWork(town.engine, reviewer, town.clock) as uow:
        assert [c.reason for c in list_conflicts(uow, town.clock.now())] == ["terminal_revoked"]

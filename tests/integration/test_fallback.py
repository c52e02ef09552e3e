"""Fallback sales on SQLite and PostgreSQL: a card whose PIN is locked is still served on a photo check
plus the outlet supervisor's signed attestation — never with a forged, replayed, foreign or counter
"attestation", never beyond the per-cycle caps — and the sale shows in the resident's access log
and the exclusion report. Also: reviewing offline conflicts, and a revoked terminal's receipts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.api.app import create_app
from civicard.adapters.cli.vendors import vendors_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.fallback_store import TerminalOutlet
from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.bootstrap import Container
from civicard.distribution.exclusion import exclusion_report
from civicard.distribution.fallback import sign_attestation
from civicard.distribution.offline import Receipt, sign_receipt
from civicard.distribution.offline_sync import SignedReceipt, apply_batch, require_counter_seat
from civicard.distribution.sales import BasketLine
from civicard.identity.cards import revoke_card
from civicard.identity.credentials import new_handle
from civicard.identity.terminal_auth import encode_signature
from civicard.settings import Mode, Settings
from civicard.shared.clock import Clock
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor
from tests.conftest import Database
from tests.integration.distribution_fixtures import (
    CARD_DESK,
    PIN,
    TEST_ROOT_KEY,
    DistributionTown,
    HeldCard,
    Till,
    add_terminal,
    build_distribution_town,
    system_uow,
)
from tests.integration.test_redemption import Terminal

WRONG_PIN = "9137"
WITHOUT_PIN = "without PIN, photo checked, supervisor attested"
FOOD_CAPPED = ("BEANS-1KG", "MAIZE-MEAL-1KG", "OIL-1L", "SALT-1KG")  # food_basket's offline caps (1 each)
OVERSIGHT = AccessContext(Actor("test:olga", "oversight"), "settlement")


@dataclass(frozen=True)
class Supervisor:
    terminal_id: str
    key: Ed25519PrivateKey


class Counter(Terminal):
    """The shop's counter terminal, sending fallback sales attested by a supervisor device."""

    def fallback(
        self,
        card: HeldCard,
        basket: dict[str, int],
        key: str,
        supervisor: Supervisor | None,
        *,
        photo_checked: bool = True,
        signed_basket: dict[str, int] | None = None,
        signed_for: str | None = None,
        age: timedelta = timedelta(0),
        nonce: str | None = None,
        signer: Ed25519PrivateKey | None = None,
    ) -> Any:
        payload: dict[str, Any] = {
            "card_token": card.token,
            "basket": [{"item": i, "quantity": q} for i, q in basket.items()],
            "photo_checked": photo_checked,
        }
        if supervisor is not None:
            payload["supervisor"] = attest(
                self.town,
                supervisor,
                card,
                signed_basket or basket,
                signed_for or self.till.terminal_id,
                age,
                nonce,
                signer,
            )
        return self.post("/v1/redemptions/fallback", payload, key)


def attest(
    town: DistributionTown,
    supervisor: Supervisor,
    card: HeldCard,
    basket: dict[str, int],
    counter_id: str,
    age: timedelta = timedelta(0),
    nonce: str | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    """What the supervisor's device sends the counter: its signature over this card, basket and counter."""
    when = int((town.clock.now() - age).timestamp())
    lines = [BasketLine(i, q) for i, q in basket.items()]
    done = sign_attestation(
        signer or supervisor.key, card.handle, lines, counter_id, supervisor.terminal_id, when, nonce or new_id()
    )
    return {
        "terminal_id": done.terminal_id,
        "timestamp": done.timestamp,
        "nonce": done.nonce,
        "signature": encode_signature(done.signature),
    }


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> DistributionTown:
    return build_distribution_town(engine, clock, tmp_path, households=30, cards=6)


@pytest.fixture
def container(town: DistributionTown, db: Database, tmp_path: Path) -> Container:
    settings = Settings(mode=Mode.DEMO, data_dir=tmp_path / "data", database_url=db.url)
    return Container(settings, town.engine, town.clock, TEST_ROOT_KEY)


@pytest.fixture
def shop(town: DistributionTown, container: Container) -> Iterator[Counter]:
    yield Counter(TestClient(create_app(container)), town, town.shop)


@pytest.fixture
def boss(town: DistributionTown) -> Supervisor:
    key, terminal_id = add_terminal(town.engine, town.shop.outlet_id, town.clock.now(), "supervisor")
    return Supervisor(terminal_id, key)


def lock_pin(shop: Counter, card: HeldCard) -> None:
    codes = [shop.redeem(card, {"RICE-1KG": 1}, f"lock-{n}", pin=WRONG_PIN).json()["code"] for n in range(5)]
    assert codes[-1] == "pin_locked"
    assert shop.redeem(card, {"RICE-1KG": 1}, "lock-right", pin=PIN).json()["code"] == "pin_locked"


def code_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("code", "")


def fallback_sales(town: DistributionTown) -> list[Any]:
    r = t.redemptions
    with system_uow(town.engine, town.clock) as uow:
        return list(uow.connection.execute(sa.select(r).where(r.c.channel == "fallback")).all())


def log_details(town: DistributionTown, person_id: str) -> list[str]:
    a = t.access_log
    with system_uow(town.engine, town.clock) as uow:
        query = sa.select(a.c.detail).where(a.c.subject_person_id == person_id).order_by(a.c.seq)
        return list(uow.connection.execute(query).scalars())


def capped_item(town: DistributionTown, card: HeldCard) -> str:
    held = {r[0] for r in town.entitlement_rows(card.household_id) if r[2] > 0}
    found = [item for item in FOOD_CAPPED if item in held]
    assert found, "food-basket households hold more than rice"
    return found[0]


# --- served ------------------------------------------------------------------------------------------


def test_a_card_with_a_locked_pin_is_served_on_photo_and_supervisor_attestation(
    town: DistributionTown, shop: Counter, boss: Supervisor
) -> None:
    card = town.adults[0]
    lock_pin(shop, card)
    before = town.remaining(card.household_id, "RICE-1KG")
    served = shop.fallback(card, {"RICE-1KG": 1}, "fb-1", boss)
    assert served.status_code == 201, served.text
    body = served.json()
    assert (body["decision"], body["code"], body["fallbacks_left"], body["total_minor"]) == (
        "approved",
        "redeemed_fallback",
        1,
        250,
    )
    assert body["holder"] == town.keys.pseudonym(town.shop.vendor_id, card.person_id)
    assert [(i["item"], i["granted"], i["remaining"]) for i in body["items"]] == [("RICE-1KG", 1, before - 1)]
    assert town.remaining(card.household_id, "RICE-1KG") == before - 1
    (sale,) = fallback_sales(town)
    assert (sale.id, sale.card_id, sale.attested_by, sale.terminal_id, sale.outlet_id) == (
        body["transaction_id"],
        card.card_id,
        boss.terminal_id,
        town.shop.terminal_id,
        town.shop.outlet_id,
    )
    for secret in (card.person_id, card.household_id, card.card_id, card.handle):
        assert secret not in served.text, "the vendor learns no name or internal id"
    counts = town.counts()
    again = shop.fallback(card, {"RICE-1KG": 1}, "fb-1", boss)
    assert code_of(again) == (422, "idempotency_key_reused"), "a new attestation is a new body"
    assert town.counts() == counts
    stored_answer = shop.post(
        "/v1/redemptions/fallback",
        json.loads(served.request.content),
        "fb-1",
    )
    assert (stored_answer.status_code, stored_answer.content) == (201, served.content)
    assert town.counts() == counts, "a retry with the same key and body replays the first answer"


def test_the_pin_is_neither_needed_nor_counted(town: DistributionTown, shop: Counter, boss: Supervisor) -> None:
    card = town.adults[1]
    assert shop.fallback(card, {"RICE-1KG": 1}, "fb-unlocked", boss).status_code == 201
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        stored = uow.cards.pin(card.card_id)
    assert stored is not None and stored.counter.consecutive_failures == 0 and not stored.counter.locked


# --- refused -----------------------------------------------------------------------------------------


def test_no_photo_check_or_no_attestation_is_refused(town: DistributionTown, shop: Counter, boss: Supervisor) -> None:
    card = town.adults[0]
    counts = town.counts()
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-a", boss, photo_checked=False)) == (
        422,
        "photo_not_checked",
    )
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-b", None)) == (422, "attestation_missing")
    assert town.counts() == counts and not fallback_sales(town)


def test_a_forged_stale_or_replayed_attestation_is_refused(
    town: DistributionTown, shop: Counter, boss: Supervisor
) -> None:
    card = town.adults[0]
    rice = {"RICE-1KG": 1}
    counts = town.counts()
    forged = shop.fallback(card, rice, "fb-1", boss, signer=Ed25519PrivateKey.generate())
    assert code_of(forged) == (422, "attestation_bad_signature")
    other_basket = shop.fallback(card, rice, "fb-2", boss, signed_basket={"RICE-1KG": 2})
    assert code_of(other_basket) == (422, "attestation_bad_signature"), "an attestation covers one basket"
    other_counter = shop.fallback(card, rice, "fb-3", boss, signed_for=town.pharmacy.terminal_id)
    assert code_of(other_counter) == (422, "attestation_bad_signature"), "an attestation covers one counter"
    other_card = dict(attest(town, boss, town.adults[1], rice, town.shop.terminal_id))
    payload = {"card_token": card.token, "basket": [{"item": "RICE-1KG", "quantity": 1}], "photo_checked": True}
    assert code_of(shop.post("/v1/redemptions/fallback", payload | {"supervisor": other_card}, "fb-4")) == (
        422,
        "attestation_bad_signature",
    ), "an attestation covers one card"
    stale = shop.fallback(card, rice, "fb-5", boss, age=timedelta(minutes=5))
    assert code_of(stale) == (422, "attestation_stale")
    assert town.counts() == counts
    nonce = new_id()
    assert shop.fallback(card, rice, "fb-6", boss, nonce=nonce).status_code == 201
    signed = attest(town, boss, card, rice, town.shop.terminal_id, nonce=nonce)
    replayed = shop.post("/v1/redemptions/fallback", payload | {"supervisor": signed}, "fb-7")
    assert code_of(replayed) == (422, "attestation_replayed")
    assert len(fallback_sales(town)) == 1


def test_only_a_supervisor_device_of_this_outlet_can_attest(
    town: DistributionTown, shop: Counter, boss: Supervisor
) -> None:
    card = town.adults[0]
    rice = {"RICE-1KG": 1}
    now = town.clock.now()
    key, elsewhere = add_terminal(town.engine, town.pharmacy.outlet_id, now, "supervisor")
    assert code_of(shop.fallback(card, rice, "fb-1", Supervisor(elsewhere, key))) == (
        422,
        "attestation_other_outlet",
    )
    key, second_counter = add_terminal(town.engine, town.shop.outlet_id, now, "counter")
    assert code_of(shop.fallback(card, rice, "fb-2", Supervisor(second_counter, key))) == (
        422,
        "attestation_not_supervisor",
    )
    itself = Supervisor(town.shop.terminal_id, town.shop.key)
    assert code_of(shop.fallback(card, rice, "fb-3", itself)) == (422, "attestation_not_supervisor")
    with town.engine.connect() as conn:
        conn.execute(sa.update(t.terminals).where(t.terminals.c.id == boss.terminal_id).values(revoked_at=now))
        conn.commit()
    assert code_of(shop.fallback(card, rice, "fb-4", boss)) == (422, "attestation_not_supervisor")
    assert code_of(shop.fallback(card, rice, "fb-5", Supervisor("not-an-id", key))) == (
        422,
        "attestation_not_supervisor",
    )
    assert not fallback_sales(town)


def test_fallbacks_are_capped_per_card_and_cycle(town: DistributionTown, shop: Counter, boss: Supervisor) -> None:
    card = town.adults[0]
    other = capped_item(town, card)
    assert code_of(shop.fallback(card, {"RICE-1KG": 2}, "fb-1", boss)) == (422, "fallback_cap_exceeded")
    assert shop.fallback(card, {"RICE-1KG": 1}, "fb-2", boss).status_code == 201
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-3", boss)) == (422, "fallback_cap_exceeded")
    second = shop.fallback(card, {other: 1}, "fb-4", boss)
    assert second.status_code == 201 and second.json()["fallbacks_left"] == 0
    assert code_of(shop.fallback(card, {"SALT-1KG": 1}, "fb-5", boss)) == (422, "fallback_limit_reached")
    assert len(fallback_sales(town)) == 2
    neighbour = next(c for c in town.adults if c.household_id != card.household_id)
    assert shop.fallback(neighbour, {"RICE-1KG": 1}, "fb-6", boss).status_code == 201, "the cap is per card"


def test_a_minor_or_a_revoked_card_is_refused_without_pin_as_with_it(
    town: DistributionTown, shop: Counter, boss: Supervisor
) -> None:
    assert code_of(shop.fallback(town.minors[0], {"RICE-1KG": 1}, "fb-1", boss)) == (422, "not_entitled")
    card = town.adults[0]
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        revoke_card(uow, town.card_keys, card.handle, "stolen")
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-2", boss)) == (422, "card_revoked")
    assert not fallback_sales(town)


def test_only_a_counter_terminal_sends_a_fallback(town: DistributionTown, shop: Counter, boss: Supervisor) -> None:
    posing = Counter(
        shop.client, town, Till(town.shop.vendor_id, town.shop.outlet_id, boss.terminal_id, boss.key, "shop")
    )
    answer = posing.fallback(town.adults[0], {"RICE-1KG": 1}, "fb-1", boss)
    assert code_of(answer) == (403, "terminal_not_at_outlet")


# --- seen by the resident and by oversight -----------------------------------------------------------


def test_the_residents_access_log_shows_the_fallback_and_names_the_outlet(
    town: DistributionTown, shop: Counter, boss: Supervisor, container: Container
) -> None:
    card = town.adults[0]
    assert shop.fallback(card, {"RICE-1KG": 1}, "fb-1", boss).status_code == 201
    assert shop.redeem(card, {"RICE-1KG": 1}, "online-1").status_code == 201
    details = log_details(town, card.person_id)
    fallback = [d for d in details if d.startswith("redemption.fallback ")]
    assert len(fallback) == 1 and WITHOUT_PIN in fallback[0] and '"Tienda La Esquina"' in fallback[0]
    signed_in = shop.client.post("/v1/me/sessions", json={"card_handle": card.handle, "pin": PIN})
    assert signed_in.status_code == 201, signed_in.text
    token = signed_in.json()["token"]
    api = shop.client.get("/v1/me/access-log", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
    assert any(WITHOUT_PIN in json.dumps(e) for e in api.json()["entries"]), "the resident reads the fallback"
    page = TestClient(shop.client.app)
    page.cookies.set(SESSION_COOKIE, token)
    html = page.get("/me/log")
    assert html.status_code == 200
    assert "Tienda La Esquina (vendor) — sin PIN" in html.text, "the fallback is shown as such"
    assert html.text.count("Tienda La Esquina (vendor)") >= 2, "the online sale names the outlet too"
    assert town.shop.terminal_id not in html.text, "no terminal id where a name helps the resident"


def test_an_outlet_is_named_with_its_kind_once() -> None:
    assert TerminalOutlet("x", "La Esquina", "shop").label == "Tienda La Esquina"
    assert TerminalOutlet("x", "Farmacia Central", "pharmacy").label == "Farmacia Central"
    assert TerminalOutlet("x", "San Rafael", "pharmacy").label == "Farmacia San Rafael"


def test_the_exclusion_report_counts_fallbacks_and_their_refusals(
    town: DistributionTown, shop: Counter, boss: Supervisor
) -> None:
    card = town.adults[0]
    lock_pin(shop, card)
    assert shop.fallback(card, {"RICE-1KG": 1}, "fb-1", boss).status_code == 201
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-2", None))[1] == "attestation_missing"
    assert code_of(shop.fallback(card, {"RICE-1KG": 1}, "fb-3", boss))[1] == "fallback_cap_exceeded"
    with SqlSettlementUnitOfWork(town.engine, OVERSIGHT, town.clock) as uow:
        report = exclusion_report(uow, town.period)
    (outlet,) = [o for o in report.outlets if o.outlet_id == town.shop.outlet_id]
    assert (outlet.sales, outlet.fallbacks, outlet.failed_pin_attempts) == (1, 1, 4)
    assert dict(outlet.refusals) == {
        "pin_wrong": 4,
        "pin_locked": 2,
        "attestation_missing": 1,
        "fallback_cap_exceeded": 1,
    }
    # A refusal is logged for the holder once the card is known (not for a request missing its attestation).
    refused = [d for d in log_details(town, card.person_id) if d.startswith("redemption.fallback_refused")]
    assert refused == [
        f'redemption.fallback_refused code=fallback_cap_exceeded outlet={town.shop.outlet_id} "Tienda La Esquina"'
    ]


# --- offline conflicts: review, and a revoked terminal's receipts ------------------------------------


def vendor_uow(town: DistributionTown, till: Till) -> SqlUnitOfWork:
    return SqlUnitOfWork(town.engine, AccessContext(Actor(till.terminal_id, "vendor"), "redemption"), town.clock)


def sync_offline(town: DistributionTown, till: Till, *receipts: tuple[int, str, dict[str, int]]) -> list[str]:
    batch = []
    for index, (seq, handle, items) in enumerate(receipts):
        receipt = Receipt(till.terminal_id, seq, town.period, handle, items, town.clock.now().replace(microsecond=0))
        payload = receipt.payload()
        batch.append(SignedReceipt(index, payload, sign_receipt(till.key, payload)))
    with vendor_uow(town, till) as uow:
        seat = require_counter_seat(uow.offline, till.terminal_id)
    outcomes = apply_batch(lambda: vendor_uow(town, till), seat, batch, town.clock.now())
    return [o.status for o in outcomes]


def stored_receipts(town: DistributionTown) -> list[tuple[int, str, str | None, str | None]]:
    o = t.offline_receipts
    with system_uow(town.engine, town.clock) as uow:
        rows = uow.connection.execute(sa.select(o.c.seq, o.c.status, o.c.conflict, o.c.reviewed_by).order_by(o.c.seq))
        return [(int(r.seq), r.status, r.conflict, r.reviewed_by) for r in rows]


def test_a_reviewer_closes_an_offline_conflict_and_the_household_sees_the_note(
    town: DistributionTown, shop: Counter, container: Container
) -> None:
    card = town.adults[0]
    left = town.remaining(card.household_id, "RICE-1KG")
    assert sync_offline(town, town.shop, (1, card.handle, {"RICE-1KG": left + 1})) == ["conflict"]
    container.auth.create_staff_account("rita", "Rita", "reviewer", "reviewer-password-2026", "t")
    container.auth.create_staff_account("rosa", "Rosa", "registrar", "registrar-password-2026", "t")
    rita = container.auth.sign_in("rita", "reviewer-password-2026", None, "t").session_token
    rosa = container.auth.sign_in("rosa", "registrar-password-2026", None, "t").session_token

    def review(token: str, purpose: str, receipt_id: str, note: str = "Vendor called; over-sale recovered.") -> Any:
        headers = {"Authorization": f"Bearer {token}", "X-Civicard-Purpose": purpose}
        return shop.client.post(f"/v1/offline-conflicts/{receipt_id}/review", json={"note": note}, headers=headers)

    listed = shop.client.get(
        "/v1/offline-conflicts", headers={"Authorization": f"Bearer {rita}", "X-Civicard-Purpose": "offline_review"}
    ).json()["conflicts"]
    (conflict,) = listed
    assert code_of(review(rosa, "card_service", conflict["id"])) == (403, "reviewers_only")
    assert code_of(review(rita, "appeal_review", conflict["id"]))[0] == 403
    assert code_of(review(rita, "offline_review", new_id())) == (404, "conflict_not_found")
    assert code_of(review(rita, "offline_review", conflict["id"], note="   ")) == (422, "invalid_note")
    done = review(rita, "offline_review", conflict["id"])
    assert done.status_code == 200, done.text
    assert (done.json()["reason"], done.json()["reviewed_at"]) == (
        "insufficient_remaining",
        town.clock.now().isoformat(),
    )
    (row,) = stored_receipts(town)
    assert row[1:] == ("conflict", "insufficient_remaining", done.json()["reviewed_by"])
    assert code_of(review(rita, "offline_review", conflict["id"])) == (409, "conflict_already_reviewed")
    after = shop.client.get(
        "/v1/offline-conflicts", headers={"Authorization": f"Bearer {rita}", "X-Civicard-Purpose": "offline_review"}
    ).json()["conflicts"]
    assert after == [], "a reviewed conflict leaves the queue"
    a = t.access_log
    with system_uow(town.engine, town.clock) as uow:
        notes = (
            uow.connection.execute(
                sa.select(a.c.detail).where(
                    a.c.subject_household_id == card.household_id, a.c.purpose == "offline_review"
                )
            )
            .scalars()
            .all()
        )
    assert any("over-sale recovered" in n and conflict["id"] in n for n in notes)


def test_revoking_a_terminal_flags_its_unapplied_receipts_and_keeps_its_late_ones_for_review(
    town: DistributionTown, shop: Counter, db: Database, tmp_path: Path
) -> None:
    card = town.adults[0]
    statuses = sync_offline(town, town.shop, (1, card.handle, {"RICE-1KG": 1}), (2, new_handle(), {"RICE-1KG": 1}))
    assert statuses == ["applied", "conflict"]
    env = {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(bytes(range(32))).decode(),
    }
    result = CliRunner().invoke(vendors_app, ["terminal-revoke", town.shop.terminal_id], env=env)
    assert result.exit_code == 0, result.output
    assert "1 unapplied offline receipt(s) flagged" in " ".join(result.output.split())
    assert stored_receipts(town) == [(1, "applied", None, None), (2, "conflict", "terminal_revoked", None)]
    late = Receipt(town.shop.terminal_id, 3, town.period, card.handle, {"RICE-1KG": 1}, town.clock.now())
    payload = late.payload()
    body = {
        "receipts": [
            {
                "payload": base64.urlsafe_b64encode(payload).decode(),
                "signature": base64.urlsafe_b64encode(sign_receipt(town.shop.key, payload)).decode(),
            }
        ]
    }
    handed_in = shop.post("/v1/terminal/receipts", body)
    assert handed_in.status_code == 200, handed_in.text
    assert [(r["status"], r["reason"]) for r in handed_in.json()["results"]] == [("conflict", "terminal_revoked")]
    assert stored_receipts(town)[2:] == [(3, "conflict", "terminal_revoked", None)]  # kept, never applied
    assert code_of(shop.get("/v1/terminal/bundle")) == (401, "terminal_revoked")

"""A town ready for distribution tests: people, published rules, a cycle for the clock's month,
the item catalogue with prices, a shop and a pharmacy with counter terminals, and cards with PINs.

Vendors, outlets, terminals and prices are inserted straight into their tables (no admin service
exists for them yet); people, rules, cycles and cards go through the real services. Reusable:
`build_distribution_town(engine, clock, work_dir)` works on any migrated engine (a test's, or a
live server's container engine).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civicard.adapters.api.redemption_schemas import ReceiptOut
from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.redemption_store import IdempotencyKeys, SqlRedemptionUnitOfWork, StoredAnswer
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.distribution.redemption import RedeemCommand, RedemptionKeys, Refusal, redeem
from civicard.distribution.sales import BasketLine
from civicard.identity.cards import CardKeys, issue_card
from civicard.programs.cycles import period_of
from civicard.registry.population import PopulationSpec, generate_population
from civicard.shared.clock import Clock
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rulepacks"
PIN = "4826"
LOADER = AccessContext(Actor("test:loader", "system"), "bulk_import")
CYCLE = AccessContext(Actor("test:cycle", "system"), "cycle_run")
CARD_DESK = AccessContext(Actor("registrar-ana", "registrar"), "card_service")
TEST_ROOT_KEY = RootKey(bytes(range(32)))
# Subsidized price = reference // 4 for every item, so amounts are easy to check.
REFERENCE_PRICE_MINOR = 1_000


@dataclass(frozen=True)
class Till:
    """A counter terminal at an outlet, with the device key a real terminal would hold."""

    vendor_id: str
    outlet_id: str
    terminal_id: str
    key: Ed25519PrivateKey
    kind: str


@dataclass(frozen=True)
class HeldCard:
    person_id: str
    household_id: str
    card_id: str
    handle: str
    token: str


@dataclass
class DistributionTown:
    engine: sa.Engine
    clock: Clock
    period: str
    card_keys: CardKeys
    keys: RedemptionKeys
    shop: Till
    pharmacy: Till
    adults: list[HeldCard] = field(default_factory=list)  # adults of households with a food entitlement
    minors: list[HeldCard] = field(default_factory=list)  # children of such households, with cards
    medicine_holder: HeldCard | None = None  # an adult whose household has a medicine entitlement

    def remaining(self, household_id: str, item: str) -> int:
        return sum(r[1] for r in self.entitlement_rows(household_id) if r[0] == item)

    def entitlement_rows(self, household_id: str) -> list[tuple[str, int, int]]:
        """(item, remaining, granted) of the household's entitlements this period."""
        e = t.entitlements
        with system_uow(self.engine, self.clock) as uow:
            rows = uow.connection.execute(
                sa.select(e.c.item_code, e.c.remaining, e.c.granted).where(
                    e.c.period == self.period, e.c.household_id == household_id
                )
            )
            return [(r.item_code, int(r.remaining), int(r.granted)) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows in the tables a sale writes (to prove a refusal wrote nothing)."""
        with system_uow(self.engine, self.clock) as uow:
            conn = uow.connection
            return {
                table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for table in (t.redemptions, t.ledger_lines)
            } | {
                "remaining": int(
                    conn.execute(
                        sa.select(sa.func.coalesce(sa.func.sum(t.entitlements.c.remaining), 0)).where(
                            t.entitlements.c.period == self.period
                        )
                    ).scalar_one()
                )
            }


def system_uow(engine: sa.Engine, clock: Clock) -> SqlUnitOfWork:
    """A unit of work for test bookkeeping reads (an oversight case: read-only, every category)."""
    return SqlUnitOfWork(engine, AccessContext(Actor("test:oversight", "oversight"), "oversight_case"), clock)


def load_items(engine: sa.Engine, now: datetime) -> list[str]:
    catalogue = yaml.safe_load((RULES / "items.yaml").read_text(encoding="utf-8"))["items"]
    rows = [
        {
            "code": code,
            "name_es": spec["name"]["es"],
            "name_en": spec["name"]["en"],
            "unit": spec["unit"],
            "kind": spec["kind"],
            "atc_code": spec.get("atc"),
            "updated_at": now,
        }
        for code, spec in catalogue.items()
    ]
    with engine.connect() as conn:
        conn.execute(sa.insert(t.items), rows)
        conn.commit()
    return [r["code"] for r in rows]


def set_prices(engine: sa.Engine, period: str, items: list[str], now: datetime) -> None:
    rows = [
        {
            "item_code": item,
            "period": period,
            "reference_price_minor": REFERENCE_PRICE_MINOR,
            "subsidized_price_minor": REFERENCE_PRICE_MINOR // 4,
            "set_at": now,
            "set_by": "test",
        }
        for item in items
    ]
    with engine.connect() as conn:
        conn.execute(sa.insert(t.item_prices), rows)
        conn.commit()


def add_till(engine: sa.Engine, kind: str, name: str, now: datetime, role: str = "counter") -> Till:
    """A vendor with one outlet of `kind` (shop or pharmacy) and one terminal there."""
    vendor_id, outlet_id = new_id(), new_id()
    with engine.connect() as conn:
        conn.execute(
            sa.insert(t.vendors).values(
                id=vendor_id, name=f"{name} S.A.", tax_id="900123456", created_at=now, created_by="test"
            )
        )
        conn.execute(
            sa.insert(t.outlets).values(
                id=outlet_id,
                vendor_id=vendor_id,
                name=name,
                kind=kind,
                region="NOR",
                municipality="NOR-01",
                address_line="Calle 1 # 2-3",
                created_at=now,
            )
        )
        conn.commit()
    key, terminal_id = add_terminal(engine, outlet_id, now, role)
    return Till(vendor_id, outlet_id, terminal_id, key, kind)


def add_terminal(
    engine: sa.Engine, outlet_id: str | None, now: datetime, role: str = "counter"
) -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    terminal_id = new_id()
    with engine.connect() as conn:
        conn.execute(
            sa.insert(t.terminals).values(
                id=terminal_id,
                label=f"till {terminal_id[:6]}",
                public_key=key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                registered_at=now,
                registered_by="test",
                outlet_id=outlet_id,
                role=role,
            )
        )
        conn.commit()
    return key, terminal_id


def issue(engine: sa.Engine, clock: Clock, card_keys: CardKeys, person_id: str, household_id: str) -> HeldCard:
    with SqlCardUnitOfWork(engine, CARD_DESK, clock) as uow:
        issued = issue_card(uow, card_keys, person_id, PIN)
    return HeldCard(person_id, household_id, issued.card.id, issued.card.handle, issued.token)


def register_rules(engine: sa.Engine, clock: Clock) -> None:
    from tests.integration.test_cycle import register_published

    with SqlUnitOfWork(engine, CYCLE, clock) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, clock)
        uow.commit()


def run_period(engine: sa.Engine, clock: Clock, period: str, out_dir: Path) -> None:
    with SqlUnitOfWork(engine, CYCLE, clock) as uow:
        run_cycle(uow, period, out_dir)
        uow.commit()


def build_distribution_town(
    engine: sa.Engine,
    clock: Clock,
    work_dir: Path,
    households: int = 40,
    cards: int = 12,
    root_key: RootKey = TEST_ROOT_KEY,
    import_town: bool = True,
) -> DistributionTown:
    """Import a synthetic town (unless already there), run the clock month's cycle, price every
    item, open a shop and a pharmacy, and issue cards (PIN `PIN`) to up to `cards` adults of
    food-entitled households plus their children."""
    now = clock.now()
    period = period_of(clock.today())
    if import_town:
        source = work_dir / "population"
        generate_population(PopulationSpec(households=households, seed=11, duplicate_share=0.0), source)
        import_population(engine, source, LOADER, clock, None)
    register_rules(engine, clock)
    items = load_items(engine, now)
    run_period(engine, clock, period, work_dir / "cycle")
    set_prices(engine, period, items, now)
    card_keys = CardKeys.derive(root_key)
    town = DistributionTown(
        engine,
        clock,
        period,
        card_keys,
        RedemptionKeys(card_keys, root_key),
        add_till(engine, "shop", "Tienda La Esquina", now),
        add_till(engine, "pharmacy", "Farmacia Central", now),
    )
    food, medicine, members = _entitled(engine, clock, period)
    for household_id in food:
        for person_id, adult in members.get(household_id, []):
            if adult and len(town.adults) < cards:
                town.adults.append(issue(engine, clock, card_keys, person_id, household_id))
            elif not adult and len(town.minors) < 2:
                town.minors.append(issue(engine, clock, card_keys, person_id, household_id))
    for household_id in medicine:
        adults = [p for p, adult in members.get(household_id, []) if adult]
        held = [c for c in town.adults if c.household_id == household_id]
        if held:
            town.medicine_holder = held[0]
        elif adults:
            town.medicine_holder = issue(engine, clock, card_keys, adults[0], household_id)
        if town.medicine_holder is not None:
            break
    return town


def _entitled(
    engine: sa.Engine, clock: Clock, period: str
) -> tuple[list[str], list[str], dict[str, list[tuple[str, bool]]]]:
    """Households with food (RICE-1KG) and with medicine entitlements, and their members (adult?)."""
    e, i, m, p = t.entitlements, t.items, t.memberships, t.persons
    today = clock.today()
    with system_uow(engine, clock) as uow:
        conn = uow.connection
        rows = conn.execute(
            sa.select(e.c.household_id, i.c.kind, e.c.item_code)
            .join(i, i.c.code == e.c.item_code)
            .where(e.c.period == period, e.c.granted > 0)
            .order_by(e.c.household_id)
        ).all()
        food = sorted({r.household_id for r in rows if r.item_code == "RICE-1KG"})
        medicine = sorted({r.household_id for r in rows if r.kind == "medicine"})
        people = conn.execute(
            sa.select(m.c.household_id, p.c.id, p.c.birth_date)
            .join(p, p.c.id == m.c.person_id)
            .where(m.c.valid_to.is_(None), p.c.record_status == "active")
            .order_by(m.c.household_id, p.c.id)
        ).all()
    members: dict[str, list[tuple[str, bool]]] = {}
    for r in people:
        age = today.year - r.birth_date.year - ((today.month, today.day) < (r.birth_date.month, r.birth_date.day))
        members.setdefault(r.household_id, []).append((r.id, age >= 18))
    return food, medicine, members


def redeem_once(
    town: DistributionTown, till: Till, token: str, basket: dict[str, int], key: str, pin: str = PIN
) -> tuple[int, bytes]:
    """What POST /v1/redemptions does with an Idempotency-Key, without HTTP: claim the key, replay a
    stored answer, or redeem and store the answer (201 with the sale, 422 refusals on their own)."""
    body = json.dumps({"token": token, "pin": pin, "basket": basket}, sort_keys=True).encode()
    keys = IdempotencyKeys(town.engine)
    found = keys.claim(till.terminal_id, key, hashlib.sha256(body).hexdigest(), town.clock.now())
    if isinstance(found, StoredAnswer):
        return found.status, found.body
    context = AccessContext(Actor(till.terminal_id, "vendor"), "redemption")
    command = RedeemCommand(token, pin, tuple(BasketLine(i, q) for i, q in basket.items()), found)
    try:
        with SqlRedemptionUnitOfWork(town.engine, context, town.clock) as uow:
            receipt = redeem(uow, town.keys, command, lambda r: ReceiptOut.of(r).model_dump_json().encode())
    except Refusal as refused:
        answer = json.dumps({"code": refused.code}).encode()
        keys.settle(found, 422, answer, town.clock.now())
        return 422, answer
    except BaseException:
        keys.release(found)
        raise
    return 201, ReceiptOut.of(receipt).model_dump_json().encode()


def seed_rice_grant(engine: sa.Engine, clock: Clock, household_id: str, out_dir: Path, granted: int) -> Till:
    """This month's cycle and prices, a RICE-1KG grant of `granted` for one household (whatever its
    incomes), and a shop with a counter terminal: what a live-server test of a sale needs."""
    now = clock.now()
    period = f"{now:%Y-%m}"
    register_rules(engine, clock)
    items = load_items(engine, now)
    run_period(engine, clock, period, out_dir)
    set_prices(engine, period, items, now)
    with system_uow(engine, clock) as uow:
        uow.connection.execute(
            sa.insert(t.entitlements).values(
                period=period,
                id=new_id(),
                household_id=household_id,
                program="food_basket",
                item_code="RICE-1KG",
                granted=granted,
                remaining=granted,
                decision_id=new_id(),
                created_at=now,
                updated_at=now,
            )
        )
        uow.connection.commit()
    return add_till(engine, "shop", "Tienda La Esquina", now)

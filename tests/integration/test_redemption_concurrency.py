"""Never twice, under load (PostgreSQL): 64 threads, each with its own connection, hammer the same
few households at once. Redeemed quantities must equal the entitlement decrements, never exceed
what was granted, and an Idempotency-Key sent by many threads at once must redeem exactly once."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.guard import install_guard
from civicard.shared.clock import Clock
from tests.conftest import Database, fresh_postgres_schema
from tests.integration.distribution_fixtures import (
    DistributionTown,
    HeldCard,
    build_distribution_town,
    redeem_once,
    system_uow,
)

THREADS = 64
SALES_PER_THREAD = 12
GRANTED = 150  # RICE-1KG per hammered household: less than the threads ask for in all
SHARED_KEYS = 16  # keys every thread also sends, all at once


@pytest.fixture
def pg_db() -> Iterator[Database]:
    from civicard.adapters.db.migrate import upgrade

    for database in fresh_postgres_schema():
        upgrade(database.url)
        yield database


@pytest.fixture
def busy_town(pg_db: Database, clock: Clock, tmp_path: Path) -> Iterator[DistributionTown]:
    # One connection per thread (the application's pool holds 30).
    engine = sa.create_engine(pg_db.url, pool_size=THREADS + 4, max_overflow=0, pool_timeout=60)
    install_guard(engine)
    try:
        yield build_distribution_town(engine, clock, tmp_path, households=30, cards=12)
    finally:
        engine.dispose()


def _hammered(town: DistributionTown) -> tuple[list[str], list[HeldCard]]:
    households = sorted({c.household_id for c in town.adults})[:3]
    e = t.entitlements
    with system_uow(town.engine, town.clock) as uow:
        uow.connection.execute(
            sa.update(e)
            .where(e.c.period == town.period, e.c.household_id.in_(households), e.c.item_code == "RICE-1KG")
            .values(granted=GRANTED, remaining=GRANTED)
        )
        uow.connection.commit()
    return households, [c for c in town.adults if c.household_id in households]


def test_64_concurrent_terminals_never_redeem_more_than_granted(busy_town: DistributionTown) -> None:
    town = busy_town
    households, cards = _hammered(town)
    start = threading.Barrier(THREADS)
    results: list[tuple[str, int, int, bytes]] = []  # key, status, quantity asked, answer
    errors: list[BaseException] = []
    lock = threading.Lock()

    def terminal(n: int) -> None:
        rng = random.Random(n)
        mine: list[tuple[str, int, int, bytes]] = []
        try:
            start.wait()
            for k in range(SALES_PER_THREAD):
                card = rng.choice(cards)
                quantity = rng.randint(1, 3)
                key = f"t{n}-s{k}"
                status, body = redeem_once(town, town.shop, card.token, {"RICE-1KG": quantity}, key)
                mine.append((key, status, quantity, body))
                if k % 4 == 0:  # the same key from every thread, at nearly the same moment
                    shared = f"shared-{(k // 4) % SHARED_KEYS}"
                    try:
                        status, body = redeem_once(town, town.shop, cards[0].token, {"RICE-1KG": 1}, shared)
                        mine.append((shared, status, 1, body))
                    except Exception as busy:  # 409 while the first is running: the terminal retries later
                        assert getattr(busy, "code", "") == "request_in_progress", busy
        except BaseException as exc:
            errors.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(THREADS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    assert not errors, errors[:3]

    approved = [r for r in results if r[1] == 201]
    codes = Counter(r[3].decode() for r in results if r[1] != 201)
    assert all("insufficient_remaining" in c for c in codes), codes
    e, ll, rd = t.entitlements, t.ledger_lines, t.redemptions
    with system_uow(town.engine, town.clock) as uow:
        conn = uow.connection
        slots = conn.execute(
            sa.select(e.c.id, e.c.granted, e.c.remaining).where(
                e.c.period == town.period, e.c.household_id.in_(households)
            )
        ).all()
        ledger = dict(
            conn.execute(sa.select(ll.c.entitlement_id, sa.func.sum(ll.c.quantity)).group_by(ll.c.entitlement_id)).all()
        )
        per_key = Counter(conn.execute(sa.select(rd.c.idempotency_key)).scalars())
    for slot in slots:
        assert 0 <= slot.remaining <= slot.granted
        assert int(ledger.get(slot.id, 0)) == slot.granted - slot.remaining, "ledger == decrements, per entitlement"
    decremented = sum(s.granted - s.remaining for s in slots)
    assert sum(int(q) for q in ledger.values()) == decremented
    assert decremented <= GRANTED * len(households)
    unique_sales = {r[0]: r[2] for r in approved}
    assert decremented == sum(unique_sales.values()), "every approved answer is one sale, and nothing else"
    assert max(per_key.values()) == 1, "no Idempotency-Key redeemed twice"
    answers: dict[str, set[bytes]] = {}
    for key, _, _, body in results:
        answers.setdefault(key, set()).add(body)
    assert all(len(bodies) == 1 for bodies in answers.values()), "retries got the first answer"
    rate = len(per_key) / elapsed
    print(  # the measured figure goes to the report
        f"\n{len(per_key)} redemptions, {sum(codes.values())} refusals, {len(results)} answers in {elapsed:.2f} s "
        f"= {rate:.0f} redemptions/s, {len(results) / elapsed:.0f} answers/s on {os.cpu_count()} cores"
    )

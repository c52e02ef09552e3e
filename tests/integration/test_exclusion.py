"""The exclusion report on both databases: refusal counts, failed PINs and fallbacks per outlet."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from civicard.adapters.cli import settlement as settlement_cli
from civicard.adapters.cli.settlement import settlement_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.settlement_store import count_refusal
from civicard.distribution.exclusion import exclusion_report
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id

from ..conftest import Database
from .test_settlement import PERIOD, READER, Town, build_town, cli_env


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> Town:
    return build_town(engine, clock, tmp_path, households=30)


def _refuse(engine: sa.Engine, outlet_id: str, code: str, times: int = 1) -> None:
    for _ in range(times):
        with engine.begin() as conn:  # its own transaction, as after a refused sale rolled back
            count_refusal(conn, PERIOD, outlet_id, code)


def test_refusals_fallbacks_and_failed_pins_are_counted_per_outlet(town: Town) -> None:
    h1, h2, h3 = town.households
    town.sell(h1, town.outlet_a, {"RICE-1KG": 1})
    town.sell(h2, town.outlet_a, {"RICE-1KG": 1}, channel="fallback")
    town.sell(h3, town.outlet_b, {"RICE-1KG": 1})
    _refuse(town.engine, town.outlet_a.id, "pin_wrong", 3)
    _refuse(town.engine, town.outlet_a.id, "pin_locked")
    _refuse(town.engine, town.outlet_a.id, "not_entitled", 2)
    with town.engine.connect() as conn:
        counts = conn.execute(sa.select(t.refusal_counts.c.code, t.refusal_counts.c["count"])).all()
    assert sorted(tuple(r) for r in counts) == [("not_entitled", 2), ("pin_locked", 1), ("pin_wrong", 3)]
    with town.uow(READER) as uow:
        report = exclusion_report(uow, PERIOD)
    first, second = report.outlets  # the outlet turning people away comes first
    assert first.outlet_id == town.outlet_a.id and second.outlet_id == town.outlet_b.id
    assert (first.sales, first.fallbacks, first.failed_pin_attempts, first.refused) == (2, 1, 3, 6)
    assert dict(first.refusals) == {"pin_wrong": 3, "pin_locked": 1, "not_entitled": 2}
    assert first.refusal_rate == pytest.approx(6 / 8)
    assert (second.sales, second.fallbacks, second.refused) == (1, 0, 0)
    assert report.codes == ["not_entitled", "pin_locked", "pin_wrong"]


def test_a_refusal_count_holds_only_a_period_an_outlet_and_a_code(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for period, outlet, code in (
            ("2026-1", new_id(), "pin_wrong"),
            (PERIOD, "x", "pin_wrong"),
            (PERIOD, new_id(), "Juan Pérez"),
        ):
            with pytest.raises(DomainError) as refused:
                count_refusal(conn, period, outlet, code)
            assert refused.value.code == "invalid_refusal"
    assert {c.name for c in t.refusal_counts.columns} == {"period", "outlet_id", "code", "count"}


def test_the_report_for_an_unopened_period_is_refused(town: Town) -> None:
    with town.uow(READER) as uow, pytest.raises(DomainError) as refused:
        exclusion_report(uow, "2031-01")
    assert refused.value.code == "period_not_found"


def test_cli_exclusions(town: Town, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement_cli.out, "width", 240)
    town.sell(town.households[0], town.outlet_b, {"RICE-1KG": 1}, channel="fallback")
    _refuse(town.engine, town.outlet_b.id, "pin_wrong", 4)
    result = CliRunner().invoke(settlement_app, ["exclusions", "--period", PERIOD], env=cli_env(db, tmp_path))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "Esquina Norte" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:8] == ["Esquina Norte", "Tienda La Esquina", "1", "4", "1", "4", "80%", "4"], cells
    assert f"{PERIOD}: 1 outlet(s) with activity" in result.output

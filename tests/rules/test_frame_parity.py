"""The Polars evaluator (frame.py) against the Python evaluator: every rule file's test cases, and
random households under the published rule files, with members clustered by household (the fast
path) and shuffled (the group-by that hashes). Its columns are decisions_query's."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts, decide, facts_from_test
from civicard.programs.engines import Outcome
from civicard.programs.frame import frame_decisions
from civicard.programs.inputs import rule_inputs
from civicard.programs.rulepack import RulePack, load_rulepack
from civicard.programs.rulepack import TestCase as RuleCase
from civicard.programs.sql import decisions_query, output_columns
from tests.rules.parity import LOCAL_ENGINES, PERIODS, assert_same_outcomes, python_outcomes
from tests.rules.strategies import households

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
PACKS = [load_rulepack(path) for path in sorted(RULEPACKS.glob("*/*.yaml"))]
PUBLISHED = [p for p in PACKS if p.status == "published"]
CASES = [(pack, case) for pack in PACKS for case in pack.tests]


def arrow_tables(batch: Sequence[HouseholdFacts], shuffle_members: bool = False) -> tuple[pa.Table, pa.Table]:
    """The households and their members as Arrow tables of the canonical types."""
    inputs = rule_inputs()
    ids = [f"h{index:06d}" for index in range(len(batch))]
    member_rows = [(hid, member) for hid, facts in zip(ids, batch, strict=True) for member in facts.members]
    if shuffle_members:
        random.Random(len(member_rows)).shuffle(member_rows)

    def table(rows: list[tuple[str, Any]], fields: dict[str, Any]) -> pa.Table:
        columns: dict[str, pa.Array] = {"household_id": pa.array([hid for hid, _ in rows], pa.string())}
        for name, spec in fields.items():
            kind = pa.bool_() if spec.kind == "boolean" else pa.float64()
            columns[name] = pa.array([values.get(name) for _, values in rows], kind)
        return pa.table(columns)

    return (
        table([(hid, facts.household) for hid, facts in zip(ids, batch, strict=True)], inputs.household),
        table(member_rows, inputs.member),
    )


def frame_outcomes(
    packs: Sequence[RulePack], period: date, batch: Sequence[HouseholdFacts], shuffle_members: bool = False
) -> list[dict[str, Outcome]]:
    households_table, members_table = arrow_tables(batch, shuffle_members)
    result = frame_decisions(packs, period, households_table, members_table)
    assert result.column_names == ["household_id", *(c.name for c in output_columns(packs))]
    assert result.column("household_id").to_pylist() == households_table.column("household_id").to_pylist()
    return [_outcomes(packs, row) for row in result.to_pylist()]


def _outcomes(packs: Sequence[RulePack], row: dict[str, Any]) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    for pack in packs:
        p = pack.program
        items: dict[str, int] = {}
        item_columns = [c for c in output_columns([pack]) if c.part.startswith("item:")]
        for grant, column in zip(pack.items, item_columns, strict=True):
            if row[column.name] > 0:
                items[grant.item] = items.get(grant.item, 0) + row[column.name]
        conditions = tuple((c.name, row[f"{p}__c__{c.name}"]) for c in pack.conditions)
        found[p] = Outcome(row[f"{p}__status"], row[f"{p}__amount"], conditions, tuple(sorted(items.items())))
    return found


@pytest.mark.parametrize(("pack", "case"), CASES, ids=[f"{p.program}/{p.version}/{c.name[:40]}" for p, c in CASES])
def test_each_rule_case_comes_out_of_polars_as_out_of_the_python_evaluator(pack: RulePack, case: RuleCase) -> None:
    facts = facts_from_test(case.household, case.members)
    expected = Outcome.of(decide(pack, facts, case.period))
    assert frame_outcomes([pack], case.period, [facts]) == [{pack.program: expected}]


def test_polars_gives_the_columns_and_types_of_the_compiled_query() -> None:
    batch = [facts_from_test({}, [{"age": 70, "income": 1_000, "chronic_i10": True, "chronic_illness": True}])]
    households_table, members_table = arrow_tables(batch)
    frame = frame_decisions(PUBLISHED, date(2026, 12, 1), households_table, members_table)
    connection = duckdb.connect()
    connection.register("households", households_table)
    connection.register("members", members_table)
    query, _ = decisions_query(PUBLISHED, date(2026, 12, 1), "duckdb")
    sql = connection.sql(query).to_arrow_table()
    assert frame.column_names == sql.column_names
    assert [str(t).replace("large_", "") for t in frame.schema.types] == [str(t) for t in sql.schema.types]
    assert frame.to_pylist() == sql.to_pylist()


def test_a_household_without_members_and_an_empty_population_are_decided() -> None:
    batch = [facts_from_test({}, []), facts_from_test({}, [{"age": 3}])]
    assert frame_outcomes(PUBLISHED, date(2026, 12, 1), batch) == python_outcomes(PUBLISHED, date(2026, 12, 1), batch)
    assert frame_outcomes(PUBLISHED, date(2026, 12, 1), []) == []


@settings(LOCAL_ENGINES, max_examples=25)
@given(batch=st.lists(households(), min_size=1, max_size=12), period=PERIODS, shuffle=st.booleans())
def test_random_households_get_the_same_decisions_from_polars_and_python(
    batch: list[HouseholdFacts], period: date, shuffle: bool
) -> None:
    got = frame_outcomes(PUBLISHED, period, batch, shuffle_members=shuffle)
    assert_same_outcomes("polars", got, python_outcomes(PUBLISHED, period, batch), batch)

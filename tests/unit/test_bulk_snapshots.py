"""Input snapshots written in bulk (DuckDB) are the very text and hash `inputs_json` writes one by one."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from civicard.programs.bulk import snapshots_bulk
from civicard.programs.cycles import inputs_json, snapshot_id
from civicard.programs.inputs import rule_inputs
from civicard.programs.projection import RuleInputs, column_order

HOUSEHOLD, MEMBER = column_order()
KINDS = {
    **{n: i.kind for n, i in rule_inputs().household.items()},
    **{n: i.kind for n, i in rule_inputs().member.items()},
}
NUMBERS = st.one_of(
    st.none(),
    st.integers(-(10**17), 10**17).map(float),
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e16, 1e-5, 0.1, 123456789012345.6]),
)


def _values(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {n: st.one_of(st.none(), st.booleans()) if KINDS[n] == "boolean" else NUMBERS for n in names}
    )


def _table(rows: list[dict[str, Any]], names: list[str], first: list[str]) -> pa.Table:
    fields = [pa.field(n, pa.string()) for n in first] + [
        pa.field(n, pa.bool_() if KINDS[n] == "boolean" else pa.float64()) for n in names
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_values(HOUSEHOLD), st.lists(_values(MEMBER), max_size=4)), min_size=1, max_size=6))
def test_bulk_snapshots_equal_the_one_by_one_text_and_hash(households) -> None:  # type: ignore[no-untyped-def]
    house_rows, member_rows = [], []
    for index, (household, members) in enumerate(households):
        hid = f"h{index:03d}"
        house_rows.append({"household_id": hid, "region": "R1", **household})
        member_rows += [{"household_id": hid, **m} for m in members]
    inputs = RuleInputs(
        _table(house_rows, HOUSEHOLD, ["household_id", "region"]), _table(member_rows, MEMBER, ["household_id"])
    )
    written = snapshots_bulk(inputs).to_pylist()
    assert [w["household_id"] for w in written] == [r["household_id"] for r in house_rows]
    for row, mine, (_household, members) in zip(written, house_rows, households, strict=True):
        expected = inputs_json(mine, members)
        assert row["inputs"] == expected
        assert row["inputs_sha256"] == snapshot_id(expected)

"""Deciding many households at once: the compiled rules over a projection, in DuckDB.

`decide_bulk` runs `sql.decisions_query` for all packs in one pass over `RuleInputs` and
returns one row per household with every program's status, amount, conditions and items
(columns named as `sql.Column`), plus the household's region for aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import pyarrow as pa

from civicard.programs.projection import RuleInputs
from civicard.programs.rulepack import RulePack
from civicard.programs.sql import Column, decisions_query


def decide_bulk(
    packs: Sequence[RulePack], period_start: date, inputs: RuleInputs, threads: int = 2
) -> tuple[pa.Table, list[Column]]:
    """Every household of `inputs` under every pack: (table, its decision columns)."""
    query, columns = decisions_query(packs, period_start, "duckdb")
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.register("households", inputs.households)
        con.register("members", inputs.members)
        table = con.sql(
            f"SELECT d.*, h.region FROM ({query}) d JOIN households h USING (household_id) ORDER BY d.household_id"
        ).to_arrow_table()
    finally:
        con.close()
    return table, columns

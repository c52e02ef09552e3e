"""Deciding many households at once: the compiled rules over a projection, in DuckDB.

`decide_bulk` runs `sql.decisions_query` for all packs in one pass over `RuleInputs` and
returns one row per household with every program's status, amount, conditions and items
(columns named as `sql.Column`), plus the household's region for aggregates.
`snapshots_bulk` writes each household's input snapshot (`cycles.inputs_json`) and its SHA-256
in the same engine, so a cycle does not build millions of snapshots one by one in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import pyarrow as pa

from civicard.programs.cycles import LEFT_OUT
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


def snapshots_bulk(inputs: RuleInputs, threads: int = 2) -> pa.Table:
    """household_id, inputs_sha256, inputs (the canonical text), ordered by household id.

    The text is exactly `cycles.inputs_json` of the household's row and its members' rows: keys
    sorted, numbers as Python's `repr(float(v))` (DuckDB's DOUBLE → VARCHAR cast writes the same
    shortest round-trip form; a test holds the two together), members' texts sorted."""
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.register("households", inputs.households)
        con.register("members", inputs.members)
        household = _object_sql(inputs.households.schema)
        member = _object_sql(inputs.members.schema)
        return con.sql(
            f"""
            WITH m AS (
                SELECT household_id, string_agg(text, ',' ORDER BY text) AS texts
                FROM (SELECT household_id, {member} AS text FROM members) GROUP BY household_id
            ),
            s AS (
                SELECT h.household_id,
                       '{{"household":' || {household} || ',"members":[' || coalesce(m.texts, '') || ']}}' AS inputs
                FROM households h LEFT JOIN m USING (household_id)
            )
            SELECT household_id, sha256(inputs) AS inputs_sha256, inputs FROM s ORDER BY household_id
            """
        ).to_arrow_table()
    finally:
        con.close()


def _object_sql(schema: pa.Schema) -> str:
    """A DuckDB expression writing one row as `cycles._canonical` does (column names are the
    projection's own identifiers, from inputs.yaml)."""
    keys = sorted(name for name in schema.names if name not in LEFT_OUT)
    if not keys:
        return "'{}'"
    parts = [f"""'"{k}":' || {_token_sql(k, schema.field(k).type)}""" for k in keys]
    return "'{' || " + " || ',' || ".join(parts) + " || '}'"


def _token_sql(name: str, kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return f"CASE WHEN \"{name}\" IS NULL THEN 'null' WHEN \"{name}\" THEN 'true' ELSE 'false' END"
    return f"coalesce(CAST(CAST(\"{name}\" AS DOUBLE) AS VARCHAR), 'null')"

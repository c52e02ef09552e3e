"""Running compiled rules on an SQL engine over given households: the other side of parity.

Each engine gets two small tables (`households`, `members`) with the canonical column types,
runs the one query of sql.py, and its rows are read back as outcomes comparable with the
Python evaluator's decisions. The connection is the caller's (a DB-API connection of DuckDB,
sqlite3 or psycopg); the tables are temporary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from civicard.programs.decisions import Decision, HouseholdFacts
from civicard.programs.inputs import rule_inputs
from civicard.programs.rulepack import RulePack
from civicard.programs.sql import decisions_query

_TYPES = {
    "duckdb": {"number": "DOUBLE", "boolean": "BOOLEAN", "id": "VARCHAR"},
    "sqlite": {"number": "REAL", "boolean": "INTEGER", "id": "TEXT"},
    "postgres": {"number": "DOUBLE PRECISION", "boolean": "BOOLEAN", "id": "TEXT"},
}
_PLACEHOLDER = {"duckdb": "?", "sqlite": "?", "postgres": "%s"}


@dataclass(frozen=True)
class Outcome:
    """What both evaluators must agree on for one household and program."""

    status: str
    amount_minor: int
    conditions: tuple[tuple[str, bool | None], ...]
    items: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, decision: Decision) -> Outcome:
        return cls(
            decision.status,
            decision.amount_minor,
            tuple((c.name, c.met) for c in decision.conditions),
            tuple(sorted((code, q) for code, q in decision.items.items() if q > 0)),
        )

    def conditions_json(self) -> str:
        return json.dumps([[name, met] for name, met in self.conditions], separators=(",", ":"))

    def items_json(self) -> str:
        return json.dumps(dict(self.items), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, status: str, amount_minor: int, conditions: str, items: str) -> Outcome:
        """An outcome as stored (decisions table: conditions and items as JSON)."""
        return cls(
            status,
            int(amount_minor),
            tuple((str(n), m) for n, m in json.loads(conditions)),
            tuple(sorted((str(c), int(q)) for c, q in json.loads(items).items())),
        )


def run_on_engine(
    connection: Any, engine: str, packs: Sequence[RulePack], period: date, households: Sequence[HouseholdFacts]
) -> list[dict[str, Outcome]]:
    """Decide every household under every pack on `engine`; one {program: Outcome} per household."""
    inputs = rule_inputs()
    types = _TYPES[engine]
    mark = _PLACEHOLDER[engine]
    h_cols = list(inputs.household)
    m_cols = list(inputs.member)
    cur = connection.cursor()
    temp = "TEMPORARY " if engine != "duckdb" else "TEMP "
    # Only ever drop our own temporary tables: on a connection to a live database, an unqualified
    # DROP would reach the registry's `households` table.
    scope = {"duckdb": "temp.main.", "sqlite": "temp.", "postgres": "pg_temp."}[engine]
    for table in ("members", "households"):
        cur.execute(f"DROP TABLE IF EXISTS {scope}{table}")
    cur.execute(
        f"CREATE {temp}TABLE households (household_id {types['id']}, "
        + ", ".join(f"{c} {types[inputs.household[c].kind]}" for c in h_cols)
        + ")"
    )
    cur.execute(
        f"CREATE {temp}TABLE members (household_id {types['id']}, "
        + ", ".join(f"{c} {types[inputs.member[c].kind]}" for c in m_cols)
        + ")"
    )
    h_rows, m_rows = [], []
    for index, facts in enumerate(households):
        hid = f"h{index:06d}"
        h_rows.append((hid, *(_cell(facts.household.get(c), inputs.household[c].kind, engine) for c in h_cols)))
        for member in facts.members:
            m_rows.append((hid, *(_cell(member.get(c), inputs.member[c].kind, engine) for c in m_cols)))
    if h_rows:
        cur.executemany(f"INSERT INTO households VALUES ({', '.join([mark] * (len(h_cols) + 1))})", h_rows)
    if m_rows:
        cur.executemany(f"INSERT INTO members VALUES ({', '.join([mark] * (len(m_cols) + 1))})", m_rows)
    query, columns = decisions_query(packs, period, engine)
    cur.execute(query + " ORDER BY 1")
    rows = cur.fetchall()
    cur.close()
    return [row_outcomes([p.program for p in packs], columns, row[1:]) for row in rows]


def _cell(value: Any, kind: str, engine: str) -> Any:
    if value is None:
        return None
    if kind == "boolean":
        return int(bool(value)) if engine == "sqlite" else bool(value)
    return float(value)


def row_outcomes(programs: Sequence[str], columns: Sequence[Any], values: Sequence[Any]) -> dict[str, Outcome]:
    """One household's row of `decisions_query` (without its household id) as {program: Outcome}."""
    by_program: dict[str, dict[str, Any]] = {p: {"conditions": [], "items": []} for p in programs}
    for column, value in zip(columns, values, strict=True):
        slot = by_program[column.program]
        if column.part == "status":
            slot["status"] = value
        elif column.part == "amount":
            slot["amount"] = int(value)
        elif column.part.startswith("condition:"):
            slot["conditions"].append((column.part.split(":", 1)[1], None if value is None else bool(value)))
        else:
            quantity = int(value)
            if quantity > 0:
                slot["items"].append((column.part.split(":", 1)[1], quantity))
    return {
        program: Outcome(s["status"], s["amount"], tuple(s["conditions"]), tuple(sorted(_merged(s["items"]))))
        for program, s in by_program.items()
    }


def _merged(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for code, quantity in items:
        totals[code] = totals.get(code, 0) + quantity
    return list(totals.items())

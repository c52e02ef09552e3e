"""The registry as rule inputs, in bulk: one DuckDB query per side over raw registry rows.

The input is the registry's own rows (persons' birth dates, current memberships, every version
of every fact, households with their region), registered in DuckDB under the table names of
`RAW_TABLES`. The output is what `engines`/`sql.decisions_query` read: `households`
(household_id, region + household inputs) and `members` (household_id + member inputs), with the
canonical types. It must compute exactly what `household_inputs.facts_of_household` computes for
one household (a parity test holds the two together): a fact's version in force on the period's
first day is the latest `valid_from` on or before it that no correction superseded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from civicard.programs.household_inputs import PENSIONS, WORKING
from civicard.programs.inputs import rule_inputs

RAW_TABLES: dict[str, tuple[str, ...]] = {
    "households": ("id", "region"),
    "persons": ("id", "birth_date", "record_status"),
    "memberships": ("household_id", "person_id"),  # current ones only (valid_to IS NULL)
    "employment": ("id", "person_id", "status", "valid_from", "recorded_at", "supersedes_id"),
    "incomes": ("id", "person_id", "source", "monthly_amount_minor", "valid_from", "recorded_at", "supersedes_id"),
    "properties": ("id", "household_id", "kind", "value_minor", "valid_from", "recorded_at", "supersedes_id"),
    "health_needs": (
        "id",
        "person_id",
        "kind",
        "code",
        "degree_percent",
        "present",
        "valid_from",
        "recorded_at",
        "supersedes_id",
    ),
    "benefits_received": (
        "id",
        "person_id",
        "benefit",
        "monthly_amount_minor",
        "valid_from",
        "recorded_at",
        "supersedes_id",
    ),
}
_KEYS = {
    "employment": ("person_id",),
    "incomes": ("person_id", "source"),
    "properties": ("household_id", "kind"),
    "health_needs": ("person_id", "kind", "code"),
    "benefits_received": ("person_id", "benefit"),
}


@dataclass(frozen=True)
class RuleInputs:
    """Rule inputs of many households: what a cycle evaluates and snapshots."""

    households: pa.Table  # household_id, region, household inputs
    members: pa.Table  # household_id, member inputs

    @property
    def count(self) -> int:
        return int(self.households.num_rows)


def project(con: duckdb.DuckDBPyConnection, period_start: date) -> RuleInputs:
    """Rule inputs of every household in the raw tables registered on `con`, on `period_start`."""
    for kind, keys in _KEYS.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE cur_{kind} AS {_current_sql(kind, keys)}", {"day": period_start})
    members = con.sql(_members_sql(), params={"day": period_start}).to_arrow_table()
    con.register("member_inputs", members)
    try:
        households = con.sql(_households_sql()).to_arrow_table()
    finally:
        con.unregister("member_inputs")
    for kind in _KEYS:
        con.execute(f"DROP TABLE IF EXISTS cur_{kind}")
    return RuleInputs(_as_table(households), _as_table(members).drop_columns(["person_id"]))


def _as_table(result: Any) -> pa.Table:
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def _current_sql(kind: str, keys: tuple[str, ...]) -> str:
    """Versions in force on the day (parameter 1): not superseded, latest valid_from, then recorded_at."""
    return (
        f"SELECT * FROM {kind} f WHERE f.valid_from <= $day::DATE "
        f"AND f.id NOT IN (SELECT supersedes_id FROM {kind} WHERE supersedes_id IS NOT NULL) "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} "
        "ORDER BY valid_from DESC, recorded_at DESC, id DESC) = 1"
    )


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _members_sql() -> str:
    inputs = rule_inputs()
    chronic = [name for name in inputs.member if name.startswith("chronic_") and name != "chronic_illness"]
    flags = "".join(
        f", bool_or(kind = 'chronic' AND 'chronic_' || lower(code) = '{name}') AS {name}" for name in chronic
    )
    day = "$day::DATE"
    return f"""
        WITH ages AS (
            SELECT m.household_id, p.id AS person_id,
                   CAST(year({day}) - year(p.birth_date)
                        - CASE WHEN month({day}) * 100 + day({day}) < month(p.birth_date) * 100 + day(p.birth_date)
                               THEN 1 ELSE 0 END AS DOUBLE) AS age
            FROM memberships m JOIN persons p ON p.id = m.person_id
            WHERE p.record_status NOT IN ('merged', 'deceased')
        ),
        inc AS (SELECT person_id, sum(monthly_amount_minor) AS income FROM cur_incomes GROUP BY person_id),
        pen AS (SELECT DISTINCT person_id FROM cur_benefits_received WHERE benefit IN ({_quoted(PENSIONS)})),
        hn AS (
            SELECT person_id,
                   max(CASE WHEN kind = 'disability' THEN coalesce(degree_percent, 0) END) AS degree,
                   bool_or(kind = 'chronic') AS chronic_illness{flags}
            FROM cur_health_needs WHERE present GROUP BY person_id
        )
        SELECT a.household_id, a.person_id, a.age,
               CAST(coalesce(inc.income, 0) AS DOUBLE) AS income,
               coalesce(e.status IN ({_quoted(WORKING)}), false) AS employed,
               coalesce(e.status = 'unemployed', false) AS unemployed,
               coalesce(e.status = 'retired', false) AS retired,
               coalesce(e.status = 'student', false) AS student,
               coalesce(e.status = 'unable_to_work', false) AS unable_to_work,
               pen.person_id IS NOT NULL AS receives_pension,
               CAST(coalesce(hn.degree, 0) AS DOUBLE) AS disability_degree,
               coalesce(hn.chronic_illness, false) AS chronic_illness
               {"".join(f", coalesce(hn.{name}, false) AS {name}" for name in chronic)}
        FROM ages a
        LEFT JOIN inc ON inc.person_id = a.person_id
        LEFT JOIN cur_employment e ON e.person_id = a.person_id
        LEFT JOIN pen ON pen.person_id = a.person_id
        LEFT JOIN hn ON hn.person_id = a.person_id
        ORDER BY a.household_id, a.person_id
    """


def _households_sql() -> str:
    return """
        WITH mem AS (
            SELECT household_id, count(*) AS n, sum(income) AS income FROM member_inputs GROUP BY household_id
        ),
        ben AS (
            SELECT m.household_id, sum(b.monthly_amount_minor) AS amount
            FROM cur_benefits_received b JOIN member_inputs m ON m.person_id = b.person_id GROUP BY m.household_id
        ),
        prop AS (
            SELECT household_id, sum(value_minor) AS total,
                   sum(CASE WHEN kind = 'savings' THEN value_minor ELSE 0 END) AS savings,
                   bool_or(kind = 'dwelling') AS dwelling, bool_or(kind = 'vehicle') AS vehicle
            FROM cur_properties GROUP BY household_id
        )
        SELECT h.id AS household_id, h.region,
               CAST(coalesce(mem.n, 0) AS DOUBLE) AS member_count,
               CAST(coalesce(mem.income, 0) AS DOUBLE) AS household_income,
               CAST(coalesce(ben.amount, 0) AS DOUBLE) AS benefits_income,
               CAST(coalesce(prop.total, 0) AS DOUBLE) AS property_value,
               CAST(coalesce(prop.savings, 0) AS DOUBLE) AS savings,
               coalesce(prop.dwelling, false) AS owns_dwelling,
               coalesce(prop.vehicle, false) AS owns_vehicle
        FROM households h
        LEFT JOIN mem ON mem.household_id = h.id
        LEFT JOIN ben ON ben.household_id = h.id
        LEFT JOIN prop ON prop.household_id = h.id
        ORDER BY h.id
    """


def column_order() -> tuple[list[str], list[str]]:
    """Household and member input columns in the order of inputs.yaml."""
    inputs = rule_inputs()
    return list(inputs.household), list(inputs.member)

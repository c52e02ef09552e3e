"""The record contract of duplicate detection and how raw records become comparable features.

Every path — a CSV or Parquet file, the registry, one new enrollment — is normalised by the same
DuckDB SQL below, so a name is compared the same way wherever it came from.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import duckdb
import pyarrow as pa

from civicard.shared.vocab import load_yaml

INPUT_COLUMNS = (
    "record_id",
    "first_name",
    "surname",
    "date_of_birth",
    "sex",
    "address",
    "postcode",
    "city",
    "phone",
    "national_id",
)
"""The columns of `civicard dedup run` input files; any but record_id may be empty."""

FEATURE_COLUMNS = (
    "unique_id",
    "first_name",
    "first_name_1",
    "given_canon",
    "surname",
    "surname_1",
    "surname_2",
    "dob",
    "sex",
    "address",
    "postcode",
    "city",
    "phone",
    "national_id",
    "household_id",
)
"""What the model compares. `first_name_1` is the first given name, `given_canon` that name with
nicknames resolved ("pepe" → "jose"), `surname_1`/`surname_2` the two surnames, `dob` the birth
date as YYYY-MM-DD text (so digit typos are an edit distance), `household_id` the registry
household when known (NULL for files)."""


def _name(expression: str) -> str:
    """Lower case, no accents, letters and single spaces only; empty becomes NULL."""
    letters = f"regexp_replace(lower(strip_accents(coalesce({expression}, ''))), '[^a-z]+', ' ', 'g')"
    return f"nullif(trim({letters}), '')"


def _code(expression: str, keep: str) -> str:
    return f"nullif(regexp_replace(upper(coalesce({expression}, '')), '[^{keep}]+', '', 'g'), '')"


@cache
def nicknames() -> dict[str, str]:
    """Nickname → given name it stands for (both normalised), from nicknames.yaml."""
    raw = load_yaml("civicard.dedup", "nicknames.yaml")
    return {str(k): str(v) for k, v in raw["nicknames"].items()}


def register_nicknames(con: duckdb.DuckDBPyConnection) -> None:
    """Create the `dedup_nicknames` lookup table the normalising SQL joins to (idempotent)."""
    con.execute("CREATE TABLE IF NOT EXISTS dedup_nicknames (nickname VARCHAR PRIMARY KEY, canon VARCHAR)")
    if con.execute("SELECT count(*) FROM dedup_nicknames").fetchall()[0][0] == 0:
        con.executemany("INSERT INTO dedup_nicknames VALUES (?, ?)", list(nicknames().items()))


def features_sql(source: str) -> str:
    """SELECT turning a relation with INPUT_COLUMNS (plus an optional household_id) into
    FEATURE_COLUMNS. `source` is a table name or a parenthesised query, never user text."""
    return f"""
WITH cleaned AS (
  SELECT
    CAST(record_id AS VARCHAR) AS unique_id,
    {_name("CAST(first_name AS VARCHAR)")} AS first_name,
    {_name("CAST(surname AS VARCHAR)")} AS surname,
    CAST(TRY_CAST(CAST(date_of_birth AS VARCHAR) AS DATE) AS VARCHAR) AS dob,
    {_code("CAST(sex AS VARCHAR)", "A-Z")} AS sex,
    nullif(trim(regexp_replace(lower(strip_accents(coalesce(CAST(address AS VARCHAR), ''))),
                               '[^a-z0-9]+', ' ', 'g')), '') AS address,
    {_code("CAST(postcode AS VARCHAR)", "0-9A-Z")} AS postcode,
    {_name("CAST(city AS VARCHAR)")} AS city,
    nullif(right(regexp_replace(coalesce(CAST(phone AS VARCHAR), ''), '[^0-9]+', '', 'g'), 10), '') AS phone,
    {_code("CAST(national_id AS VARCHAR)", "0-9A-Z")} AS national_id,
    CAST(household_id AS VARCHAR) AS household_id
  FROM {source}
)
SELECT
  c.unique_id, c.first_name,
  split_part(c.first_name, ' ', 1) AS first_name_1,
  coalesce(n.canon, split_part(c.first_name, ' ', 1)) AS given_canon,
  c.surname,
  split_part(c.surname, ' ', 1) AS surname_1,
  nullif(split_part(c.surname, ' ', 2), '') AS surname_2,
  c.dob, c.sex, c.address, c.postcode, c.city, c.phone, c.national_id, c.household_id
FROM cleaned c
LEFT JOIN dedup_nicknames n ON n.nickname = split_part(c.first_name, ' ', 1)
"""


def features_of(
    con: duckdb.DuckDBPyConnection, records: list[dict[str, Any]], nicknames_ready: bool = False
) -> list[dict[str, Any]]:
    """Normalise a few records (an enrollment and its candidates) with the bulk SQL."""
    if not nicknames_ready:
        register_nicknames(con)
    names = (*INPUT_COLUMNS, "household_id")
    few = pa.table({c: pa.array([_text(r.get(c)) for r in records], pa.string()) for c in names})
    cur = con.cursor()
    try:
        cur.register("dedup_few", few)
        result = cur.execute(features_sql("dedup_few")).fetchall()
        columns = [d[0] for d in cur.description or ()]
        cur.unregister("dedup_few")
    finally:
        cur.close()
    return [dict(zip(columns, row, strict=True)) for row in result]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)

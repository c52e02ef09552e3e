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
    "birth_year",
    "birth_day",
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
date as YYYY-MM-DD text (so digit typos are an edit distance), `birth_year` and `birth_day`
(MM-DD) its two halves for blocking on a name with a mistyped date, `household_id` the registry
household when known (NULL for files)."""


def _clean(column: str, keep: str, separator: str) -> str:
    """`column` (already folded) with runs of characters outside `keep` replaced by `separator`,
    trimmed; empty becomes NULL. Most values are already clean, and a full match is much cheaper
    than a replace, so the replace runs only when needed."""
    words = f"[{keep}]+( [{keep}]+)*" if separator == " " else f"[{keep}]+"
    replaced = f"regexp_replace({column}, '[^{keep}]+', '{separator}', 'g')"
    return f"CASE WHEN regexp_full_match({column}, '{words}') THEN {column} ELSE nullif(trim({replaced}), '') END"


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
WITH folded AS (
  SELECT
    CAST(record_id AS VARCHAR) AS unique_id,
    lower(strip_accents(CAST(first_name AS VARCHAR))) AS first_name,
    lower(strip_accents(CAST(surname AS VARCHAR))) AS surname,
    CAST(date_of_birth AS VARCHAR) AS date_of_birth,
    upper(CAST(sex AS VARCHAR)) AS sex,
    lower(strip_accents(CAST(address AS VARCHAR))) AS address,
    upper(CAST(postcode AS VARCHAR)) AS postcode,
    lower(strip_accents(CAST(city AS VARCHAR))) AS city,
    CAST(phone AS VARCHAR) AS phone,
    upper(CAST(national_id AS VARCHAR)) AS national_id,
    CAST(household_id AS VARCHAR) AS household_id
  FROM {source}
), cleaned AS (
  SELECT
    unique_id,
    {_clean("first_name", "a-z", " ")} AS first_name,
    {_clean("surname", "a-z", " ")} AS surname,
    CAST(TRY_CAST(date_of_birth AS DATE) AS VARCHAR) AS dob,
    {_clean("sex", "A-Z", "")} AS sex,
    {_clean("address", "a-z0-9", " ")} AS address,
    {_clean("postcode", "0-9A-Z", "")} AS postcode,
    {_clean("city", "a-z", " ")} AS city,
    nullif(right({_clean("phone", "0-9", "")}, 10), '') AS phone,
    {_clean("national_id", "0-9A-Z", "")} AS national_id,
    household_id
  FROM folded
)
SELECT
  c.unique_id, c.first_name,
  split_part(c.first_name, ' ', 1) AS first_name_1,
  coalesce(n.canon, split_part(c.first_name, ' ', 1)) AS given_canon,
  c.surname,
  split_part(c.surname, ' ', 1) AS surname_1,
  nullif(split_part(c.surname, ' ', 2), '') AS surname_2,
  c.dob, left(c.dob, 4) AS birth_year, right(c.dob, 5) AS birth_day,
  c.sex, c.address, c.postcode, c.city, c.phone, c.national_id, c.household_id
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

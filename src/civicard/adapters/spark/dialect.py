"""DuckDB SQL of the dedup model and its record normalising, rewritten for Spark SQL.

sqlglot transpiles most of it. Three functions have no Spark twin that gives the same answers,
so they are rewritten here rather than left to differ:

- `jaro_winkler_similarity`: Splink's Spark jar (`jaro_winkler`) counts half transpositions
  without flooring them (martinez/hernandez: 0.627 against DuckDB's 0.660), which moves pairs
  across the model's 0.7/0.88/0.92 levels. It becomes the same Jaro-Winkler as DuckDB's
  (rapidfuzz: match window max(len)/2 - 1, transpositions floored, prefix ≤ 4 weighted 0.1
  once Jaro exceeds 0.7), written with Spark's higher-order array functions.
- `strip_accents`: Spark has none; it becomes `translate` over every Latin letter whose
  canonical decomposition is a base letter plus marks (what DuckDB strips).
- `regexp_full_match(x, p)`: `x RLIKE '^(?:p)$'`.

`damerau_levenshtein` stays: the jar's UDF gives the same distance for the model's `<= 1`.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Any

import sqlglot
from sqlglot import exp

_JARO_WINKLER = """
CASE WHEN length({a}) = 0 OR length({b}) = 0 THEN CAST(0.0 AS DOUBLE) ELSE (
  aggregate(
    array(aggregate(
      sequence(0, length({a}) - 1),
      named_struct('i', CAST(array() AS ARRAY<INT>), 'j', CAST(array() AS ARRAY<INT>)),
      (acc, i) -> CASE
        WHEN array_min(filter(sequence(0, length({b}) - 1), j -> abs(j - i) <= {window}
             AND substring({b}, j + 1, 1) = substring({a}, i + 1, 1) AND NOT array_contains(acc.j, j))) IS NULL
        THEN acc
        ELSE named_struct('i', concat(acc.i, array(i)), 'j', concat(acc.j, array(
          array_min(filter(sequence(0, length({b}) - 1), j -> abs(j - i) <= {window}
             AND substring({b}, j + 1, 1) = substring({a}, i + 1, 1) AND NOT array_contains(acc.j, j))))))
        END
    )),
    CAST(0.0 AS DOUBLE),
    (zero, mt) -> CASE WHEN size(mt.i) = 0 THEN CAST(0.0 AS DOUBLE) ELSE aggregate(
      array((
        size(mt.i) / length({a}) + size(mt.i) / length({b})
        + (size(mt.i) - floor(size(filter(
            zip_with(mt.i, array_sort(mt.j), (x, y) -> substring({a}, x + 1, 1) <> substring({b}, y + 1, 1)),
            d -> d)) / 2)) / size(mt.i)
      ) / 3.0),
      CAST(0.0 AS DOUBLE),
      (z, jaro) -> CASE WHEN jaro > 0.7 THEN jaro + 0.1 * (1.0 - jaro) * size(filter(
        sequence(1, least(4, length({a}), length({b}))),
        k -> substring({a}, 1, k) = substring({b}, 1, k))) ELSE jaro END
    ) END
  )
) END
"""
# The two `aggregate(array(x), 0.0, (zero, v) -> f(v))` wrappers bind an intermediate value
# (the matches, then the Jaro similarity) to a name, which Spark SQL has no `LET` for.


def jaro_winkler_sql(a: str, b: str) -> str:
    """DuckDB's jaro_winkler_similarity(a, b) as a Spark SQL expression (a, b: SQL expressions)."""
    window = f"greatest(CAST(floor(greatest(length({a}), length({b})) / 2) AS INT) - 1, 0)"
    return _JARO_WINKLER.format(a=f"({a})", b=f"({b})", window=window)


@cache
def _accent_table() -> tuple[str, str]:
    source, target = [], []
    for code in range(0xC0, 0x250):
        char = chr(code)
        parts = unicodedata.normalize("NFD", char)
        base = "".join(c for c in parts if not unicodedata.combining(c))
        if len(parts) > 1 and len(base) == 1:
            source.append(char)
            target.append(base)
    return "".join(source), "".join(target)


def _rewrite(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.JarowinklerSimilarity):
        a, b = node.this.sql(dialect="spark"), node.expression.sql(dialect="spark")
        return exp.Paren(this=sqlglot.parse_one(jaro_winkler_sql(a, b), read="spark"))
    if isinstance(node, exp.RegexpFullMatch):
        pattern = node.expression
        if not isinstance(pattern, exp.Literal):
            raise ValueError("regexp_full_match needs a literal pattern")
        anchored = exp.Literal.string(f"^(?:{pattern.this})$")
        return exp.RegexpLike(this=node.this, expression=anchored)
    if isinstance(node, exp.Anonymous) and str(node.this).lower() == "strip_accents":
        source, target = _accent_table()
        return exp.Anonymous(
            this="translate",
            expressions=[node.expressions[0], exp.Literal.string(source), exp.Literal.string(target)],
        )
    return node


def to_spark(duckdb_sql: str) -> str:
    """One DuckDB expression or query as Spark SQL, with the three rewrites above."""
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    return tree.transform(_rewrite).sql(dialect="spark")


def spark_model(model: dict[str, Any]) -> dict[str, Any]:
    """The saved (DuckDB) Splink model with every comparison level and blocking rule in Spark SQL;
    its parameters untouched, so both engines score with the same m and u probabilities."""
    comparisons = [
        {
            **comparison,
            "comparison_levels": [
                level
                if level["sql_condition"] == "ELSE"
                else {**level, "sql_condition": to_spark(level["sql_condition"])}
                for level in comparison["comparison_levels"]
            ],
        }
        for comparison in model["comparisons"]
    ]
    rules = [
        {**rule, "blocking_rule": to_spark(rule["blocking_rule"]), "sql_dialect": "spark"}
        for rule in model["blocking_rules_to_generate_predictions"]
    ]
    return {
        **model,
        "sql_dialect": "spark",
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": rules,
    }

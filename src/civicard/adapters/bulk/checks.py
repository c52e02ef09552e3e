"""The files of an extract and their DuckDB validation: columns, types, codes, references, duplicates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import String, Table

from civicard.adapters.db import tables as t
from civicard.registry.allowlist import allow_list
from civicard.registry.facts import MAX_MONEY_MINOR
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import InvalidInput

Progress = Callable[[str, int, int], None]
ID_PATTERN = "[0-9a-f]{32}"
_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})
_PARQUET_TYPES = {
    "id": {"VARCHAR"},
    "text": {"VARCHAR"},
    "code": {"VARCHAR"},
    "date": {"DATE"},
    "money": _INTEGER_TYPES,
    "integer": _INTEGER_TYPES,
}


def _same(*names: str) -> dict[str, str]:
    return {name: name for name in names}


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file of an extract: the table it fills and what must hold across its rows."""

    table: Table
    columns: dict[str, str]  # source column -> target column; other source columns are ignored
    unique: tuple[tuple[str, str], ...] = ()  # (source column, error code when repeated)
    references: tuple[tuple[str, str], ...] = ()  # (source column, file whose id it names)
    subject: str | None = None  # "person" or "household": each row gets an access-log entry

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def id_column(self) -> str:
        return next(s for s, target in self.columns.items() if target == "id")

    @property
    def order_column(self) -> str:
        """Rows are written in this order so index insertions sweep their B-trees instead of hopping."""
        return self.references[0][0] if self.references else self.id_column


SOURCES: tuple[SourceFile, ...] = (
    SourceFile(
        t.households,
        {"household_id": "id", **_same("region", "municipality", "address_line", "postcode")},
        unique=(("household_id", "import_duplicate_id"),),
        subject="household",
    ),
    SourceFile(
        t.persons,
        {
            "person_id": "id",
            **_same(
                "given_names",
                "first_surname",
                "second_surname",
                "birth_date",
                "birth_place",
                "sex",
                "address_line",
                "municipality",
                "region",
                "postcode",
                "phone",
                "national_id",
                "photo_ref",
            ),
        },
        unique=(("person_id", "import_duplicate_id"),),
        subject="person",
    ),
    SourceFile(
        t.memberships,
        _same("household_id", "person_id", "relationship", "valid_from"),
        unique=(("person_id", "import_duplicate_membership"),),
        references=(("household_id", "households"), ("person_id", "persons")),
    ),
    SourceFile(t.employment, _same("person_id", "status", "valid_from"), references=(("person_id", "persons"),)),
    SourceFile(
        t.incomes,
        _same("person_id", "source", "monthly_amount_minor", "valid_from"),
        references=(("person_id", "persons"),),
    ),
    SourceFile(
        t.properties,
        _same("household_id", "kind", "value_minor", "valid_from"),
        references=(("household_id", "households"),),
    ),
    SourceFile(
        t.health_needs,
        _same("person_id", "kind", "code", "degree_percent", "valid_from"),
        references=(("person_id", "persons"),),
    ),
    SourceFile(
        t.benefits_received,
        _same("person_id", "benefit", "monthly_amount_minor", "valid_from"),
        references=(("person_id", "persons"),),
    ),
)


@dataclass(frozen=True)
class _Check:
    """A row-level rule as a DuckDB condition that is true on a bad row (identifiers and ? only)."""

    code: str
    column: str
    condition: str
    params: tuple[object, ...]
    problem: str
    shows_value: bool = False  # codes and ids may be quoted in the error; other values are personal


def quote(identifier: str) -> str:
    """Quote an identifier. SQL here is built from identifiers in SOURCES and tables.py only (hence
    the `noqa: S608`s); every value, including limits and code lists, is a bound parameter."""
    return '"' + identifier.replace('"', '""') + '"'


def validate(duck: duckdb.DuckDBPyConnection, source_dir: Path, report: Progress) -> dict[str, int]:
    """Register each file as a DuckDB view named after its table; returns rows per file."""
    _register_vocabularies(duck)
    totals: dict[str, int] = {}
    for i, source in enumerate(SOURCES):
        _register_file(duck, source, source_dir)
        totals[source.name] = _check_rows(duck, source)
        _check_unique(duck, source)
        report("validate", i + 1, len(SOURCES))
    for source in SOURCES:
        _check_references(duck, source)
    return totals


def _register_vocabularies(duck: duckdb.DuckDBPyConnection) -> None:
    vocab = vocabulary()
    lists = {spec.codes for spec in _specs() if spec.codes} | {"disability_codes", "chronic_codes"}
    pairs = [(name, code) for name in sorted(lists) for code in vocab.labels(name)]
    duck.register("vocab", pa.table({"list": [p[0] for p in pairs], "code": [p[1] for p in pairs]}))
    regions = [(m, r.code) for r in vocab.regions.values() for m in r.municipalities]
    duck.register(
        "municipality_regions", pa.table({"municipality": [m for m, _ in regions], "region": [r for _, r in regions]})
    )


def _specs() -> Iterator[Any]:
    for source in SOURCES:
        for target in source.columns.values():
            yield allow_list().column(source.name, target)


def _register_file(duck: duckdb.DuckDBPyConnection, source: SourceFile, source_dir: Path) -> None:
    path = source_dir / f"{source.name}.parquet"
    if not path.is_file():
        raise InvalidInput("import_missing_file", f"{path.name} is missing from {source_dir}.", file=path.name)
    relation = duck.read_parquet(str(path))
    found = dict(zip(relation.columns, (str(kind) for kind in relation.types), strict=True))
    for column, target in source.columns.items():
        kind = allow_list().column(source.name, target).type
        if column not in found:
            raise InvalidInput(
                "import_missing_column", f"{path.name} has no column '{column}'.", file=path.name, column=column
            )
        if found[column] not in _PARQUET_TYPES[kind]:
            raise InvalidInput(
                "import_invalid_type",
                f"{path.name}: column '{column}' is {found[column]}, expected a {kind}.",
                file=path.name,
                column=column,
                example=found[column],
            )
    relation.create_view(source.name)


def _row_checks(source: SourceFile) -> list[_Check]:
    checks: list[_Check] = []
    for column, target in source.columns.items():
        checks += _column_checks(source, column, target)
    if source.name in ("households", "persons"):
        checks.append(
            _Check(
                "import_region_mismatch",
                "region",
                "region <> (SELECT m.region FROM municipality_regions m WHERE m.municipality = src.municipality)",
                (),
                "name a region that does not contain their municipality",
                shows_value=True,
            )
        )
    if source.name == "health_needs":
        checks += [
            _Check(
                "import_unknown_code",
                "code",
                "code NOT IN (SELECT v.code FROM vocab v WHERE v.list = kind || ?)",
                ("_codes",),
                "have a code that is not a code of their kind",
                shows_value=True,
            ),
            _Check(
                "import_invalid_value",
                "degree_percent",
                "(kind = ?) <> (degree_percent IS NOT NULL)",
                ("disability",),
                "have a degree on a chronic condition or none on a disability",
            ),
        ]
    return checks


def _column_checks(source: SourceFile, column: str, target: str) -> list[_Check]:
    q, spec, sql_type = quote(column), allow_list().column(source.name, target), source.table.c[target].type
    checks = []
    if not source.table.c[target].nullable:
        checks.append(_Check("import_missing_value", column, f"{q} IS NULL", (), "have no value"))
    if spec.type == "id":
        checks.append(
            _Check(
                "import_invalid_id",
                column,
                f"NOT regexp_full_match({q}, ?)",
                (ID_PATTERN,),
                "are not a 32-character lowercase hex id",
                shows_value=True,
            )
        )
    elif spec.type == "code":
        in_vocab = f"{q} NOT IN (SELECT v.code FROM vocab v WHERE v.list = ?)"  # noqa: S608
        checks.append(
            _Check(
                "import_unknown_code",
                column,
                in_vocab,
                (spec.codes,),
                f"are not in the vocabulary '{spec.codes}'",
                shows_value=True,
            )
        )
    elif spec.type == "text":
        # PostgreSQL text cannot hold NUL (SQLite can): refuse it on both so the engines agree.
        checks.append(_Check("import_invalid_text", column, f"contains({q}, ?)", ("\x00",), "contain a NUL character"))
        if isinstance(sql_type, String) and sql_type.length:
            checks.append(
                _Check(
                    "import_value_too_long",
                    column,
                    f"length({q}) > ?",
                    (sql_type.length,),
                    f"are longer than {sql_type.length} characters",
                )
            )
    elif spec.type == "money":
        checks.append(
            _Check(
                "import_invalid_value",
                column,
                f"{q} < 0 OR {q} > ?",
                (MAX_MONEY_MINOR,),
                "are negative or beyond any plausible amount",
            )
        )
    elif spec.type == "integer":
        checks.append(
            _Check(
                "import_invalid_value", column, f"{q} NOT BETWEEN 0 AND 100", (), "are not a percentage from 0 to 100"
            )
        )
    return checks


def _check_rows(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> int:
    """All row-level checks of a file in one scan; the first failing one is reported."""
    checks = _row_checks(source)
    counts = ", ".join(f"count_if({c.condition})" for c in checks)
    params = [p for c in checks for p in c.params]
    row = duck.sql(f"SELECT count(*), {counts} FROM {quote(source.name)} AS src", params=params).fetchall()[0]  # noqa: S608
    for check, bad in zip(checks, row[1:], strict=True):
        if bad:
            _refuse_rows(duck, source, check, bad)
    return int(row[0])


def _refuse_rows(duck: duckdb.DuckDBPyConnection, source: SourceFile, check: _Check, bad: int) -> None:
    file = f"{source.name}.parquet"
    message = f"{file}: {bad} row(s) in column '{check.column}' {check.problem}"
    example = None
    if check.shows_value:
        query = f"SELECT {quote(check.column)} FROM {quote(source.name)} AS src WHERE {check.condition} LIMIT 1"  # noqa: S608
        example = str(duck.sql(query, params=list(check.params)).fetchall()[0][0])[:40]
        message += f", e.g. '{example}'"
    raise InvalidInput(
        check.code, message + ". Nothing was imported.", file=file, column=check.column, example=example, rows=bad
    )


def _check_unique(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> None:
    for column, code in source.unique:
        q = quote(column)
        query = f"SELECT {q} FROM {quote(source.name)} GROUP BY {q} HAVING count(*) > 1 LIMIT 1"  # noqa: S608
        found = duck.sql(query).fetchall()
        if found:
            file = f"{source.name}.parquet"
            raise InvalidInput(
                code,
                f"{file}: '{found[0][0]}' appears more than once in column '{column}'. Nothing was imported.",
                file=file,
                column=column,
                example=found[0][0],
            )


def _check_references(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> None:
    by_name = {s.name: s for s in SOURCES}
    for column, other in source.references:
        q, target = quote(column), by_name[other]
        query = (
            f"SELECT src.{q} FROM {quote(source.name)} AS src WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT 1 FROM {quote(other)} AS o WHERE o.{quote(target.id_column)} = src.{q}) LIMIT 1"
        )
        found = duck.sql(query).fetchall()
        if found:
            file = f"{source.name}.parquet"
            raise InvalidInput(
                "import_unknown_reference",
                f"{file}: column '{column}' names '{found[0][0]}', which is not in {other}.parquet. "
                "Nothing was imported.",
                file=file,
                column=column,
                example=found[0][0],
            )


def id_batches(duck: duckdb.DuckDBPyConnection, source: SourceFile, size: int) -> Iterator[list[str]]:
    """The ids of a registered file in ascending order, `size` at a time."""
    query = f"SELECT {quote(source.id_column)} FROM {quote(source.name)} ORDER BY 1"  # noqa: S608
    reader = duck.sql(query).to_arrow_reader(size)
    for batch in reader:
        if batch.num_rows:
            yield batch.column(0).to_pylist()

"""The kinds of need-related fact, their keys and values, and how each value is validated.

Each kind is stored in the table of the same name (fields.yaml). A fact is identified by its
subject and key columns (e.g. a person's income from `pension`); its value columns change by
new versions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from civicard.registry.allowlist import ColumnSpec, allow_list
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import InvalidInput

MAX_MONEY_MINOR = 10**14  # one trillion in major units: beyond any real income or asset


@dataclass(frozen=True)
class FactKind:
    name: str  # also the table name
    subject: str  # "person" or "household"
    keys: tuple[str, ...]
    values: tuple[str, ...]
    category: str

    @property
    def subject_column(self) -> str:
        return f"{self.subject}_id"

    def column(self, name: str) -> ColumnSpec:
        return allow_list().column(self.name, name)


FACT_KINDS: dict[str, FactKind] = {
    k.name: k
    for k in (
        FactKind("employment", "person", (), ("status",), "income"),
        FactKind("incomes", "person", ("source",), ("monthly_amount_minor",), "income"),
        FactKind("properties", "household", ("kind",), ("value_minor",), "property"),
        FactKind("health_needs", "person", ("kind", "code"), ("degree_percent", "present"), "health"),
        FactKind("benefits_received", "person", ("benefit",), ("monthly_amount_minor",), "benefits"),
    )
}


def fact_kind(name: str) -> FactKind:
    try:
        return FACT_KINDS[name]
    except KeyError:
        raise InvalidInput(
            "unknown_fact_kind", f"Unknown kind of fact '{name}'. Use one of: {', '.join(FACT_KINDS)}."
        ) from None


def validate_fact(kind: FactKind, key: dict[str, Any], values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a fact's key and values against the allow-list and vocabularies; returns clean copies."""
    _exact_fields(kind.keys, key, "key")
    _exact_fields(kind.values, values, "value", optional={"degree_percent", "present"})
    clean_key = {k: _clean(kind.column(k), key[k]) for k in kind.keys}
    clean_values = {v: _clean(kind.column(v), values.get(v)) for v in kind.values}
    if kind.name == "health_needs":
        _check_health(clean_key, clean_values)
    return clean_key, clean_values


def _exact_fields(
    expected: tuple[str, ...], given: dict[str, Any], what: str, optional: set[str] | None = None
) -> None:
    unknown = set(given) - set(expected)
    if unknown:
        raise InvalidInput(
            "unknown_field",
            f"Unknown {what} field(s): {', '.join(sorted(unknown))}. Expected: {', '.join(expected) or 'none'}.",
        )
    missing = set(expected) - set(given) - (optional or set())
    if missing:
        raise InvalidInput("missing_field", f"Missing {what} field(s): {', '.join(sorted(missing))}.")


def _clean(column: ColumnSpec, value: Any) -> Any:
    label = column.description.rstrip(".")
    if column.type == "code":
        if not isinstance(value, str):
            raise InvalidInput("invalid_code", f"{label} must be a code.")
        assert column.codes is not None
        return vocabulary().require(
            column.codes, value, column.name if column.codes != "health_codes" else "condition_code"
        )
    if column.type == "money":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput("invalid_amount", f"{label} must be a whole number of céntimos.")
        if value < 0:
            raise InvalidInput("negative_amount", f"{label} cannot be negative ({value}).")
        if value > MAX_MONEY_MINOR:
            raise InvalidInput("amount_too_large", f"{label} {value} is beyond any plausible amount.")
        return value
    if column.type == "integer":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise InvalidInput("invalid_percent", f"{label} must be a whole number from 0 to 100.")
        return value
    if column.type == "boolean":
        if value is None:
            return True
        if not isinstance(value, bool):
            raise InvalidInput("invalid_boolean", f"{label} must be true or false.")
        return value
    raise InvalidInput("invalid_field", f"{label} cannot be set here.")


def _check_health(key: dict[str, Any], values: dict[str, Any]) -> None:
    vocab = vocabulary()
    codes = vocab.lists["disability_codes"] if key["kind"] == "disability" else vocab.lists["chronic_codes"]
    if key["code"] not in codes:
        raise InvalidInput(
            "unknown_condition_code",
            f"'{key['code']}' is not a {key['kind']} code. Use one of: {', '.join(codes)}.",
        )
    if key["kind"] == "disability" and values.get("present", True) and values.get("degree_percent") is None:
        raise InvalidInput("missing_field", "A disability needs its recognised degree (degree_percent).")
    if key["kind"] == "chronic" and values.get("degree_percent") is not None:
        raise InvalidInput("invalid_field", "A chronic condition has no degree; leave degree_percent empty.")

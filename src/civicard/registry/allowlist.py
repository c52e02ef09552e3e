"""The field allow-list (fields.yaml) and the concepts civicard must never hold."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from civicard.registry.forbidden import FORBIDDEN_CONCEPTS, forbidden_concept
from civicard.shared.vocab import load_yaml

__all__ = ["FORBIDDEN_CONCEPTS", "AllowList", "ColumnSpec", "TableSpec", "allow_list", "forbidden_concept"]


@dataclass(frozen=True)
class ColumnSpec:
    table: str
    name: str
    type: str
    category: str
    description: str
    codes: str | None = None
    unit: str | None = None

    @property
    def personal(self) -> bool:
        return self.category != "technical"


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: str  # "personal" or "system"
    subject: str | None
    description: str
    columns: dict[str, ColumnSpec]


@dataclass(frozen=True)
class AllowList:
    categories: dict[str, dict[str, Any]]
    tables: dict[str, TableSpec]

    def column(self, table: str, name: str) -> ColumnSpec:
        return self.tables[table].columns[name]

    def personal_tables(self) -> list[str]:
        return [t.name for t in self.tables.values() if t.kind == "personal"]

    def special_categories(self) -> set[str]:
        return {name for name, spec in self.categories.items() if spec.get("special")}


@cache
def allow_list() -> AllowList:
    """The parsed fields.yaml; read once, on first use."""
    raw = load_yaml("civicard.registry", "fields.yaml")
    tables: dict[str, TableSpec] = {}
    for tname, t in raw["tables"].items():
        columns = {
            cname: ColumnSpec(
                table=tname,
                name=cname,
                type=c["type"],
                category=c["category"],
                description=c["description"],
                codes=c.get("codes"),
                unit=c.get("unit"),
            )
            for cname, c in t["columns"].items()
        }
        tables[tname] = TableSpec(tname, t["kind"], t.get("subject"), t["description"], columns)
    return AllowList(categories=raw["categories"], tables=tables)

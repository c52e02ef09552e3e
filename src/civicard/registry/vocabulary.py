"""The registry's closed vocabularies (codes.yaml): relationships, income sources, health codes…"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from civicard.shared.errors import InvalidInput
from civicard.shared.vocab import load_yaml


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    postcode_prefix: str
    municipalities: dict[str, str]


@dataclass(frozen=True)
class Vocabulary:
    lists: dict[str, dict[str, dict[str, str]]]
    regions: dict[str, Region]

    def labels(self, list_name: str) -> dict[str, dict[str, str]]:
        if list_name == "regions":
            return {r.code: {"es": r.name, "en": r.name} for r in self.regions.values()}
        if list_name == "municipalities":
            return {m: {"es": n, "en": n} for r in self.regions.values() for m, n in r.municipalities.items()}
        if list_name == "health_codes":
            return {**self.lists["disability_codes"], **self.lists["chronic_codes"]}
        return self.lists[list_name]

    def require(self, list_name: str, value: str, what: str) -> str:
        """Return `value` if it is in the list, else refuse with `unknown_<what>`."""
        allowed = self.labels(list_name)
        if value not in allowed:
            shown = ", ".join(sorted(allowed)[:12])
            raise InvalidInput(f"unknown_{what}", f"Unknown {what.replace('_', ' ')} '{value}'. Use one of: {shown}.")
        return value

    def region_of(self, municipality: str) -> str:
        for region in self.regions.values():
            if municipality in region.municipalities:
                return region.code
        raise InvalidInput("unknown_municipality", f"Unknown municipality '{municipality}'.")


@cache
def vocabulary() -> Vocabulary:
    raw = load_yaml("civicard.registry", "codes.yaml")
    regions = {
        code: Region(code, r["name"], str(r["postcode_prefix"]), dict(r["municipalities"]))
        for code, r in raw.pop("regions").items()
    }
    return Vocabulary(lists=raw, regions=regions)

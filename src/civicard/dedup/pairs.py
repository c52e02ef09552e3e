"""A scored pair of records and the reasons behind its score, as shown to clerks and reviewers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["agree", "close", "disagree", "missing"]


@dataclass(frozen=True)
class Reason:
    """How one field (or the combined household field) compared: `agree`, `close`, `disagree`
    or `missing`, with the model level's label ("day and month swapped") and its weight of
    evidence in bits (positive pushes towards "same person")."""

    field: str
    outcome: Outcome
    label: str
    weight: float

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "outcome": self.outcome, "label": self.label, "weight": round(self.weight, 2)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Reason:
        return cls(str(raw["field"]), raw["outcome"], str(raw["label"]), float(raw["weight"]))


@dataclass(frozen=True)
class ScoredPair:
    """Two records (ids as given: person ids in the registry, record ids in a file) and the
    model's probability that they are one person."""

    id_l: str
    id_r: str
    match_probability: float
    reasons: tuple[Reason, ...]

    def reasons_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.reasons]

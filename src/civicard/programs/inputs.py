"""The facts program rules may name: household inputs, member inputs and member aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from civicard.registry.vocabulary import vocabulary
from civicard.shared.vocab import load_yaml

Kind = Literal["number", "boolean"]
Unit = Literal["money", "integer", "number", "percent", "boolean"]


@dataclass(frozen=True)
class InputField:
    name: str
    unit: Unit
    description: str
    label_es: str = ""

    def label(self, lang: str) -> str:
        return self.label_es if lang == "es" and self.label_es else self.name.replace("_", " ")

    @property
    def kind(self) -> Kind:
        return "boolean" if self.unit == "boolean" else "number"


@dataclass(frozen=True)
class Aggregate:
    name: str
    argument: Literal["condition", "number"]
    result: Unit
    description: str


@dataclass(frozen=True)
class Inputs:
    household: dict[str, InputField]
    member: dict[str, InputField]
    aggregates: dict[str, Aggregate]


@cache
def rule_inputs() -> Inputs:
    """inputs.yaml, plus one member flag per chronic condition code (chronic_e11, …)."""
    raw = load_yaml("civicard.programs", "inputs.yaml")

    def fields(section: dict[str, dict[str, str]]) -> dict[str, InputField]:
        return {
            name: InputField(name, spec["type"], spec["description"], spec.get("es", ""))  # type: ignore[arg-type]
            for name, spec in section.items()
        }

    member = fields(raw["member"])
    for code, label in vocabulary().labels("chronic_codes").items():
        name = f"chronic_{code.lower()}"
        member[name] = InputField(name, "boolean", f"Has chronic condition {code} ({label['en']}).")
    aggregates = {
        name: Aggregate(name, spec["argument"], spec["result"], spec["description"])
        for name, spec in raw["aggregates"].items()
    }
    return Inputs(fields(raw["household"]), member, aggregates)

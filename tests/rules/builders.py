"""Small in-memory rule files for tests: one program, a few parameters, the given expressions."""

from __future__ import annotations

from datetime import date
from typing import Any

from civicard.programs.rulepack import RulePack, rulepack_from_dict

LABEL = {"es": "prueba", "en": "probe"}
PERIOD = date(2026, 3, 1)


def rule_dict(
    conditions: dict[str, str],
    amount: str = "0",
    *,
    program: str = "probe",
    derived: dict[str, tuple[str, str]] | None = None,
    parameters: dict[str, tuple[str, dict[str, float]]] | None = None,
    items: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A rule file as parsed YAML. `derived` and `parameters` map a name to (unit, expression or
    dated values); conditions and derived values get the name as their English label."""
    return {
        "program": program,
        "version": "1",
        "title": LABEL,
        "status": "draft",
        "legal_basis": "test",
        "entity": "household",
        "period": "month",
        "effective_from": "2026-01-01",
        "parameters": {
            name: {"label": {"es": name, "en": name.replace("_", " ")}, "unit": unit, "values": values}
            for name, (unit, values) in (parameters or {}).items()
        },
        "derived": {
            name: {"label": {"es": name, "en": name.replace("_", " ")}, "unit": unit, "expression": text}
            for name, (unit, text) in (derived or {}).items()
        },
        "conditions": {
            name: {"label": {"es": name, "en": name.replace("_", " ")}, "expression": text}
            for name, text in conditions.items()
        },
        "amount": {"unit": "money", "expression": amount},
        "items": [{"item": code, "quantity": quantity} for code, quantity in (items or {}).items()],
    }


def rule(conditions: dict[str, str], amount: str = "0", **options: Any) -> RulePack:
    return rulepack_from_dict(rule_dict(conditions, amount, **options), "probe.yaml")

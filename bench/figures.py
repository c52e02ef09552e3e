"""The machine-readable figures of one benchmark run: what each bench writes with `--json PATH`
and bench/run_all.py reads to compose bench/RESULTS.md.

A figure is one number a bench already computes, with its unit and, where the bench measures one
in the same run, the name and value of its reference (raw SHA-256, a raw DuckDB scan, pgbench
TPC-B, a plain Splink model, OpenFisca …). `better` says which direction is an improvement, so the
runner can read a ratio the right way round.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    reference: str | None = None
    reference_value: float | None = None
    better: Better = "higher"


@dataclass
class Figures:
    """Collects a run's figures; `write` does nothing without a path, so benches call it unconditionally."""

    bench: str
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    details: str = ""

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        reference: str | None = None,
        reference_value: float | None = None,
        better: Better = "higher",
    ) -> None:
        self.figures.append(Figure(name, float(value), unit, reference, reference_value, better))

    def write(self, path: Path | None) -> None:
        if path is None:
            return
        payload = {
            "bench": self.bench,
            "facts": self.facts,
            "figures": [asdict(figure) for figure in self.figures],
            "details": self.details,
        }
        path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_figures(path: Path) -> Figures:
    payload = json.loads(path.read_text(encoding="utf-8"))
    return Figures(
        bench=payload["bench"],
        figures=[Figure(**figure) for figure in payload["figures"]],
        facts=payload.get("facts", {}),
        details=payload.get("details", ""),
    )

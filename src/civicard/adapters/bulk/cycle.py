"""Running a benefit cycle: registry → rule inputs → decisions (DuckDB) → Parquet → database.

One transaction: the household reads are logged, the input snapshots, decisions and
entitlements are written (COPY on PostgreSQL), and the run is recorded — or nothing is: a run
that fails leaves no trace in the database and its error goes to whoever started it. Running a period again decides
again and stores only what differs (a corrected fact, a newly published version), superseding
the earlier decision and adjusting that household's entitlements for the open period.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from civicard.adapters.api.observability import observed_cycle
from civicard.adapters.db.program_inputs import registry_inputs
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs.bulk import decide_bulk
from civicard.programs.cycles import DecisionChange, Proposed, apply, inputs_json, period_start, snapshot_id
from civicard.programs.engines import row_outcomes
from civicard.programs.sql import Column
from civicard.shared.errors import Conflict, NotFound
from civicard.shared.ids import new_id

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CycleReport:
    run_id: str
    period: str
    programs: tuple[str, ...]  # "program version"
    households: int
    decisions_new: int
    decisions_changed: int
    entitlements_new: int
    entitlements_changed: int
    eligible: dict[str, int]
    output: Path
    changes: tuple[DecisionChange, ...]


@observed_cycle  # civicard_cycle_duration_seconds
def run_cycle(
    uow: SqlUnitOfWork,
    period: str,
    out_dir: Path,
    programs: Sequence[str] | None = None,
    progress: Progress = lambda _s, _d, _t: None,
) -> CycleReport:
    """Decide `period` for every household under the versions in force; the caller's uow commits."""
    start = period_start(period)
    now = uow.clock.now()
    if uow.decisions.period_status(period) == "closed":
        raise Conflict("period_closed", f"Period {period} is closed (settled); its decisions can no longer change.")
    versions = uow.register.in_force(start, programs)
    if programs:
        missing = sorted(set(programs) - {v.program for v in versions})
        if missing:
            raise NotFound(
                "no_version_in_force", f"No published version of {', '.join(missing)} is in force in {period}."
            )
    if not versions:
        raise NotFound("no_version_in_force", f"No program has a published version in force in {period}.")
    packs = [v.pack() for v in versions]
    run_id = new_id()
    inputs = registry_inputs(uow, start, f"cycle {period}: rule inputs", progress)
    progress("decide", 0, inputs.count)
    table, columns = decide_bulk(packs, start, inputs)
    progress("decide", inputs.count, inputs.count)
    snapshots = _snapshots(inputs.households, inputs.members)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"decisions-{period}-{run_id}.parquet"
    shas = pa.array([snapshots[h][0] for h in table.column("household_id").to_pylist()], pa.string())
    described = table.append_column("inputs_sha256", shas).replace_schema_metadata(
        {
            "civicard.period": period,
            "civicard.cycle_run": run_id,
            "civicard.rules": json.dumps({v.program: {"version": v.version, "sha256": v.sha256} for v in versions}),
        }
    )
    pq.write_table(described, output, compression="zstd")
    uow.decisions.open_period(period, now)
    known = uow.decisions.known_inputs(period)
    regions = dict(
        zip(
            inputs.households.column("household_id").to_pylist(),
            inputs.households.column("region").to_pylist(),
            strict=True,
        )
    )
    uow.decisions.add_inputs(
        [
            {"period": period, "household_id": h, "inputs_sha256": sha, "region": regions[h], "inputs": text}
            for h, (sha, text) in snapshots.items()
            if (h, sha) not in known
        ]
    )
    by_program = {v.program: v for v in versions}
    eligible = {p: int(pc.sum(pc.equal(table.column(f"{p}__status"), "eligible")).as_py() or 0) for p in by_program}
    # Only households whose inputs or rules differ from their stored decisions are looked at again.
    stored = uow.decisions.current_keys(period)
    todo = [
        h
        for h, (sha, _text) in snapshots.items()
        if any(stored.get((h, p)) != (v.sha256, sha) for p, v in by_program.items())
    ]
    if len(todo) < len(snapshots):
        table = table.filter(pc.is_in(table.column("household_id"), value_set=pa.array(todo, pa.string())))
    proposed = _proposed(table, columns, by_program, snapshots)
    progress("store", 0, len(proposed))
    changes, writes = apply(uow.decisions, period, proposed, "cycle", run_id, now, todo if stored else None)
    progress("store", len(proposed), len(proposed))
    report = CycleReport(
        run_id=run_id,
        period=period,
        programs=tuple(f"{v.program} {v.version}" for v in versions),
        households=inputs.count,
        decisions_new=sum(c.before is None for c in changes),
        decisions_changed=sum(c.before is not None for c in changes),
        entitlements_new=len(writes.entitlements_new),
        entitlements_changed=len(writes.entitlements_changed),
        eligible=eligible,
        output=output,
        changes=tuple(changes),
    )
    uow.decisions.add_run(
        {
            "id": run_id,
            "period": period,
            "programs": "\n".join(f"{v.program} {v.version} {v.sha256}" for v in versions),
            "status": "done",
            "started_by": uow.context.actor.id,
            "started_at": now,
            "finished_at": uow.clock.now(),
            "households": report.households,
            "decisions_new": report.decisions_new,
            "decisions_changed": report.decisions_changed,
            "entitlements_new": report.entitlements_new,
            "output_path": str(output),
            "error": None,
        }
    )
    return report


def _snapshots(households: pa.Table, members: pa.Table) -> dict[str, tuple[str, str]]:
    """household id → (snapshot id, canonical inputs text)."""
    by_household: dict[str, list[dict[str, Any]]] = {}
    for member in members.to_pylist():
        by_household.setdefault(member["household_id"], []).append(member)
    found = {}
    for row in households.to_pylist():
        text = inputs_json(row, by_household.get(row["household_id"], []))
        found[row["household_id"]] = (snapshot_id(text), text)
    return found


def _proposed(
    table: pa.Table, columns: list[Column], versions: dict[str, Any], snapshots: dict[str, tuple[str, str]]
) -> list[Proposed]:
    names = [c.name for c in columns]
    programs = list(versions)
    proposed = []
    for row in zip(*(table.column(n).to_pylist() for n in ["household_id", *names]), strict=True):
        household = row[0]
        for program, outcome in row_outcomes(programs, columns, row[1:]).items():
            v = versions[program]
            proposed.append(Proposed(household, program, v.id, v.sha256, snapshots[household][0], outcome))
    return proposed

"""Running a benefit cycle: registry → rule inputs → decisions (DuckDB) → Parquet → database.

Households are taken in chunks of `CHUNK_HOUSEHOLDS` (keyset on the household id): each chunk's
inputs are read and logged, decided, appended to the Parquet file and stored before the next one
is read, and only that chunk's stored state is fetched, so memory stays flat however large the
registry. All chunks share one transaction: the household reads are logged, the input snapshots,
decisions and entitlements are written (COPY on PostgreSQL), and the run is recorded — or nothing
is: a run that fails leaves no trace in the database (nor a partial Parquet file) and its error goes
to whoever started it. Running a period again decides again and stores only what differs (a
corrected fact, a newly published version), superseding the earlier decision and adjusting that
household's entitlements for the open period.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from civicard.adapters.api.observability import observed_cycle
from civicard.adapters.db.program_inputs import CHUNK_HOUSEHOLDS, registry_input_chunks
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs.bulk import decide_bulk, snapshots_bulk
from civicard.programs.cycles import DecisionChange, Proposed, apply, period_start
from civicard.programs.engines import Outcome, row_outcomes
from civicard.programs.projection import RuleInputs
from civicard.programs.rulepack import RulePack
from civicard.programs.sql import Column
from civicard.shared.errors import Conflict, NotFound
from civicard.shared.ids import new_id

Progress = Callable[[str, int, int], None]
# The report lists decisions that replaced an earlier one (a corrected fact, a new version) up to
# this many; new decisions, and replacements beyond it, are only counted. A first run at national
# size makes ~50 M new decisions: a report holding them all would not fit in memory.
CHANGES_KEPT = 1_000


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
    changes: tuple[DecisionChange, ...]  # replaced decisions only, the first CHANGES_KEPT by household


@dataclass
class _Tally:
    """What the report counts, summed over the chunks."""

    households: int = 0
    decisions_new: int = 0
    decisions_changed: int = 0
    entitlements_new: int = 0
    entitlements_changed: int = 0
    eligible: dict[str, int] = field(default_factory=dict)
    changes: list[DecisionChange] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    """What every chunk of one run shares."""

    uow: SqlUnitOfWork
    period: str
    run_id: str
    now: datetime
    versions: dict[str, Any]  # program → its version in force (register row)
    packs: list[RulePack]
    rules: dict[str, str]  # Parquet metadata


@observed_cycle  # civicard_cycle_duration_seconds
def run_cycle(
    uow: SqlUnitOfWork,
    period: str,
    out_dir: Path,
    programs: Sequence[str] | None = None,
    progress: Progress = lambda _s, _d, _t: None,
    chunk_households: int | None = None,
) -> CycleReport:
    """Decide `period` for every household under the versions in force; the caller's uow commits.

    `chunk_households` (default `CHUNK_HOUSEHOLDS`) households are read, decided and stored at a
    time; the result does not depend on it. Progress reports each stage over all households."""
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
    run_id = new_id()
    run = _Run(
        uow,
        period,
        run_id,
        now,
        {v.program: v for v in versions},
        [v.pack() for v in versions],
        {
            "civicard.period": period,
            "civicard.cycle_run": run_id,
            "civicard.rules": json.dumps({v.program: {"version": v.version, "sha256": v.sha256} for v in versions}),
        },
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"decisions-{period}-{run_id}.parquet"
    uow.decisions.open_period(period, now)
    tally = _Tally(eligible=dict.fromkeys(run.versions, 0))
    overall = _Overall(progress)
    writer: pq.ParquetWriter | None = None
    try:
        detail = f"cycle {period}: rule inputs"
        size = chunk_households or CHUNK_HOUSEHOLDS
        with closing(registry_input_chunks(uow, start, detail, size, overall, out_dir)) as chunks:
            for inputs in chunks:
                decided = _decide(run, inputs)
                if writer is None:
                    writer = pq.ParquetWriter(output, decided.decided.schema, compression="zstd")
                writer.write_table(decided.decided)
                overall("decide", tally.households + inputs.count, overall.total)
                _store(run, decided, tally)
                overall("store", tally.households, overall.total)
    except BaseException:
        if writer is not None:
            writer.close()
        output.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    report = CycleReport(
        run_id=run_id,
        period=period,
        programs=tuple(f"{v.program} {v.version}" for v in versions),
        households=tally.households,
        decisions_new=tally.decisions_new,
        decisions_changed=tally.decisions_changed,
        entitlements_new=tally.entitlements_new,
        entitlements_changed=tally.entitlements_changed,
        eligible=tally.eligible,
        output=output,
        changes=tuple(tally.changes),
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


class _Overall:
    """Passes progress on, keeping the reader's total (all households) for the later stages."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.total = total
        self.progress(stage, done, total)


@dataclass(frozen=True)
class _Chunk:
    decided: pa.Table  # household_id, the decision columns, region, inputs_sha256: the Parquet rows
    columns: list[Column]
    inputs: pa.ChunkedArray  # each household's snapshot text, stored in the database, not in the file


def _decide(run: _Run, inputs: RuleInputs) -> _Chunk:
    table, columns = decide_bulk(run.packs, period_start(run.period), inputs)
    snapshots = snapshots_bulk(inputs)
    if not table.column("household_id").equals(snapshots.column("household_id")):
        raise RuntimeError("decisions and input snapshots disagree on the households of a chunk")
    decided = table.append_column("inputs_sha256", snapshots.column("inputs_sha256"))
    return _Chunk(decided.replace_schema_metadata(run.rules), columns, snapshots.column("inputs"))


def _store(run: _Run, chunk: _Chunk, tally: _Tally) -> None:
    """Store one chunk's new snapshots, decisions and entitlements, reading only its households'
    stored state (a chunk is a contiguous range of household ids)."""
    table = chunk.decided
    tally.households += table.num_rows
    for program in run.versions:
        tally.eligible[program] += int(pc.sum(pc.equal(table.column(f"{program}__status"), "eligible")).as_py() or 0)
    if not table.num_rows:
        return
    households = table.column("household_id").to_pylist()
    shas = table.column("inputs_sha256").to_pylist()
    span = (households[0], households[-1])
    store = run.uow.decisions
    known = store.known_inputs(run.period, span)
    store.add_inputs(
        [
            {"period": run.period, "household_id": h, "inputs_sha256": sha, "region": region, "inputs": text}
            for h, sha, region, text in zip(
                households, shas, table.column("region").to_pylist(), chunk.inputs.to_pylist(), strict=True
            )
            if (h, sha) not in known
        ]
    )
    # Only households whose inputs or rules differ from their stored decisions are looked at again.
    stored = store.current_keys(run.period, span)
    with_stored: list[str] = []
    if stored:
        todo = [
            any(stored.get((h, p)) != (v.sha256, sha) for p, v in run.versions.items())
            for h, sha in zip(households, shas, strict=True)
        ]
        table = table.filter(pa.array(todo, pa.bool_()))
        earlier = {h for h, _program in stored}
        with_stored = [h for h, again in zip(households, todo, strict=True) if again and h in earlier]
    proposed = _proposed(table, chunk.columns, run.versions)
    kept = CHANGES_KEPT - len(tally.changes)
    changes, writes = apply(store, run.period, proposed, "cycle", run.run_id, run.now, with_stored, kept)
    tally.changes += changes
    tally.decisions_new += len(writes.decisions) - len(writes.superseded)
    tally.decisions_changed += len(writes.superseded)
    tally.entitlements_new += len(writes.entitlements_new)
    tally.entitlements_changed += len(writes.entitlements_changed)


def _proposed(table: pa.Table, columns: list[Column], versions: dict[str, Any]) -> list[Proposed]:
    """A proposal per household and program, household by household. Outcomes repeat (few
    combinations of conditions, amounts and items): each distinct one is built once and shared."""
    households = table.column("household_id").to_pylist()
    shas = table.column("inputs_sha256").to_pylist()
    outcomes: list[list[Outcome]] = []
    for program in versions:
        mine = [c for c in columns if c.program == program]
        seen: dict[tuple[Any, ...], Outcome] = {}
        found = []
        for values in zip(*(table.column(c.name).to_pylist() for c in mine), strict=True):
            outcome = seen.get(values)
            if outcome is None:
                outcome = seen[values] = row_outcomes([program], mine, values)[program]
            found.append(outcome)
        outcomes.append(found)
    proposed = []
    for index, (household, sha) in enumerate(zip(households, shas, strict=True)):
        for (program, v), found in zip(versions.items(), outcomes, strict=True):
            proposed.append(Proposed(household, program, v.id, v.sha256, sha, found[index]))
    return proposed

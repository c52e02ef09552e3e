"""`civicard dedup`: find people enrolled twice in a file or in the registry, and train the model."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import typer
from rich.console import Console

from civicard.dedup.batch import BatchResult, run_batch
from civicard.dedup.model import OPERATING_THRESHOLD, REVIEW_BAND, saved_model
from civicard.dedup.records import INPUT_COLUMNS

dedup_app = typer.Typer(help="Duplicate enrollments: bulk matching and the matching model.", no_args_is_help=True)
console = Console(stderr=True)

InputFile = Annotated[
    Path | None,
    typer.Argument(
        help="CSV (with a header row) or Parquet file with columns " + ", ".join(INPUT_COLUMNS) + ".",
        show_default=False,
    ),
]


class InputError(Exception):
    """The input file cannot be used; the message says why in one line."""


def _fail(reason: str) -> typer.Exit:
    from civicard.adapters.cli.main import fail  # main imports this module

    return fail(reason)


def connect(memory_limit: str, temp_dir: Path | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET preserve_insertion_order = false")
    if temp_dir is not None:
        con.execute("SET temp_directory = ?", [str(temp_dir)])
    return con


def load_input(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Load a CSV or Parquet file into table `dedup_input`; checks columns and unique record ids."""
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            relation = con.read_parquet(str(path))
        else:
            relation = con.read_csv(str(path), header=True, all_varchar=True)
        columns = [c.lower() for c in relation.columns]
    except duckdb.Error as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in INPUT_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{path.name} lacks the column(s) {', '.join(missing)} (expected: {', '.join(INPUT_COLUMNS)})")
    try:
        con.register("dedup_raw", relation)
        selected = ", ".join(f'CAST("{c}" AS VARCHAR) AS {c}' for c in INPUT_COLUMNS)
        con.execute(
            f"CREATE TABLE dedup_input AS SELECT {selected}, CAST(NULL AS VARCHAR) AS household_id FROM dedup_raw"  # noqa: S608 (column names from INPUT_COLUMNS)
        )
        con.unregister("dedup_raw")
    except duckdb.Error as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return _checked_ids(con)


def load_records(con: duckdb.DuckDBPyConnection, records: pa.Table) -> int:
    """Load registry records (INPUT_COLUMNS + household_id) into table `dedup_input`."""
    con.register("dedup_registry_arrow", records)
    con.execute("CREATE OR REPLACE TABLE dedup_input AS SELECT * FROM dedup_registry_arrow")
    con.unregister("dedup_registry_arrow")
    return _checked_ids(con)


def _checked_ids(con: duckdb.DuckDBPyConnection) -> int:
    rows = con.execute("SELECT count(*), count(record_id), count(DISTINCT record_id) FROM dedup_input").fetchall()[0]
    total, with_id, distinct = (int(v) for v in rows)
    if total == 0:
        raise InputError("the input holds no records")
    if with_id < total:
        raise InputError(f"{total - with_id} record(s) have no record_id")
    if distinct < total:
        repeated = con.execute(
            "SELECT record_id FROM dedup_input GROUP BY record_id HAVING count(*) > 1 ORDER BY record_id LIMIT 1"
        ).fetchall()[0][0]
        raise InputError(f"record_id must be unique: '{repeated}' appears more than once")
    return total


def write_outputs(con: duckdb.DuckDBPyConnection, pairs_path: Path, clusters_path: Path) -> None:
    pairs = con.sql(
        "SELECT unique_id_l AS record_id_l, unique_id_r AS record_id_r,"
        " round(match_probability, 6) AS match_probability"
        " FROM dedup_pairs ORDER BY match_probability DESC, record_id_l, record_id_r"
    ).to_arrow_table()
    clusters = con.sql(
        "SELECT record_id, cluster_id FROM dedup_clusters ORDER BY cluster_id, record_id"
    ).to_arrow_table()
    for path, table in ((pairs_path, pairs), (clusters_path, clusters)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pacsv.write_csv(pa.table(table), str(path))
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_with_progress(con: duckdb.DuckDBPyConnection, model: dict[str, Any] | None, threshold: float) -> BatchResult:
    from civicard.adapters.cli.progress import staged_progress

    steps = [
        "normalising records",
        "counting how common each name is",
        "scoring candidate pairs",
        "separating household members",
        "clustering",
    ]
    if model is None:
        steps[1:1] = [
            "estimating how many pairs match",
            "estimating chance agreement (u) on random pairs",
            "EM blocked on the document number",
            "EM blocked on names and birth date",
        ]
    _quiet_splink()
    started = [time.perf_counter(), time.perf_counter()]  # the run, the current step
    with staged_progress("Dedup") as report:

        def step(name: str) -> None:
            now = time.perf_counter()
            done = steps.index(name) if name in steps else 0
            if done:
                console.print(f"  {steps[done - 1]}: {now - started[1]:.1f} s", highlight=False)
            started[1] = now
            report("", done, len(steps))

        result = run_batch(con, "dedup_input", model=model, threshold=threshold, step=step)
        report("", len(steps), len(steps))
        console.print(f"  {steps[-1]}: {time.perf_counter() - started[1]:.1f} s", highlight=False)
    return result


def _quiet_splink() -> None:
    """Splink narrates each step at INFO on its own loggers; the progress bar says enough."""
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("splink")] + ["splink"]:
        logging.getLogger(name).setLevel(logging.ERROR)


Threshold = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help=f"Operating threshold: pairs at or above it are the same person and form clusters. "
        f"The default {OPERATING_THRESHOLD} was tuned on the household-heavy benchmark.",
    ),
]


@dedup_app.command("run")
def dedup_run(
    input_file: InputFile = None,
    out_pairs: Annotated[
        Path, typer.Option("--out-pairs", help="CSV of scored pairs at or above the review band.")
    ] = Path("pairs.csv"),
    out_clusters: Annotated[
        Path, typer.Option("--out-clusters", help="CSV of record_id, cluster_id for every record.")
    ] = Path("clusters.csv"),
    threshold: Threshold = OPERATING_THRESHOLD,
    registry: Annotated[
        bool, typer.Option("--registry", help="Match the registry's persons instead of a file.")
    ] = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="With --registry: send the possible duplicates to the reviewers' queue.")
    ] = False,
    train: Annotated[
        bool, typer.Option("--train", help="Train the model on this input (no labels) instead of using the saved one.")
    ] = False,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit.")] = "2GB",
    temp_dir: Annotated[Path | None, typer.Option(help="Where DuckDB may spill to disk.")] = None,
) -> None:
    """Find people enrolled twice: scored pairs (probability ≥ the review band) and clusters at the threshold."""
    if registry == (input_file is not None):
        console.print("[red]usage:[/red] give either INPUT or --registry, not both or neither")
        raise typer.Exit(2)
    if queue and not registry:
        console.print("[red]usage:[/red] --queue needs --registry (a file's record ids are not persons)")
        raise typer.Exit(2)
    con = connect(memory_limit, temp_dir)
    queued = None
    try:
        source = load_input(con, input_file) if input_file is not None else None
        records = source if source is not None else load_records(con, _registry_records())
        console.print(f"{records:,} records", highlight=False)
        result = run_with_progress(con, None if train else saved_model(), threshold)
        write_outputs(con, out_pairs, out_clusters)
        if queue:
            queued = _queue(con, result.model)
    except InputError as exc:
        raise _fail(str(exc)) from None
    except duckdb.Error as exc:  # an engine failure (memory, disk) in one line, never a traceback
        raise _fail(f"dedup failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    typer.echo(
        f"{result.records:,} records → {result.pairs:,} pairs at or above {REVIEW_BAND} written to {out_pairs}; "
        f"{result.records_in_clusters:,} records in {result.duplicate_clusters:,} duplicate cluster(s) at {threshold}; "
        f"{result.household_members_separated:,} household-member pair(s) separated; "
        f"clusters written to {out_clusters}"
        + (f"; {queued:,} new pair(s) queued for review" if queued is not None else "")
    )


@dedup_app.command("train")
def dedup_train(
    input_file: Annotated[Path, typer.Argument(help="CSV or Parquet file in the `dedup run` input format.")],
    out: Annotated[Path, typer.Option(help="Where to write the trained model JSON.")] = Path("model.json"),
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit.")] = "2GB",
) -> None:
    """Train the model without labels on INPUT and save it as JSON (ship it as src/civicard/dedup/model.json)."""
    con = connect(memory_limit, None)
    try:
        load_input(con, input_file)
        result = run_with_progress(con, None, OPERATING_THRESHOLD)
    except InputError as exc:
        raise _fail(str(exc)) from None
    finally:
        con.close()
    out.write_text(json.dumps(result.model, indent=1) + "\n", encoding="utf-8")
    typer.echo(f"trained on {result.records:,} records; model written to {out}")


def _registry_records() -> pa.Table:
    from civicard.adapters.cli.main import container, run_checked
    from civicard.adapters.cli.progress import staged_progress
    from civicard.adapters.db.dedup_extract import registry_records
    from civicard.transparency.access import AccessContext, Actor

    context = AccessContext(Actor("cli:dedup-run", "system"), "duplicate_screening")
    with container() as built, staged_progress("Reading") as report, built.uow(context) as uow:
        records = run_checked(lambda: registry_records(uow, lambda d, t: report("registry", d, t)))
        uow.commit()
    return records


@dedup_app.command("index")
def dedup_index() -> None:
    """Rebuild the registry's match keys and name frequencies (after a bulk import; nightly)."""
    from civicard.adapters.cli.main import container, run_checked
    from civicard.adapters.cli.progress import staged_progress

    with container() as built:
        keys, names = run_checked(lambda: index_registry(built, staged_progress))
    typer.echo(f"match index rebuilt: {keys:,} keys, {names:,} name frequencies")


def index_registry(built: Any, progress: Any) -> tuple[int, int]:
    """Read the registry (logged, purpose duplicate_screening) and rebuild its match index."""
    from civicard.adapters.db.dedup_extract import registry_records
    from civicard.dedup.screening import rebuild_index
    from civicard.transparency.access import AccessContext, Actor

    context = AccessContext(Actor("cli:dedup-index", "system"), "duplicate_screening")
    con = duckdb.connect()
    try:
        with progress("Indexing") as report, built.uow(context) as uow:
            records = registry_records(uow, lambda d, t: report("registry", d, t))
            return rebuild_index(uow, con, records, lambda step: report(step, 1, 1))
    finally:
        con.close()


def _queue(con: duckdb.DuckDBPyConnection, model: dict[str, Any]) -> int:
    """Raise every pair at or above the review band (except pairs already queued or decided)."""
    from civicard.adapters.cli.main import container, run_checked
    from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
    from civicard.dedup.matching import ModelLevels
    from civicard.dedup.pairs import ScoredPair
    from civicard.dedup.review import raise_candidates
    from civicard.transparency.access import AccessContext, Actor

    levels = ModelLevels(model)
    names = list(levels.levels)
    gammas = ", ".join(f"gamma_{n}" for n in names)  # comparison names from the model, not user input
    rows = con.execute(f"SELECT unique_id_l, unique_id_r, match_probability, {gammas} FROM dedup_pairs").fetchall()  # noqa: S608
    pairs = [
        ScoredPair(str(r[0]), str(r[1]), float(r[2]), levels.reasons(dict(zip(names, r[3:], strict=True))))
        for r in rows
    ]
    context = AccessContext(Actor("cli:dedup-run", "system"), "duplicate_screening")
    with container() as built, SqlReviewUnitOfWork(built.engine, context, built.clock) as uow:
        return run_checked(lambda: raise_candidates(uow, pairs, "bulk"))

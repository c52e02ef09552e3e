"""The civicard command line. Exit codes: 0 success, 1 the operation failed (one-line reason), 2 usage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from civicard.adapters.cli.approvals import approvals_app
from civicard.adapters.cli.audit import audit_app
from civicard.adapters.cli.backup import backup, restore
from civicard.adapters.cli.cards import cards_app
from civicard.adapters.cli.cycle import cycle_app
from civicard.adapters.cli.dedup import dedup_app
from civicard.adapters.cli.export import export_app
from civicard.adapters.cli.keys import keys_app
from civicard.adapters.cli.programs import programs_app
from civicard.adapters.cli.retention import retention_app
from civicard.adapters.cli.rules import rules_app
from civicard.adapters.cli.settlement import settlement_app
from civicard.adapters.cli.terminal import terminal_app
from civicard.adapters.cli.users import users_app
from civicard.adapters.cli.vendors import vendors_app
from civicard.bootstrap import Container, bootstrap
from civicard.settings import Mode, Settings
from civicard.shared.errors import DomainError

app = typer.Typer(help="civicard: identity cards and need-based benefits.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
population_app = typer.Typer(help="Synthetic populations for demos, tests and benchmarks.", no_args_is_help=True)
registry_app = typer.Typer(help="The registry of persons and households.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(population_app, name="population")
app.add_typer(registry_app, name="registry")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(approvals_app, name="approvals")
app.add_typer(audit_app, name="audit")
app.add_typer(cards_app, name="cards")
app.add_typer(dedup_app, name="dedup")
app.add_typer(export_app, name="export")
app.add_typer(rules_app, name="rules")
app.add_typer(programs_app, name="programs")
app.add_typer(cycle_app, name="cycle")
app.add_typer(terminal_app, name="terminal")
app.add_typer(vendors_app, name="vendors")
app.add_typer(settlement_app, name="settlement")
app.add_typer(retention_app, name="retention")
app.command("backup")(backup)
app.command("restore")(restore)

console = Console(stderr=True)
out = Console()
T = TypeVar("T")


def fail(reason: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {reason}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise fail(f"settings: {reason}") from None


@contextmanager
def container() -> Iterator[Container]:
    built = bootstrap(load_settings())
    try:
        yield built
    finally:
        built.close()


def run_checked(action: Callable[[], T]) -> T:
    """Run an operation; a domain refusal becomes a one-line reason and exit code 1."""
    try:
        return action()
    except DomainError as exc:
        raise fail(f"{exc.message} ({exc.code})") from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest revision (the only way the schema is made)."""
    from civicard.adapters.db.key_store import record_root_fingerprint
    from civicard.adapters.db.migrate import current_revision, upgrade

    url = load_settings().effective_database_url
    try:
        upgrade(url)
    except Exception as exc:  # surface the driver's reason in one line, never a traceback
        raise fail(f"migration failed: {str(exc).splitlines()[0]}") from None
    out.print(f"schema at revision {current_revision(url)}")
    with container() as built:  # the first upgrade with a root key records its fingerprint
        run_checked(lambda: record_root_fingerprint(built.engine, built.root_key, built.clock, "cli:db-upgrade"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the API and pages (migrate first with `civicard db upgrade`)."""
    from civicard.adapters.cli.serving import serve_app
    from civicard.adapters.demo_accounts import active_demo_accounts

    with container() as built:
        if built.settings.mode is Mode.PRODUCTION and (demo := active_demo_accounts(built)):
            raise fail(f"demo accounts are active ({', '.join(demo)}); disable them with `civicard users disable`")
        serve_app(built, host, port)


@app.command()
def demo(
    households: Annotated[int, typer.Option(help="Households in the demo town.", min=1, max=1_000_000)] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population.")] = 7,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Load the demo town and exit.")] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Migrate the embedded database, load the demo town (once) and serve it."""
    from civicard.adapters.cli.demo import load_demo_town
    from civicard.adapters.cli.serving import serve_app

    with container() as built:
        run_checked(lambda: load_demo_town(built, households, seed, console))
        if not no_serve:
            serve_app(built, host, port)


@population_app.command("generate")
def population_generate(
    households: Annotated[int, typer.Option(help="Number of households.", min=1)],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the Parquet files.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    duplicates: Annotated[float, typer.Option(help="Share of persons enrolled twice.", min=0.0, max=0.5)] = 0.05,
) -> None:
    """Write a synthetic Spanish-speaking population (with re-enrollments for dedup) as Parquet."""
    from civicard.adapters.cli.progress import counting_progress
    from civicard.registry.population import PopulationSpec, generate_population

    spec = PopulationSpec(households=households, seed=seed, duplicate_share=duplicates)
    with counting_progress("Generating households", households) as advance:
        summary = run_checked(lambda: generate_population(spec, out_dir, progress=advance))
    out.print(f"wrote {summary} to {out_dir}")


@registry_app.command("import")
def registry_import(
    source: Annotated[Path, typer.Argument(help="Directory with the Parquet files of a population.")],
    index: Annotated[
        bool, typer.Option(help="Rebuild the duplicate-matching index afterwards (`civicard dedup index`).")
    ] = True,
) -> None:
    """Load a population extract into the registry in one transaction (all or nothing)."""
    from civicard.adapters.bulk.importer import import_population
    from civicard.adapters.cli.dedup import index_registry
    from civicard.adapters.cli.progress import staged_progress
    from civicard.transparency.access import AccessContext, Actor

    if not source.is_dir():
        raise fail(f"{source} is not a directory")
    context = AccessContext(Actor("cli:registry-import", "system"), "bulk_import")
    with container() as built:
        with staged_progress("Importing") as progress:
            report = run_checked(lambda: import_population(built.engine, source, context, built.clock, progress))
        out.print(f"imported {report}")
        if index:
            keys, _ = run_checked(lambda: index_registry(built, staged_progress))
            out.print(f"duplicate-matching index rebuilt: {keys:,} keys")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="civicard")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The CLI's exit codes: 0 success, 1 the operation failed (one-line reason), 2 usage error."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.adapters.db import tables
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.migrate import head_revision
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CIVICARD_DATA_DIR": str(tmp_path / "var"), "CIVICARD_MODE": "demo", "CIVICARD_DATABASE_URL": ""}


def _persons(url: str) -> int:
    engine = make_engine(url)
    try:
        context = AccessContext(Actor("test", "system"), "demo_setup")
        with SqlUnitOfWork(engine, context, Clock()) as uow:
            return int(uow.connection.execute(select(func.count()).select_from(tables.persons)).scalar_one())
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_schema_and_says_its_revision(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert f"schema at revision {head_revision()}" in result.output


def test_an_unknown_command_or_missing_argument_is_a_usage_error(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["registry", "import"], env=env).exit_code == 2
    assert runner.invoke(app, ["no-such-command"], env=env).exit_code == 2
    assert runner.invoke(app, ["population", "generate", "--households", "0", "--out", "x"], env=env).exit_code == 2


def test_importing_a_missing_directory_fails_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["registry", "import", str(tmp_path / "nowhere")], env=env)
    assert result.exit_code == 1
    assert "is not a directory" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_production_without_a_key_fails_with_the_reason(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env=env | {"CIVICARD_MODE": "production"})
    assert result.exit_code == 1
    assert "CIVICARD_ROOT_KEY is required" in result.output


def test_demo_loads_the_town_once_and_keeps_it(env: dict[str, str], tmp_path: Path) -> None:
    first = runner.invoke(app, ["demo", "--households", "30", "--no-serve"], env=env)
    assert first.exit_code == 0, first.output
    url = f"sqlite:///{(tmp_path / 'var' / 'civicard.db').resolve()}"
    loaded = _persons(url)
    assert loaded > 30 + 4  # the generated town plus the showcase family
    second = runner.invoke(app, ["demo", "--households", "30", "--no-serve"], env=env)
    assert second.exit_code == 0 and "already loaded" in second.output
    assert _persons(url) == loaded


def test_population_generate_then_import_loads_the_registry(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "pop"
    generated = runner.invoke(app, ["population", "generate", "--households", "50", "--seed", "3", "--out", str(out)])
    assert generated.exit_code == 0, generated.output
    assert (out / "persons.parquet").exists()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    imported = runner.invoke(app, ["registry", "import", str(out)], env=env)
    assert imported.exit_code == 0, imported.output
    again = runner.invoke(app, ["registry", "import", str(out)], env=env)
    assert again.exit_code == 1
    assert "import_already_present" in again.output


def test_production_refuses_to_serve_while_demo_accounts_are_active(env: dict[str, str], tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo", "--households", "5", "--no-serve"], env=env).exit_code == 0
    url = f"sqlite:///{(tmp_path / 'var' / 'civicard.db').resolve()}"
    production = env | {
        "CIVICARD_MODE": "production",
        "CIVICARD_ROOT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "CIVICARD_DATABASE_URL": url,
    }
    result = runner.invoke(app, ["serve", "--port", "1"], env=production)
    assert result.exit_code == 1
    assert "demo accounts are active" in result.output


def test_demo_publishes_the_programs_and_runs_this_months_cycle(env: dict[str, str], tmp_path: Path) -> None:
    from datetime import date

    loaded = runner.invoke(app, ["demo", "--households", "30", "--no-serve"], env=env)
    assert loaded.exit_code == 0, loaded.output
    period = f"{date.today():%Y-%m}"
    assert f"Cycle {period}" in loaded.output
    again = runner.invoke(app, ["cycle", "run", "--period", period], env=env)
    assert again.exit_code == 0, again.output
    assert "Nothing changed" in again.output
    assert runner.invoke(app, ["cycle", "run", "--period", "2026-13"], env=env).exit_code == 2
    early = runner.invoke(app, ["cycle", "run", "--period", "2020-01"], env=env)
    assert early.exit_code == 1 and "no_version_in_force" in early.output
    runs = runner.invoke(app, ["cycle", "runs"], env=env)
    assert runs.exit_code == 0 and period in runs.output


def test_rules_explain_reads_the_published_version_and_says_why(env: dict[str, str], tmp_path: Path) -> None:
    from datetime import date

    assert runner.invoke(app, ["demo", "--households", "10", "--no-serve"], env=env).exit_code == 0
    url = f"sqlite:///{(tmp_path / 'var' / 'civicard.db').resolve()}"
    engine = make_engine(url)
    try:
        context = AccessContext(Actor("test", "system"), "demo_setup")
        with SqlUnitOfWork(engine, context, Clock()) as uow:
            household = uow.connection.execute(
                select(tables.memberships.c.household_id)
                .join(tables.persons, tables.persons.c.id == tables.memberships.c.person_id)
                .where(tables.persons.c.national_id == "52123456")
            ).scalar_one()
    finally:
        engine.dispose()
    period = f"{date.today():%Y-%m}"
    shown = runner.invoke(
        app, ["rules", "explain", "food_basket", "--household", household, "--period", period, "--lang", "en"], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert "ELIGIBLE" in shown.output and "✔" in shown.output
    unknown = runner.invoke(
        app, ["rules", "explain", "food_basket", "--household", household, "--version", "9.9"], env=env
    )
    assert unknown.exit_code == 1 and "unknown_version" in unknown.output

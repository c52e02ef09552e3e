"""Retention and erasure on SQLite and PostgreSQL: the policy, a run, crypto-shredding the log, restores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from civicard.adapters.backup import create_backup
from civicard.adapters.cli.main import app
from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.log_store import verify_stored_log
from civicard.adapters.db.migrate import upgrade
from civicard.adapters.db.repositories import SqlAccessLog
from civicard.adapters.db.retention_store import ERASED, apply_retention
from civicard.adapters.erasure_journal import append_journal, read_journal
from civicard.adapters.restore import RestoreRequest, restore_backup
from civicard.bootstrap import Container
from civicard.registry.lookup import get_person
from civicard.registry.recording import record_fact
from civicard.shared.errors import InvalidInput
from civicard.transparency.access import AccessEntry, Actor
from civicard.transparency.retention import JournalEntry, parse_policy, retention_policy
from tests.conftest import Database
from tests.integration.backup_fixtures import UowFor, build_town, container, empty_database

ACTOR = Actor("cli:retention", "system")


# --------------------------------------------------------------------------- the policy


def _policy(rules: dict[str, Any]) -> dict[str, Any]:
    return {"rules": rules}


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({}, "rules:"),
        (_policy({"x": {"records": "tweets", "keep": {"days": 1}, "description": "d"}}), "Rule 'x': records"),
        (_policy({"x": {"records": "sessions", "keep": {"weeks": 1}, "description": "d"}}), "days, months"),
        (_policy({"x": {"records": "sessions", "keep": {"days": -1}, "description": "d"}}), "at least 0"),
        (_policy({"x": {"records": "sessions", "keep": "forever", "description": "d"}}), "needs a period"),
        (_policy({"x": {"records": "access_log", "keep": {"days": 3}, "description": "d"}}), "keep: forever"),
        (_policy({"x": {"records": "sessions", "keep": {"days": 1}}}), "description is required"),
        (
            _policy(
                {
                    "x": {
                        "records": "replaced_fact_versions",
                        "keep": {"days": 1},
                        "tables": ["votes"],
                        "description": "d",
                    }
                }
            ),
            "tables must list",
        ),
    ],
)
def test_a_bad_policy_is_refused_naming_the_rule_and_field(raw: Any, named: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(raw)
    assert caught.value.code == "invalid_retention_policy"
    assert named in caught.value.message


def test_the_shipped_policy_keeps_the_access_log_and_cuts_months_at_month_ends() -> None:
    policy = retention_policy()
    assert policy.rule("access_log").keep is None
    health = policy.rule("health_needs_ended").keep
    assert health is not None and health.cutoff(date(2026, 8, 31)) == date(2026, 2, 28)


# --------------------------------------------------------------------------- a town with due records


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def town(db: Database, data_dir: Path, uow_for: UowFor) -> Iterator[Container]:
    """Ana (deceased in 2010: due for erasure) and Luis (alive, an income replaced in 2015: the old
    version is due, the current one is not), an old ended session and a fresh one; all logged."""
    built = container(db.url, data_dir)
    build_town(built, uow_for)
    ana, luis = _ids(uow_for)
    with uow_for("fact_correction") as uow:
        record_fact(uow, "incomes", luis, {"source": "wages"}, {"monthly_amount_minor": 90000}, date(2014, 1, 1), "r")
        record_fact(uow, "incomes", luis, {"source": "wages"}, {"monthly_amount_minor": 95000}, date(2015, 1, 1), "r")
        record_fact(uow, "incomes", ana, {"source": "pension"}, {"monthly_amount_minor": 50000}, date(2005, 1, 1), "r")
        uow.connection.execute(
            sa.update(t.persons)
            .where(t.persons.c.id == ana)
            .values(record_status="deceased", deceased_on=date(2010, 5, 1))
        )
        uow.commit()
    with built.engine.begin() as conn:
        old, fresh = datetime(2001, 1, 1, tzinfo=UTC), built.clock.now()
        conn.execute(
            sa.insert(t.sessions),
            [
                {
                    "token_hash": tok,
                    "principal_kind": "staff",
                    "principal_id": "x",
                    "role": "registrar",
                    "csrf_token": "c",
                    "created_at": at,
                    "last_seen_at": at,
                    "ended_at": at,
                }
                for tok, at in (("a" * 64, old), ("b" * 64, fresh))
            ],
        )
    with uow_for("card_service") as uow:
        get_person(uow, ana)
    built.integrator.run_once(full=True)
    with built.engine.begin() as conn:  # one entry about Ana not yet folded into the tree
        SqlAccessLog(conn).append(
            [
                AccessEntry(
                    built.clock.now(),
                    "registrar-ana",
                    "registrar",
                    "enrollment",
                    "read",
                    _subject(ana),
                    ("identity",),
                    "late read",
                )
            ]
        )
    yield built
    built.close()


def _subject(person_id: str) -> Any:
    from civicard.transparency.access import Subject

    return Subject.person(person_id)


def _ids(uow_for: UowFor) -> tuple[str, str]:
    with uow_for("enrollment") as uow:
        rows = dict(uow.connection.execute(sa.select(t.persons.c.given_names, t.persons.c.id)).all())
    return rows["Ana"], rows["Luis"]


def _rows(uow_for: UowFor, query: sa.Select[Any]) -> list[Any]:
    with uow_for("oversight_case", Actor("auditor", "oversight")) as uow:
        return list(uow.connection.execute(query).all())


def _run(built: Container, dry_run: bool = False, journal: list[JournalEntry] | None = None) -> dict[str, int]:
    kept: list[JournalEntry] = journal if journal is not None else []

    def keep(entries: Sequence[JournalEntry]) -> None:
        kept.extend(entries)

    report = apply_retention(built.engine, built.clock, retention_policy(), ACTOR, keep, dry_run=dry_run)
    return {o.rule: o.count for o in report.outcomes}


def _verified(built: Container) -> Any:
    with built.engine.connect() as conn:
        return verify_stored_log(conn, built.log_signer.verifier)


# --------------------------------------------------------------------------- a run


def test_a_run_erases_what_is_due_and_nothing_else_and_the_log_still_verifies(town: Container, uow_for: UowFor) -> None:
    ana, luis = _ids(uow_for)
    a, inc = t.access_log, t.incomes
    about_ana = _rows(uow_for, sa.select(a.c.seq).where(a.c.subject_person_id == ana))
    journal: list[JournalEntry] = []

    counts = _run(town, journal=journal)

    assert counts["deceased_persons"] == 1 and counts["facts_replaced"] == 1 and counts["sessions"] == 1
    assert counts["health_needs_ended"] == 0 and counts["access_log"] == 0
    assert len(journal) == 1 and journal[0].rule == "deceased_persons" and ana not in journal[0].to_line()
    # Ana: no entry names her, no salt of hers is left, her facts are gone, her row is a marker.
    assert _rows(uow_for, sa.select(a.c.seq).where(a.c.subject_person_id == ana)) == []
    shredded = _rows(
        uow_for, sa.select(a.c.subject_salt, a.c.erasure_id).where(a.c.seq.in_([r.seq for r in about_ana]))
    )
    assert len(shredded) == len(about_ana) and all(r.subject_salt == "" for r in shredded)
    assert _rows(uow_for, sa.select(inc.c.id).where(inc.c.person_id == ana)) == []
    person = _rows(uow_for, sa.select(t.persons).where(t.persons.c.id == ana))[0]
    assert (person.given_names, person.record_status, person.national_id) == (ERASED, "erased", None)
    # Luis keeps his record and his current income; only the version replaced in 2015 went.
    kept = _rows(uow_for, sa.select(inc.c.monthly_amount_minor).where(inc.c.person_id == luis))
    assert [r.monthly_amount_minor for r in kept] == [95000]
    assert _rows(uow_for, sa.select(t.persons.c.given_names).where(t.persons.c.id == luis))[0].given_names == "Luis"
    assert [r.token_hash[0] for r in _rows(uow_for, sa.select(t.sessions.c.token_hash))] == ["b"]
    # THE key check: the signed log verifies after the erasure, and after new entries are folded in.
    town.integrator.run_once(full=True)
    assert _verified(town).ok, _verified(town).message
    with uow_for("card_service") as uow:
        get_person(uow, luis)
    with uow_for("card_service") as uow:
        get_person(uow, ana)  # the erased marker row, read again: a fresh chain, not Ana's old one
    town.integrator.run_once(full=True)
    report = _verified(town)
    assert report.ok, report.message
    # The erasure is logged about nobody, under `retention`.
    logged = _rows(uow_for, sa.select(a.c.detail, a.c.subject_person_id).where(a.c.purpose == "retention"))
    assert any(r.detail.startswith("retention.erased rule=deceased_persons") for r in logged)
    assert all(r.subject_person_id != ana for r in logged)


def test_a_dry_run_reports_what_is_due_and_changes_nothing(town: Container, uow_for: UowFor) -> None:
    ana, _ = _ids(uow_for)
    counted = sa.select(sa.func.count()).select_from
    before = [_rows(uow_for, counted(table))[0][0] for table in (t.incomes, t.sessions, t.erasures)]

    counts = _run(town, dry_run=True)

    assert counts["deceased_persons"] == 1 and counts["facts_replaced"] == 1
    after = [_rows(uow_for, counted(table))[0][0] for table in (t.incomes, t.sessions, t.erasures)]
    assert after == before
    status = _rows(uow_for, sa.select(t.persons.c.record_status).where(t.persons.c.id == ana))[0][0]
    assert status == "deceased"
    assert _run(town, dry_run=True) == counts  # and again: nothing was applied


def test_a_second_run_finds_nothing_more_to_erase(town: Container) -> None:
    _run(town)
    again = _run(town)
    assert again["deceased_persons"] == 0 and again["facts_replaced"] == 0 and again["sessions"] == 0


# --------------------------------------------------------------------------- restore


def test_restoring_a_backup_from_before_an_erasure_erases_the_person_again(
    town: Container, uow_for: UowFor, db: Database, tmp_path: Path, data_dir: Path
) -> None:
    ana, _ = _ids(uow_for)
    archive = tmp_path / "before-erasure.tar"
    create_backup(town, archive)
    apply_retention(town.engine, town.clock, retention_policy(), ACTOR, lambda e: append_journal(data_dir, e))
    assert len(read_journal(data_dir)) == 1

    with empty_database(db.backend, tmp_path) as url:
        upgrade(url)  # a migrated schema without rows counts as empty
        target = container(url, data_dir)
        try:
            report = restore_backup(target, archive, RestoreRequest(force=True))
            assert report.erasures_reapplied == 1 and report.verification.ok
            check = make_engine(url, guarded=False)
            with check.connect() as conn:
                status = conn.execute(sa.select(t.persons.c.record_status).where(t.persons.c.id == ana)).scalar()
                named = conn.execute(
                    sa.select(sa.func.count()).select_from(t.access_log).where(t.access_log.c.subject_person_id == ana)
                ).scalar()
            check.dispose()
            assert (status, named) == ("erased", 0)
            assert _verified(target).ok
        finally:
            target.close()


# --------------------------------------------------------------------------- the command line


def test_retention_run_on_the_command_line_prints_counts_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": "",
        "COLUMNS": "200",
    }
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    dry = runner.invoke(app, ["retention", "run", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output and "deceased_persons" in dry.output
    done = runner.invoke(app, ["retention", "run"], env=env)
    assert done.exit_code == 0, done.output
    assert "kept" in done.output  # the access log rule
    shown = runner.invoke(app, ["retention", "policy"], env=env)
    assert shown.exit_code == 0 and "health_needs_ended" in shown.output
    assert runner.invoke(app, ["retention", "run", "--no-such-flag"], env=env).exit_code == 2

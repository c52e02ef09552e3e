"""Four-eyes bulk exports on SQLite and PostgreSQL: asked by a program administrator, approved by
another oversight account, run once by the asker; one access-log read per exported person; and the
`civicard export` command writing the CSV."""

from __future__ import annotations

import base64
import csv
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from civicard.adapters.cli import main
from civicard.adapters.cli.main import app
from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, ApprovalRequest
from civicard.governance.exports import ExportDone, request_export, run_export
from civicard.governance.kinds import BULK_EXPORT, KINDS
from civicard.programs.cycles import WriteSet
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor

from ..conftest import FIXED_NOW, REGISTRAR, Database

ADMIN = Actor("admin-ana", "program_admin")
OLGA, OTTO = Actor("oversight-olga", "oversight"), Actor("oversight-otto", "oversight")
REVIEWER = Actor("reviewer-rita", "reviewer")
PROGRAM, FIELDS = "food_basket", "given_names,first_surname,birth_date,phone"
Unit = Callable[..., SqlApprovalUnitOfWork]


class ListSink:
    def __init__(self) -> None:
        self.header: tuple[str, ...] = ()
        self.rows: list[tuple[str, ...]] = []

    def begin(self, header: Sequence[str], total: int) -> None:
        self.header = tuple(header)

    def write(self, rows: Sequence[Sequence[str]]) -> None:
        self.rows.extend(tuple(r) for r in rows)


class FailingSink(ListSink):
    def write(self, rows: Sequence[Sequence[str]]) -> None:
        raise OSError("disk full")


@pytest.fixture
def as_(engine: Engine, clock: Clock) -> Unit:
    def make(actor: Actor, at: Clock = clock) -> SqlApprovalUnitOfWork:
        return SqlApprovalUnitOfWork(engine, AccessContext(actor, FOUR_EYES), at)

    return make


def _household(engine: Engine, clock: Clock, municipality: str, names: Sequence[str]) -> tuple[str, list[str]]:
    context = AccessContext(REGISTRAR, "enrollment")
    with SqlUnitOfWork(engine, context, clock) as uow:
        home = create_household(uow, CreateHousehold(municipality, "Calle 5 # 10-20", "10001")).id
    people = []
    for i, given in enumerate(names):
        cmd = EnrollPerson(given_names=given, first_surname="Pérez", second_surname="", birth_date=date(1980, 1, 2),
                           birth_place="San Rafael", sex="F", address_line="Calle 5 # 10-20", municipality=municipality,
                           postcode="10001", phone="3001234567" if i == 0 else None, household_id=home,
                           relationship="reference" if i == 0 else "child")  # fmt: skip
        with SqlUnitOfWork(engine, context, clock) as uow:
            people.append(enroll_person(uow, cmd).id)
    return home, people


def _decisions(engine: Engine, clock: Clock, period: str, statuses: dict[str, str]) -> None:
    writes = WriteSet()
    for household, status in statuses.items():
        writes.decisions.append(
            {"period": period, "id": new_id(), "household_id": household, "program": PROGRAM,
             "program_version_id": new_id(), "rules_sha256": "r" * 64, "inputs_sha256": new_id(), "status": status,
             "amount_minor": 0, "conditions": "[]", "items": "{}", "origin": "cycle", "cycle_run_id": None,
             "decided_at": clock.now(), "superseded_at": None, "superseded_by": None}
        )  # fmt: skip
    with SqlUnitOfWork(engine, AccessContext(Actor("test:cycle", "system"), "cycle_run"), clock) as uow:
        uow.decisions.open_period(period, clock.now())
        uow.decisions.write(period, writes)
        uow.commit()


@pytest.fixture
def town(engine: Engine, clock: Clock) -> dict[str, list[str]]:
    """North: two eligible households and one not eligible; South: one eligible. An older period
    found the not-eligible one eligible: only the latest period counts."""
    north, north_people = _household(engine, clock, "NOR-01", ["María", "Juan"])
    north2, north2_people = _household(engine, clock, "NOR-02", ["Lucía"])
    poorer_before, before_people = _household(engine, clock, "NOR-03", ["Pedro"])
    south, south_people = _household(engine, clock, "SUR-01", ["Ana"])
    _decisions(engine, clock, "2026-10", {poorer_before: "eligible"})
    _decisions(engine, clock, "2026-11", {north: "eligible", north2: "eligible", poorer_before: "not_eligible",
                                          south: "eligible"})  # fmt: skip
    return {"NORTE": north_people + north2_people, "SUR": south_people, "excluded": before_people}


def _code(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def _ask(as_: Unit, by: Actor = ADMIN, region: str | None = None, fields: str = FIELDS) -> ApprovalRequest:
    with as_(by) as uow:
        return request_export(uow, KINDS, PROGRAM, region, fields, "delivery partner for December")


def _approve(as_: Unit, request_id: str, by: Actor = OLGA) -> str:
    with as_(by) as uow:
        return approvals.approve(uow, KINDS, request_id).request.status


def _run(as_: Unit, request_id: str, by: Actor = ADMIN, sink: ListSink | None = None) -> tuple[ExportDone, ListSink]:
    sink = sink or ListSink()
    with as_(by) as uow:
        return run_export(uow, KINDS, request_id, sink), sink


def _log(engine: Engine, request_id: str) -> list[tuple[str, str, str, str | None, str, str]]:
    a = t.access_log.c
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), Clock()) as uow:
        rows = uow.connection.execute(select(t.access_log).where(a.detail.contains(request_id)).order_by(a.seq))
        return [(r.actor, r.purpose, r.action, r.subject_person_id, r.categories, r.detail.split(" ")[0]) for r in rows]


def test_an_approved_export_runs_once_and_logs_a_read_for_each_person(
    as_: Unit, engine: Engine, town: dict[str, list[str]]
) -> None:
    asked = _ask(as_)
    assert asked.data == {"fields": FIELDS, "program": PROGRAM, "region": "all"}
    assert _code(lambda: _run(as_, asked.id)) == "approval_not_approved"
    assert _approve(as_, asked.id) == "approved"  # approved, not yet carried out
    assert _code(lambda: _run(as_, asked.id, by=OLGA)) == "not_the_requester"
    done, sink = _run(as_, asked.id)
    assert done.people == 4 and done.period == "2026-11" and done.request.status == "executed"
    assert sink.header == ("person_id", "household_id", "given_names", "first_surname", "birth_date", "phone")
    exported = {row[0]: row[2:] for row in sink.rows}
    assert set(exported) == set(town["NORTE"] + town["SUR"])
    assert exported[town["NORTE"][0]] == ("María", "Pérez", "1980-01-02", "3001234567")
    assert exported[town["NORTE"][1]] == ("Juan", "Pérez", "1980-01-02", "")
    assert _code(lambda: _run(as_, asked.id)) == "approval_already_decided"  # once only

    log = _log(engine, asked.id)
    reads = [e for e in log if e[5] == "export.read"]
    assert sorted(e[3] for e in reads) == sorted(exported)  # type: ignore[type-var]
    categories = "decisions household identity"
    assert {(e[0], e[1], e[2], e[4]) for e in reads} == {(ADMIN.id, BULK_EXPORT, "read", categories)}
    steps = [(e[0], e[1], e[5]) for e in log if e[5].startswith("approval.")]
    assert steps == [
        (ADMIN.id, FOUR_EYES, "approval.requested"),
        (OLGA.id, FOUR_EYES, "approval.approved"),
        (ADMIN.id, FOUR_EYES, "approval.executed"),
    ]


def test_a_failed_run_writes_nothing_and_the_request_stays_approved(
    as_: Unit, engine: Engine, town: dict[str, list[str]]
) -> None:
    asked = _ask(as_, region="SUR")
    _approve(as_, asked.id, by=OTTO)
    with pytest.raises(OSError):
        _run(as_, asked.id, sink=FailingSink())
    assert [e[5] for e in _log(engine, asked.id)] == ["approval.requested", "approval.approved"]
    done, sink = _run(as_, asked.id)
    assert [row[0] for row in sink.rows] == town["SUR"] and done.people == 1


def test_only_another_oversight_account_approves_and_only_staff_who_may_ask_ask(
    as_: Unit, town: dict[str, list[str]]
) -> None:
    assert _code(lambda: _ask(as_, by=REGISTRAR)) == "requester_role_not_allowed"
    assert _code(lambda: _ask(as_, by=REVIEWER)) == "requester_role_not_allowed"
    asked = _ask(as_, by=OLGA, region="NORTE")
    assert _code(lambda: _approve(as_, asked.id, by=OLGA)) == "same_account"
    assert _code(lambda: _approve(as_, asked.id, by=ADMIN)) == "approver_role_not_allowed"
    assert _code(lambda: _approve(as_, asked.id, by=REVIEWER)) == "approver_role_not_allowed"
    assert _code(lambda: _ask(as_, by=ADMIN, region="NORTE")) == "approval_already_pending"  # same scope and fields
    assert _approve(as_, asked.id, by=OTTO) == "approved"
    _, sink = _run(as_, asked.id, by=OLGA)
    assert sorted(row[0] for row in sink.rows) == sorted(town["NORTE"])


def test_fields_outside_the_allow_list_and_unknown_programs_are_refused_and_nothing_is_filed(
    as_: Unit, engine: Engine, town: dict[str, list[str]]
) -> None:
    assert _code(lambda: _ask(as_, fields="given_names,search_key")) == "field_not_exportable"
    assert _code(lambda: _ask(as_, fields="pin_hash")) == "field_not_exportable"
    assert _code(lambda: _ask(as_, fields=" , ")) == "no_fields"
    assert _code(lambda: _ask(as_, region="NOR")) == "invalid_region"
    with as_(ADMIN) as uow:
        assert _code(lambda: request_export(uow, KINDS, "no_such_program", None, "sex", "why")) == "no_decisions"
    with as_(OLGA) as uow:
        assert uow.connection.execute(select(func.count()).select_from(t.approval_requests)).scalar_one() == 0


def test_an_approved_export_never_run_expires_and_a_refused_one_cannot_run(
    as_: Unit, town: dict[str, list[str]]
) -> None:
    asked = _ask(as_)
    _approve(as_, asked.id)
    later = Clock.fixed(FIXED_NOW + KINDS.get(BULK_EXPORT).lifetime + timedelta(seconds=1))
    with as_(OLGA, later) as uow:
        approvals.pending(uow, KINDS)  # listing marks it
    with as_(ADMIN, later) as uow:
        assert uow.approvals.get(asked.id).status == "expired"  # type: ignore[union-attr]
        assert _code(lambda: run_export(uow, KINDS, asked.id, ListSink())) == "approval_expired"
    refused = _ask(as_, fields="sex")
    with as_(OTTO) as uow:
        approvals.refuse(uow, KINDS, refused.id, "not needed for delivery")
    assert _code(lambda: _run(as_, refused.id)) == "approval_already_decided"


# --- the command line --------------------------------------------------------------------------

runner = CliRunner()
PASSWORD = "exportar-con-dos-llaves-2026"
REQUEST_ID = re.compile(r"requested ([0-9a-f]{32})")


def _cli(env: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env, input=input)
    return result.exit_code, result.output


def test_the_export_command_writes_the_csv_once_after_approval(
    db: Database, engine: Engine, town: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main.out, "width", 400)
    env = {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    for username, role in (("ana", "program_admin"), ("olga", "oversight")):
        created = _cli(env, "users", "create", username, "--role", role, "--name", username.title(),
                       "--password-stdin", input=f"{PASSWORD}\n")  # fmt: skip
        assert created[0] == 0, created[1]
    code, shown = _cli(env, "export", "request", "--program", PROGRAM, "--region", "SUR", "--fields",
                       "given_names,birth_date", "--reason", "delivery partner", "--by", "ana")  # fmt: skip
    assert code == 0, shown
    found = REQUEST_ID.search(shown)
    assert found is not None, shown
    out = tmp_path / "export.csv"
    code, shown = _cli(env, "export", "run", found[1], "--out", str(out), "--by", "ana")
    assert code == 1 and "approval_not_approved" in shown and not out.exists()
    code, shown = _cli(env, "approvals", "approve", found[1], "--by", "olga")
    assert code == 0 and "civicard export run" in shown, shown
    code, shown = _cli(env, "export", "run", found[1], "--out", str(out), "--by", "ana")
    assert code == 0 and "exported 1 people" in shown, shown
    with out.open(encoding="utf-8", newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["person_id", "household_id", "given_names", "birth_date"],
            [town["SUR"][0], _household_of(engine, town["SUR"][0]), "Ana", "1980-01-02"],
        ]
    code, shown = _cli(env, "export", "run", found[1], "--out", str(tmp_path / "again.csv"), "--by", "ana")
    assert code == 1 and "executed" in shown and not (tmp_path / "again.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def _household_of(engine: Engine, person_id: str) -> str:
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), Clock()) as uow:
        membership = uow.memberships.current_of_person(person_id)
    assert membership is not None
    return membership.household_id

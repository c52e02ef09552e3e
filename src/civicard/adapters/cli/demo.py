"""The demo town: a synthetic population plus one showcase family enrolled through the services."""

from __future__ import annotations

import shutil
from datetime import date

from rich.console import Console
from sqlalchemy import func, select

from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.cli.dedup import index_registry
from civicard.adapters.cli.demo_distribution import set_up_demo_distribution
from civicard.adapters.cli.demo_programs import publish_demo_programs
from civicard.adapters.cli.progress import staged_progress
from civicard.adapters.db import tables
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.log_store import latest_checkpoint
from civicard.adapters.db.migrate import upgrade
from civicard.adapters.demo_accounts import ensure_demo_accounts, print_demo_accounts
from civicard.bootstrap import Container
from civicard.identity.cards import card_token, issue_card
from civicard.identity.credentials import format_handle
from civicard.programs.cycles import period_of
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.lookup import get_household, get_person, search_persons
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.recording import correct_fact, record_fact
from civicard.transparency.access import AccessContext, Actor

DEMO_SYSTEM = AccessContext(Actor("demo:setup", "system"), "demo_setup")
DEMO_CYCLE = AccessContext(Actor("demo:cycle", "system"), "cycle_run")
SHOWCASE_NAME = "María José Pérez Gómez"
SHOWCASE_PIN = "4821"  # demo only: printed by the demo so a visitor can sign in as María José


def load_demo_town(container: Container, households: int, seed: int, console: Console) -> None:
    """Migrate, then load the town once; later runs keep the data (and its access log) as it is."""
    url = container.settings.effective_database_url
    upgrade(url)
    with container.uow(DEMO_SYSTEM) as uow:
        persons = uow.connection.execute(select(func.count()).select_from(tables.persons)).scalar_one()
    accounts = ensure_demo_accounts(container)
    if persons:
        console.print(f"Demo town already loaded ({persons:,} persons) in {_where(container)}.")
    else:
        _load(container, households, seed, console)
    publish_demo_programs(container, console)
    _run_this_months_cycle(container, console)
    set_up_demo_distribution(container, console)
    folded = container.integrator.run_once(full=True)
    with container.engine.connect() as conn:
        latest = latest_checkpoint(conn)
    if latest is not None:
        console.print(f"Access log: {folded:,} new entries folded; signed checkpoint covers {latest.tree_size:,}.")
    _print_guide(container, console)
    print_demo_accounts(accounts, console)
    showcase = _showcase_card(container)
    if showcase:
        handle, code = showcase
        console.print(
            f"  resident       {SHOWCASE_NAME}: card {handle}, PIN {SHOWCASE_PIN}  →  http://127.0.0.1:8000/me\n"
            f"                 what her card's QR code holds (for a terminal): {code}\n",
            highlight=False,
            soft_wrap=True,
        )


def _load(container: Container, households: int, seed: int, console: Console) -> None:
    source = container.settings.data_dir / "demo-population"
    shutil.rmtree(source, ignore_errors=True)
    console.print(f"Generating a demo town of {households:,} households (seed {seed})…")
    generate_population(PopulationSpec(households=households, seed=seed, duplicate_share=0.03), source)
    with staged_progress("Importing") as progress:
        report = import_population(container.engine, source, DEMO_SYSTEM, container.clock, progress)
    console.print(f"Imported {report}.")
    staff = {a.role: Actor(a.id, a.role) for a in container.auth.list_staff_accounts()}
    family = _enroll_showcase_family(container, staff["registrar"])
    _issue_showcase_card(container, staff["registrar"], family[0])
    _daily_reads(container, staff, family)
    keys, _ = index_registry(container, staged_progress)
    console.print(f"Duplicate-matching index: {keys:,} keys.")
    shutil.rmtree(source, ignore_errors=True)


def _run_this_months_cycle(container: Container, console: Console) -> None:
    """Decide this month once, so residents find decisions and entitlements in their portal."""
    period = period_of(container.clock.today())
    with container.uow(DEMO_CYCLE) as uow:
        if uow.decisions.runs(period):
            return
    with container.uow(DEMO_CYCLE) as uow, staged_progress(f"Cycle {period}") as progress:
        report = run_cycle(uow, period, container.settings.data_dir / "cycles", None, progress)
        uow.commit()
    eligible = ", ".join(f"{program} {count:,}" for program, count in report.eligible.items())
    console.print(
        f"Cycle {period}: {report.households:,} households decided under {len(report.programs)} programs "
        f"({report.entitlements_new:,} entitlements); eligible households: {eligible}."
    )


def _enroll_showcase_family(container: Container, registrar: Actor) -> list[str]:
    """A family enrolled at the desk, with facts and one correction, so the history is realistic."""
    desk = AccessContext(registrar, "enrollment")
    facts = AccessContext(registrar, "fact_correction")
    with container.uow(desk) as uow:
        home = create_household(uow, CreateHousehold("CEN-01", "Carrera 7 # 12-45", "50012"))
    members = [
        ("María José", "Pérez", "Gómez", date(1984, 3, 9), "F", "52123456", "reference"),
        ("Juan Carlos", "Rodríguez", "López", date(1981, 11, 23), "M", "80456789", "spouse"),
        ("Valentina", "Rodríguez", "Pérez", date(2016, 6, 2), "F", None, "child"),
        ("Mateo", "Rodríguez", "Pérez", date(2021, 1, 15), "M", None, "child"),
    ]
    ids = []
    for given, first, second, born, sex, document, relationship in members:
        with container.uow(desk) as uow:
            person = enroll_person(
                uow,
                EnrollPerson(
                    given_names=given,
                    first_surname=first,
                    second_surname=second,
                    birth_date=born,
                    birth_place="Ciudad Capital",
                    sex=sex,
                    address_line="Carrera 7 # 12-45",
                    municipality="CEN-01",
                    postcode="50012",
                    phone="+57 301 555 0142",
                    national_id=document,
                    household_id=home.id,
                    relationship=relationship,
                ),
            )
        ids.append(person.id)
    with container.uow(facts) as uow:
        record_fact(uow, "employment", ids[0], {}, {"status": "informal"}, date(2025, 1, 1), "declared at the desk")
    with container.uow(facts) as uow:
        wrong = record_fact(
            uow,
            "incomes",
            ids[0],
            {"source": "informal_work"},
            {"monthly_amount_minor": 41_000},
            date(2025, 1, 1),
            "declared at the desk",
        )
    with container.uow(facts) as uow:
        correct_fact(
            uow, "incomes", wrong.id, {"monthly_amount_minor": 31_000}, "typing error: she said 310.00, not 410.00"
        )
    with container.uow(facts) as uow:
        record_fact(uow, "employment", ids[1], {}, {"status": "unemployed"}, date(2026, 3, 1), "lost his job")
    with container.uow(facts) as uow:
        record_fact(
            uow,
            "health_needs",
            ids[3],
            {"kind": "chronic", "code": "J45"},
            {},
            date(2024, 5, 1),
            "asthma, clinic certificate",
        )
    return ids


def _issue_showcase_card(container: Container, registrar: Actor, person_id: str) -> None:
    with SqlCardUnitOfWork(container.engine, AccessContext(registrar, "card_service"), container.clock) as uow:
        issue_card(uow, container.card_keys, person_id, pin=SHOWCASE_PIN)


def _showcase_card(container: Container) -> tuple[str, str] | None:
    """María José's printed handle and her card's QR text (demo: so a terminal can be tried by hand)."""
    with SqlCardUnitOfWork(container.engine, DEMO_SYSTEM, container.clock) as uow:
        handle = uow.connection.execute(
            select(tables.cards.c.handle)
            .join(tables.persons, tables.persons.c.id == tables.cards.c.person_id)
            .where(tables.persons.c.national_id == "52123456", tables.cards.c.status == "valid")
        ).scalar()
        card = uow.cards.by_handle(handle) if handle else None
        if card is None:
            return None
        return format_handle(card.handle), card_token(card, container.card_keys)


def _daily_reads(container: Container, staff: dict[str, Actor], family: list[str]) -> None:
    """Reads of the kind a resident finds in their log: the desk, a reviewer, and themselves."""
    mother = family[0]
    with container.uow(AccessContext(staff["registrar"], "enrollment")) as uow:
        search_persons(uow, "maria perez")
    with container.uow(AccessContext(staff["registrar"], "enrollment")) as uow:
        membership = get_person(uow, mother).membership
    if membership is not None:
        with container.uow(AccessContext(staff["registrar"], "fact_correction")) as uow:
            get_household(uow, membership.household_id)
    with container.uow(AccessContext(staff["reviewer"], "duplicate_review")) as uow:
        get_person(uow, mother)
    with container.uow(AccessContext(Actor(mother, "resident"), "self_access")) as uow:
        get_person(uow, mother)


def _where(container: Container) -> str:
    return container.settings.effective_database_url.split("///")[-1]


def _print_guide(container: Container, console: Console) -> None:
    console.print(
        "\n[bold]civicard demo town[/bold] — DEMO MODE (a generated root key in "
        f"{container.settings.data_dir / 'demo-root.key'}; never use it for real people)\n"
        "  Open  http://127.0.0.1:8000/            landing page\n"
        "        http://127.0.0.1:8000/registrar   search e.g. 'maria perez' or document 52123456; on her\n"
        "                                          household, 'Enroll a person' as 'Maria J. Perez Gomez', born\n"
        "                                          1984-09-03, shows the duplicate warning with its reasons\n"
        "        http://127.0.0.1:8000/reviewer    the duplicate review queue (sign in as revisora)\n"
        "        http://127.0.0.1:8000/docs        the API (POST /v1/sessions; Bearer token + X-Civicard-Purpose)\n"
        "  Sign in with one of the demo logins below.\n",
        highlight=False,
    )

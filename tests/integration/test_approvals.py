"""Four-eyes approvals on SQLite and PostgreSQL: who may ask and decide, expiry, exactly-once
execution under concurrency, the access log, role grants and locked-PIN resets, and the HTTP API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.api.app import create_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.auth_store import AuthStore
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.bootstrap import Container
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, ApprovalRequest, Approved
from civicard.governance.kinds import KINDS, request_pin_unlock, request_role_grant
from civicard.identity.cards import CardKeys, CardPolicy, attempt_card_pin, issue_card, set_card_pin
from civicard.identity.pins import LOCK_AFTER_FAILURES, TRIES_PER_TRANSACTION
from civicard.identity.staff import Argon2Params, PasswordHashing
from civicard.settings import Mode, Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import FIXED_NOW, REGISTRAR, Database
from .person_fixtures import enroll_in_new_household

ROOT = RootKey(b"\x07" * 32)
KEYS = CardKeys.derive(ROOT)
POLICY = CardPolicy(status_list_capacity=2**20)
FAST = PasswordHashing(Argon2Params(time_cost=1, memory_cost=8, parallelism=1))
PASSWORD = "cuatro-ojos-ven-mas-2026"
PIN, WRONG_PIN, NEW_PIN = "4821", "9999", "7305"
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@dataclass(frozen=True)
class Staff:
    rosa: Actor  # registrar
    beto: Actor  # registrar
    rita: Actor  # reviewer
    ana: Actor  # program_admin
    olga: Actor  # oversight
    otto: Actor  # oversight


@pytest.fixture
def auth(engine: Engine, clock: Clock) -> AuthStore:
    return AuthStore(engine, clock, ROOT, passwords=FAST)


@pytest.fixture
def staff(auth: AuthStore) -> Staff:
    def make(username: str, role: str) -> Actor:
        secret = TOTP if role in ("program_admin", "oversight") else None
        created = auth.create_staff_account(username, username.title(), role, PASSWORD, "test", totp_secret=secret)
        return Actor(created.account.id, role)

    return Staff(
        rosa=make("rosa", "registrar"),
        beto=make("beto", "registrar"),
        rita=make("rita", "reviewer"),
        ana=make("ana", "program_admin"),
        olga=make("olga", "oversight"),
        otto=make("otto", "oversight"),
    )


Unit = Callable[..., SqlApprovalUnitOfWork]


@pytest.fixture
def as_(engine: Engine, clock: Clock) -> Unit:
    """`as_(actor, at=clock, purpose="four_eyes")`: a four-eyes unit of work acting as `actor`."""

    def make(actor: Actor, at: Clock = clock, purpose: str = FOUR_EYES) -> SqlApprovalUnitOfWork:
        return SqlApprovalUnitOfWork(engine, AccessContext(actor, purpose), at)

    return make


def _code(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def _role(auth: AuthStore, username: str) -> str:
    return next(a.role for a in auth.list_staff_accounts() if a.username == username)


def _grant(as_: Unit, by: Actor, username: str, role: str) -> ApprovalRequest:
    with as_(by) as uow:
        return request_role_grant(uow, username, role, "covers the north district from December")


def _approve(as_: Unit, by: Actor, request_id: str, at: Clock | None = None) -> Approved:
    with as_(by, **({"at": at} if at else {})) as uow:
        return approvals.approve(uow, KINDS, request_id, "checked with the district head")


def _refuse(as_: Unit, by: Actor, request_id: str, note: str = "not needed there") -> ApprovalRequest:
    with as_(by) as uow:
        return approvals.refuse(uow, KINDS, request_id, note)


def _status(as_: Unit, by: Actor, request_id: str) -> str:
    with as_(by) as uow:
        found = uow.approvals.get(request_id)
    assert found is not None
    return found.status


def _log(engine: Engine) -> list[tuple[str, str, str, str | None, str]]:
    a = t.access_log.c
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), Clock()) as uow:
        rows = uow.connection.execute(select(t.access_log).order_by(a.seq))
        return [(r.actor, r.purpose, r.action, r.subject_person_id, r.detail) for r in rows]


def _steps(engine: Engine, request_id: str) -> list[tuple[str, str]]:
    """(actor, step) of the log entries about one request, in order."""
    return [
        (actor, detail.split(" ")[0])
        for actor, purpose, _, _, detail in _log(engine)
        if f"request={request_id}" in detail and purpose == FOUR_EYES
    ]


# --- role grants ----------------------------------------------------------------------------------


def test_a_role_changes_only_after_a_second_oversight_account_approves(
    as_: Unit, staff: Staff, auth: AuthStore, engine: Engine
) -> None:
    session = auth.sign_in("rosa", PASSWORD, None, "192.0.2.1")
    asked = _grant(as_, staff.ana, "rosa", "reviewer")
    assert (asked.status, asked.requested_by, asked.requested_role) == ("pending", staff.ana.id, "program_admin")
    assert asked.data == {"account_id": staff.rosa.id, "from_role": "registrar", "to_role": "reviewer"}
    assert asked.expires_at == FIXED_NOW + timedelta(days=3)
    assert _role(auth, "rosa") == "registrar"  # nothing changes on request
    assert auth.resolve_session(session.session_token).principal.role == "registrar"

    done = _approve(as_, staff.olga, asked.id)
    assert done.request.status == "executed" and done.request.decided_by == staff.olga.id
    assert done.outcome == f"account={staff.rosa.id} role=registrar->reviewer"
    assert _role(auth, "rosa") == "reviewer" and _status(as_, staff.olga, asked.id) == "executed"
    assert _code(lambda: auth.resolve_session(session.session_token)) == "session_invalid"  # acted in the old role
    assert _steps(engine, asked.id) == [
        (staff.ana.id, "approval.requested"),
        (staff.olga.id, "approval.approved"),
        (staff.olga.id, "approval.executed"),
    ]


def test_the_account_that_asked_cannot_approve_its_own_request(as_: Unit, staff: Staff, auth: AuthStore) -> None:
    asked = _grant(as_, staff.olga, "rosa", "reviewer")  # an oversight account may ask, too
    assert _code(lambda: _approve(as_, staff.olga, asked.id)) == "same_account"
    assert _role(auth, "rosa") == "registrar" and _status(as_, staff.olga, asked.id) == "pending"
    _approve(as_, staff.otto, asked.id)
    assert _role(auth, "rosa") == "reviewer"


def test_the_account_a_grant_is_about_cannot_decide_it(as_: Unit, staff: Staff, auth: AuthStore) -> None:
    asked = _grant(as_, staff.ana, "otto", "program_admin")
    assert _code(lambda: _approve(as_, staff.otto, asked.id)) == "approver_is_subject"
    assert _code(lambda: _refuse(as_, staff.otto, asked.id)) == "approver_is_subject"
    _approve(as_, staff.olga, asked.id)
    assert _role(auth, "otto") == "program_admin"


def test_a_role_that_may_not_ask_or_approve_a_kind_is_refused(as_: Unit, staff: Staff, auth: AuthStore) -> None:
    assert _code(lambda: _grant(as_, staff.rosa, "beto", "reviewer")) == "requester_role_not_allowed"
    asked = _grant(as_, staff.ana, "rosa", "reviewer")
    # Registrars and reviewers do not decide role grants.
    assert _code(lambda: _approve(as_, staff.beto, asked.id)) == "approver_role_not_allowed"
    assert _code(lambda: _refuse(as_, staff.beto, asked.id)) == "approver_role_not_allowed"
    assert _code(lambda: _approve(as_, staff.rita, asked.id)) == "approver_role_not_allowed"
    assert _role(auth, "rosa") == "registrar" and _status(as_, staff.olga, asked.id) == "pending"


def test_a_grant_is_checked_when_asked_and_again_when_approved(
    as_: Unit, staff: Staff, auth: AuthStore
) -> None:
    assert _code(lambda: _grant(as_, staff.ana, "nobody", "reviewer")) == "account_not_found"
    assert _code(lambda: _grant(as_, staff.ana, "rosa", "registrar")) == "same_role"
    assert _code(lambda: _grant(as_, staff.ana, "rosa", "mayor")) == "invalid_role"
    assert _code(lambda: _grant(as_, staff.ana, "rosa", "oversight")) == "second_factor_missing"
    asked = _grant(as_, staff.ana, "rosa", "reviewer")
    assert _code(lambda: _grant(as_, staff.ana, "rosa", "reviewer")) == "approval_already_pending"
    auth.disable_staff_account("rosa", "test")
    assert _code(lambda: _approve(as_, staff.olga, asked.id)) == "account_disabled"
    assert _role(auth, "rosa") == "registrar" and _status(as_, staff.olga, asked.id) == "pending"


# --- expiry, refusal, exactly once -------------------------------------------------------------


def test_an_expired_request_cannot_be_approved_and_the_listing_marks_it(
    as_: Unit, staff: Staff, auth: AuthStore, engine: Engine
) -> None:
    first = _grant(as_, staff.ana, "rosa", "reviewer")
    second = _grant(as_, staff.ana, "beto", "reviewer")
    later = Clock.fixed(FIXED_NOW + timedelta(days=3))  # exactly at expires_at: too late
    assert _code(lambda: _approve(as_, staff.olga, first.id, at=later)) == "approval_expired"
    assert _role(auth, "rosa") == "registrar" and _status(as_, staff.olga, first.id) == "expired"
    assert _code(lambda: _approve(as_, staff.olga, first.id)) == "approval_expired"  # stays expired
    with as_(staff.olga) as uow:  # before expiry the listing shows it
        assert [r.id for r in approvals.pending(uow, KINDS)] == [second.id]
    with as_(staff.olga, at=later) as uow:
        assert approvals.pending(uow, KINDS) == []
    assert _status(as_, staff.olga, second.id) == "expired"
    assert _steps(engine, first.id)[-1] == (staff.olga.id, "approval.expired")
    assert _steps(engine, second.id)[-1] == (staff.olga.id, "approval.expired")
    again = _grant(as_, staff.ana, "rosa", "reviewer")  # a new request may be filed after expiry
    _approve(as_, staff.olga, again.id)
    assert _role(auth, "rosa") == "reviewer"


def test_a_refusal_is_logged_and_nothing_is_executed(as_: Unit, staff: Staff, auth: AuthStore, engine: Engine) -> None:
    asked = _grant(as_, staff.ana, "rosa", "reviewer")
    assert _code(lambda: _refuse(as_, staff.olga, asked.id, "   ")) == "missing_note"
    refused = _refuse(as_, staff.olga, asked.id, "the north district has enough reviewers")
    assert (refused.status, refused.decided_by, refused.decision_note) == (
        "refused",
        staff.olga.id,
        "the north district has enough reviewers",
    )
    assert _role(auth, "rosa") == "registrar"
    assert _code(lambda: _approve(as_, staff.otto, asked.id)) == "approval_already_decided"
    assert _steps(engine, asked.id) == [(staff.ana.id, "approval.requested"), (staff.olga.id, "approval.refused")]
    withdrawn = _grant(as_, staff.ana, "rosa", "reviewer")
    assert _refuse(as_, staff.ana, withdrawn.id, "asked by mistake").status == "refused"  # the requester withdraws
    assert any("withdrawn" in detail for *_, detail in _log(engine) if f"request={withdrawn.id}" in detail)


def test_of_two_approvers_at_once_exactly_one_executes(
    as_: Unit, staff: Staff, auth: AuthStore, engine: Engine
) -> None:
    asked = _grant(as_, staff.ana, "rosa", "reviewer")
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approver(who: Actor) -> None:
        start.wait()
        try:
            _approve(as_, who, asked.id)
            outcomes[who.id] = "executed"
        except DomainError as refused:
            outcomes[who.id] = refused.code

    threads = [threading.Thread(target=approver, args=(who,)) for who in (staff.olga, staff.otto)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["approval_already_decided", "executed"]
    assert _role(auth, "rosa") == "reviewer"
    steps = [step for _, step in _steps(engine, asked.id)]
    assert steps == ["approval.requested", "approval.approved", "approval.executed"]
    winner = next(who for who, outcome in outcomes.items() if outcome == "executed")
    assert _steps(engine, asked.id)[-1] == (winner, "approval.executed")


# --- kinds, purposes, payloads -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rule_publication"])
def test_kinds_that_are_not_available_are_registered_but_cannot_be_asked_for(
    as_: Unit, staff: Staff, kind: str
) -> None:
    spec = KINDS.get(kind)
    assert spec.unavailable
    payload = {field: "x" for field in spec.fields}
    with as_(staff.olga) as uow:
        assert _code(lambda: approvals.request(uow, KINDS, kind, payload, "rotate yearly")) == "kind_not_available"


def test_only_the_four_eyes_purpose_asks_or_decides_and_payloads_hold_only_codes(as_: Unit, staff: Staff) -> None:
    with as_(staff.rosa, purpose="card_service") as uow:
        assert _code(lambda: approvals.pending(uow, KINDS)) == "purpose_not_allowed"
    with as_(staff.ana) as uow:
        assert _code(lambda: approvals.request(uow, KINDS, "coffee", {}, "x")) == "unknown_kind"
        named = {"account_id": staff.rosa.id, "from_role": "registrar", "to_role": "Rosa Pérez"}
        assert _code(lambda: approvals.request(uow, KINDS, "role_grant", named, "x")) == "invalid_payload"
        extra = {"account_id": staff.rosa.id, "from_role": "registrar", "to_role": "reviewer", "pin": "4821"}
        assert _code(lambda: approvals.request(uow, KINDS, "role_grant", extra, "x")) == "invalid_payload"
        assert _code(lambda: request_role_grant(uow, "rosa", "reviewer", "  ")) == "missing_reason"


# --- locked PINs -------------------------------------------------------------------------------


def _locked_card(engine: Engine, clock: Clock) -> tuple[str, str]:
    """A person with a card whose PIN locked after five wrong tries: (person id, handle)."""
    _, person_id, handle = _locked_member(engine, clock)
    return person_id, handle


def _locked_member(engine: Engine, clock: Clock) -> tuple[str, str, str]:
    """Like `_locked_card`, the person a household's reference person: (household id, person id, handle)."""
    home, person_id = enroll_in_new_household(engine, clock)
    desk = AccessContext(REGISTRAR, "card_service")
    with SqlCardUnitOfWork(engine, desk, clock) as uow:
        handle = issue_card(uow, KEYS, person_id, PIN, POLICY).card.handle
    for attempt in range(LOCK_AFTER_FAILURES):
        with SqlCardUnitOfWork(engine, desk, clock) as uow:
            attempt_card_pin(uow, KEYS, handle, WRONG_PIN, attempt % TRIES_PER_TRANSACTION)
    return home, person_id, handle


def _pin_check(engine: Engine, clock: Clock, handle: str, pin: str) -> str:
    with SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), clock) as uow:
        try:
            return attempt_card_pin(uow, KEYS, handle, pin, 0).code
        except DomainError as refused:
            return refused.code


def test_a_locked_pin_is_cleared_only_when_a_second_registrar_or_reviewer_approves(
    as_: Unit, staff: Staff, engine: Engine, clock: Clock
) -> None:
    person_id, handle = _locked_card(engine, clock)
    with as_(staff.rita) as uow:  # a reviewer does not ask; registrars do
        assert _code(lambda: request_pin_unlock(uow, handle, "holder forgot it")) == "requester_role_not_allowed"
    with as_(staff.rosa) as uow:
        asked = request_pin_unlock(uow, handle, "holder forgot it; ID checked at the desk")
    assert _code(lambda: _approve(as_, staff.rosa, asked.id)) == "same_account"
    assert _code(lambda: _approve(as_, staff.ana, asked.id)) == "approver_role_not_allowed"
    assert _pin_check(engine, clock, handle, PIN) == "pin_locked"  # still locked until approved
    done = _approve(as_, staff.beto, asked.id)
    assert done.outcome == "pin_cleared"
    assert _pin_check(engine, clock, handle, PIN) == "pin_not_set"  # the old PIN is gone, not unlocked
    with SqlCardUnitOfWork(engine, AccessContext(staff.rosa, "card_service"), clock) as uow:
        set_card_pin(uow, KEYS, handle, NEW_PIN)
    assert _pin_check(engine, clock, handle, NEW_PIN) == "pin_ok"
    assert asked.payload == f'{{"card_id":"{done.request.data["card_id"]}"}}'  # no PIN, no hash, no name
    holder = [(actor, detail.split(" ")[0]) for actor, purpose, _, subject, detail in _log(engine)
              if subject == person_id and purpose == FOUR_EYES]  # fmt: skip
    assert holder == [
        (staff.rosa.id, "approval.requested"),
        (staff.beto.id, "approval.approved"),
        (staff.beto.id, "card.pin_cleared"),
        (staff.beto.id, "approval.executed"),
    ]


def test_a_reviewer_may_approve_a_pin_reset_and_an_unlocked_pin_needs_no_request(
    as_: Unit, staff: Staff, engine: Engine, clock: Clock
) -> None:
    _, handle = _locked_card(engine, clock)
    with as_(staff.rosa) as uow:
        asked = request_pin_unlock(uow, handle, "holder forgot it")
    with as_(staff.beto) as uow:
        assert _code(lambda: request_pin_unlock(uow, handle, "again")) == "approval_already_pending"
    _approve(as_, staff.rita, asked.id)
    with as_(staff.rosa) as uow:  # cleared: there is nothing locked to unlock any more
        assert _code(lambda: request_pin_unlock(uow, handle, "again")) == "pin_not_locked"


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def client(db: Database, engine: Engine, clock: Clock, auth: AuthStore, tmp_path: Path) -> TestClient:
    settings = Settings(mode=Mode.DEMO, data_dir=tmp_path / "data", database_url=db.url)
    container = Container(settings, engine, clock, ROOT)
    container.__dict__["auth"] = auth  # the fast password hashing of these tests
    return TestClient(create_app(container))


def _headers(auth: AuthStore, username: str, totp: bool = False) -> dict[str, str]:
    code = pyotp.TOTP(TOTP).at(FIXED_NOW) if totp else None
    token = auth.sign_in(username, PASSWORD, code, "192.0.2.7").session_token
    return {"Authorization": f"Bearer {token}", "X-Civicard-Purpose": FOUR_EYES}


def test_the_api_lists_what_the_caller_may_decide_and_approves_or_refuses(
    client: TestClient, as_: Unit, staff: Staff, auth: AuthStore, engine: Engine, clock: Clock
) -> None:
    grant = _grant(as_, staff.ana, "rosa", "reviewer")
    other = _grant(as_, staff.ana, "beto", "reviewer")
    _, handle = _locked_card(engine, clock)
    with as_(staff.rosa) as uow:
        unlock = request_pin_unlock(uow, handle, "holder forgot it")
    with SqlUnitOfWork(engine, AccessContext(Actor("seed", "system"), "demo_setup"), clock) as uow:
        proposed = new_id()
        uow.connection.execute(insert(t.program_versions).values(
            id=proposed, program="food_basket", version="2027.1", sha256="0" * 64, title_es="Canasta",
            title_en="Food basket", legal_basis="Decreto 1", effective_from=date(2027, 1, 1), source="x",
            status="proposed", tests_passed=1, impact="{}", proposed_by="ana", proposed_at=FIXED_NOW,
            proposal_note="new year",
        ))  # fmt: skip
        uow.commit()
    olga, rita = _headers(auth, "olga", totp=True), _headers(auth, "rita")

    listed = client.get("/v1/approvals", headers=olga)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert sorted(i["id"] for i in body["items"]) == sorted([grant.id, other.id]) and body["program_proposals"] == []
    shown = next(i for i in body["items"] if i["id"] == grant.id)
    assert shown["payload"] == grant.data and "registrar to reviewer" in shown["description"]
    assert [i["id"] for i in client.get("/v1/approvals", headers=rita).json()["items"]] == [unlock.id]
    admin = client.get("/v1/approvals", headers=_headers(auth, "ana", totp=True)).json()
    assert sorted(i["id"] for i in admin["items"]) == sorted([grant.id, other.id])  # its own requests
    assert [p["id"] for p in admin["program_proposals"]] == [proposed]

    wrong_purpose = client.get("/v1/approvals", headers=olga | {"X-Civicard-Purpose": "oversight_case"})
    assert (wrong_purpose.status_code, wrong_purpose.json()["code"]) == (403, "purpose_not_allowed")
    refused = client.post(f"/v1/approvals/{grant.id}/approve", headers=rita, json={})
    assert (refused.status_code, refused.json()["code"]) == (403, "approver_role_not_allowed")
    approved = client.post(f"/v1/approvals/{grant.id}/approve", headers=olga, json={"note": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["request"]["status"] == "executed" and _role(auth, "rosa") == "reviewer"
    again = client.post(f"/v1/approvals/{grant.id}/approve", headers=olga, json={})
    assert (again.status_code, again.json()["code"]) == (409, "approval_already_decided")
    no_note = client.post(f"/v1/approvals/{other.id}/refuse", headers=olga, json={})
    assert no_note.status_code == 422
    turned_down = client.post(f"/v1/approvals/{other.id}/refuse", headers=olga, json={"note": "not now"})
    assert turned_down.status_code == 200 and turned_down.json()["status"] == "refused"
    unknown = client.post(f"/v1/approvals/{new_id()}/approve", headers=olga, json={})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_request")
    cleared = client.post(f"/v1/approvals/{unlock.id}/approve", headers=rita, json={})
    assert cleared.status_code == 200 and cleared.json()["outcome"] == "pin_cleared"


def test_the_registrar_card_page_asks_for_an_unlock_and_sets_the_new_pin_once_approved(
    client: TestClient, as_: Unit, staff: Staff, auth: AuthStore, engine: Engine, clock: Clock
) -> None:
    home, person_id, _ = _locked_member(engine, clock)
    signed_in = auth.sign_in("rosa", PASSWORD, None, "192.0.2.8")
    client.cookies.set(SESSION_COOKIE, signed_in.session_token)
    page = f"/registrar/households/{home}/members/{person_id}/card"
    with as_(staff.rosa, purpose="card_service") as uow:
        card = uow.cards.current_of_person(person_id)
    assert card is not None
    form = {"card_id": card.id, "csrf_token": signed_in.csrf_token}

    shown = client.get(page)
    assert shown.status_code == 200 and 'data-pin="locked"' in shown.text
    assert 'data-action="request-unlock"' in shown.text and 'data-action="set-pin"' not in shown.text
    changed = client.post(f"{page}/pin", data=form | {"pin": NEW_PIN, "pin_again": NEW_PIN}, follow_redirects=False)
    assert 'data-code="pin_reset_needs_approval"' in changed.text  # one registrar cannot lift the lock
    asked = client.post(f"{page}/pin-unlock", data=form | {"reason": "holder forgot it"}, follow_redirects=False)
    assert asked.status_code == 303 and asked.headers["location"].endswith("?done=unlock_requested")
    waiting = client.get(page).text
    assert 'data-field="unlock-request"' in waiting and 'data-action="request-unlock"' not in waiting
    with as_(staff.rosa) as uow:
        [request] = approvals.pending(uow, KINDS)

    _approve(as_, staff.beto, request.id)
    cleared = client.get(page).text
    assert 'data-pin="none"' in cleared and 'data-action="set-pin"' in cleared
    chosen = client.post(f"{page}/pin", data=form | {"pin": NEW_PIN, "pin_again": NEW_PIN}, follow_redirects=False)
    assert chosen.status_code == 303 and chosen.headers["location"].endswith("?done=pin_set")
    assert _pin_check(engine, clock, card.handle, NEW_PIN) == "pin_ok"

"""Card services on SQLite and PostgreSQL: issue, verify, revoke, suspend, replace, print, PINs, access log."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, timedelta

import pypdfium2 as pdfium
import pytest
from sqlalchemy import Engine, func, select

from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.card_store import PublishedCardMaterial, SqlCardUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.kinds import KINDS, request_pin_unlock
from civicard.identity.cards import (
    CardKeys,
    CardPolicy,
    IssuedCard,
    attempt_card_pin,
    card_token,
    issue_card,
    print_cards,
    publish_status_list,
    reinstate_card,
    replace_card,
    reset_card_pin,
    revoke_card,
    set_card_pin,
    suspend_card,
)
from civicard.identity.pins import LOCK_AFTER_FAILURES, TRIES_PER_TRANSACTION
from civicard.identity.terminal_check import OfflineVerifier, read_qr
from civicard.registry.enrollment import EnrollPerson, enroll_person
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import FIXED_NOW, REGISTRAR

KEYS = CardKeys.derive(RootKey(hashlib.sha256(b"civicard card tests").digest()))
POLICY = CardPolicy(status_list_capacity=2**20)
PIN, OTHER_PIN, WRONG_PIN = "4821", "7305", "9999"
CardUow = Callable[..., SqlCardUnitOfWork]


@pytest.fixture
def card_uow(engine: Engine, clock: Clock) -> CardUow:
    def make(purpose: str = "card_service", clock_: Clock = clock) -> SqlCardUnitOfWork:
        return SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, purpose), clock_)

    return make


def _enroll(engine: Engine, clock: Clock, national_id: str = "52123456") -> str:
    cmd = EnrollPerson(
        given_names="María José",
        first_surname="Pérez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        national_id=national_id,
    )
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), clock) as uow:
        return enroll_person(uow, cmd).id


def _issue(card_uow: CardUow, person_id: str, pin: str | None = PIN) -> IssuedCard:
    with card_uow() as uow:
        return issue_card(uow, KEYS, person_id, pin, POLICY)


def _verifier(engine: Engine) -> OfflineVerifier:
    latest = PublishedCardMaterial(engine).latest()
    assert latest is not None
    return OfflineVerifier.from_published(KEYS.keyring.cose_key_set(), latest.signed_list)


def _code(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def _log_rows(engine: Engine, clock: Clock) -> list[tuple[str, str, str | None, str]]:
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), clock) as uow:
        rows = uow.connection.execute(select(t.access_log).order_by(t.access_log.c.seq))
        return [(r.purpose, r.action, r.subject_person_id, r.detail) for r in rows]


def test_an_issued_card_verifies_as_valid(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    issued = _issue(card_uow, _enroll(engine, clock))
    result = _verifier(engine).check(issued.token, FIXED_NOW)
    assert (result.status, result.code) == ("valid", "card_valid")
    assert result.claims is not None and result.claims.handle == issued.card.handle
    assert card_token(issued.card, KEYS) == issued.token  # re-signing reproduces the printed code


def test_a_person_with_a_card_cannot_get_a_second_one(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    person_id = _enroll(engine, clock)
    _issue(card_uow, person_id)
    assert _code(lambda: _issue(card_uow, person_id)) == "card_exists"
    assert _code(lambda: _issue(card_uow, "0" * 32)) == "unknown_person"


def test_a_revoked_card_is_refused_once_the_list_is_republished(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    issued = _issue(card_uow, _enroll(engine, clock))
    terminal = _verifier(engine)
    with card_uow() as uow:
        revoke_card(uow, KEYS, issued.card.handle, "lost", POLICY)
    assert terminal.check(issued.token, FIXED_NOW).code == "card_valid"  # still holding the old list
    latest = PublishedCardMaterial(engine).latest()
    assert latest is not None and latest.signed_delta is not None
    terminal.apply_delta(latest.signed_delta)
    assert terminal.check(issued.token, FIXED_NOW).code == "card_revoked"
    assert _verifier(engine).check(issued.token, FIXED_NOW).code == "card_revoked"
    with card_uow() as uow:
        assert _code(lambda: reinstate_card(uow, KEYS, issued.card.handle, "found", POLICY)) == "card_revoked"


def test_a_suspended_card_is_refused_and_valid_again_when_reinstated(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    issued = _issue(card_uow, _enroll(engine, clock))
    with card_uow() as uow:
        suspend_card(uow, KEYS, issued.card.handle, "reported_missing", POLICY)
    assert _verifier(engine).check(issued.token, FIXED_NOW).code == "card_suspended"
    with card_uow() as uow:
        reinstate_card(uow, KEYS, issued.card.handle, "found", POLICY)
    assert _verifier(engine).check(issued.token, FIXED_NOW).code == "card_valid"


def test_a_status_change_needs_a_known_reason_code(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    issued = _issue(card_uow, _enroll(engine, clock))
    with card_uow() as uow:
        assert _code(lambda: revoke_card(uow, KEYS, issued.card.handle, "María lost it", POLICY)) == "invalid_reason"
        assert _code(lambda: revoke_card(uow, KEYS, "K7M2QXR9TZ0", "lost", POLICY)) == "card_handle_invalid"


def test_a_replacement_revokes_the_old_card_in_the_same_transaction(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    person_id = _enroll(engine, clock)
    old = _issue(card_uow, person_id)
    with card_uow() as uow:
        new = replace_card(uow, KEYS, old.card.handle, "stolen", OTHER_PIN, POLICY)
        # inside the open transaction both changes are visible together …
        assert uow.cards.by_handle(old.card.handle) is not None
        assert uow.cards.by_handle(old.card.handle).status == "revoked"  # type: ignore[union-attr]
    verifier = _verifier(engine)
    assert verifier.check(old.token, FIXED_NOW).code == "card_revoked"
    assert verifier.check(new.token, FIXED_NOW).code == "card_valid"
    assert new.card.replaces_card_id == old.card.id and new.card.status_index != old.card.status_index
    with card_uow() as uow:
        current = uow.cards.current_of_person(person_id)
        assert current is not None and current.id == new.card.id


def test_a_failed_replacement_leaves_the_old_card_valid(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    person_id = _enroll(engine, clock)
    old = _issue(card_uow, person_id)
    with card_uow() as uow:  # a trivial new PIN fails after the old card was marked revoked in the transaction
        assert _code(lambda: replace_card(uow, KEYS, old.card.handle, "lost", "1234", POLICY)) == "pin_too_weak"
    assert _verifier(engine).check(old.token, FIXED_NOW).code == "card_valid"
    with card_uow() as uow:
        assert uow.cards.by_handle(old.card.handle).status == "valid"  # type: ignore[union-attr]


def test_three_wrong_pins_end_the_transaction_even_if_the_fourth_is_right(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    handle = _issue(card_uow, _enroll(engine, clock)).card.handle
    codes = []
    for tries_used in range(TRIES_PER_TRANSACTION + 1):
        with card_uow() as uow:
            pin = WRONG_PIN if tries_used < TRIES_PER_TRANSACTION else PIN
            codes.append(attempt_card_pin(uow, KEYS, handle, pin, tries_used).code)
    assert codes == ["pin_wrong", "pin_wrong", "pin_wrong", "pin_tries_exhausted"]
    with card_uow() as uow:  # a new transaction with the right PIN works and clears the count
        assert attempt_card_pin(uow, KEYS, handle, PIN, 0).code == "pin_ok"
    with card_uow() as uow:
        assert uow.cards.pin(uow.cards.by_handle(handle).id).counter.consecutive_failures == 0  # type: ignore[union-attr]


def test_five_wrong_pins_in_a_row_lock_the_card_until_a_second_person_approves_clearing_it(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    handle = _issue(card_uow, _enroll(engine, clock)).card.handle
    codes = []
    for attempt in range(LOCK_AFTER_FAILURES):  # over two transactions: 3 + 2
        with card_uow() as uow:
            codes.append(attempt_card_pin(uow, KEYS, handle, WRONG_PIN, attempt % TRIES_PER_TRANSACTION).code)
    assert codes[-1] == "pin_locked" and codes[:-1] == ["pin_wrong"] * (LOCK_AFTER_FAILURES - 1)
    with card_uow() as uow:
        outcome = attempt_card_pin(uow, KEYS, handle, PIN, 0)
    assert (outcome.accepted, outcome.code) == (False, "pin_locked")
    with card_uow() as uow:  # one registrar alone cannot lift the lock
        assert _code(lambda: reset_card_pin(uow, KEYS, handle, OTHER_PIN)) == "pin_reset_needs_approval"
    with SqlApprovalUnitOfWork(engine, AccessContext(REGISTRAR, FOUR_EYES), clock) as uow:
        asked = request_pin_unlock(uow, handle, "holder forgot the PIN; ID checked at the desk")
    second = Actor("registrar-beto", "registrar")
    with SqlApprovalUnitOfWork(engine, AccessContext(second, FOUR_EYES), clock) as uow:
        assert approvals.approve(uow, KINDS, asked.id).outcome == "pin_cleared"
    with card_uow() as uow:
        assert _code(lambda: attempt_card_pin(uow, KEYS, handle, PIN, 0)) == "pin_not_set"
    with card_uow() as uow:  # the holder chooses a new PIN at the desk, as at pickup
        set_card_pin(uow, KEYS, handle, OTHER_PIN)
    with card_uow() as uow:
        assert attempt_card_pin(uow, KEYS, handle, OTHER_PIN, 0).code == "pin_ok"


def test_a_pin_that_is_not_locked_is_changed_at_the_desk_without_approval(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    handle = _issue(card_uow, _enroll(engine, clock)).card.handle
    with card_uow() as uow:
        assert attempt_card_pin(uow, KEYS, handle, WRONG_PIN, 0).code == "pin_wrong"
    with card_uow() as uow:
        reset_card_pin(uow, KEYS, handle, OTHER_PIN)
    with card_uow() as uow:
        assert attempt_card_pin(uow, KEYS, handle, OTHER_PIN, 0).code == "pin_ok"


def test_a_pin_can_be_set_once_at_pickup_and_weak_pins_are_refused(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    handle = _issue(card_uow, _enroll(engine, clock), pin=None).card.handle
    with card_uow() as uow:
        assert _code(lambda: attempt_card_pin(uow, KEYS, handle, PIN, 0)) == "pin_not_set"
        assert _code(lambda: set_card_pin(uow, KEYS, handle, "1984")) == "pin_too_weak"  # the birth year
    with card_uow() as uow:
        set_card_pin(uow, KEYS, handle, PIN)
    with card_uow() as uow:
        assert _code(lambda: set_card_pin(uow, KEYS, handle, OTHER_PIN)) == "pin_already_set"
        assert attempt_card_pin(uow, KEYS, handle, PIN, 0).code == "pin_ok"


def test_a_revoked_card_refuses_pin_attempts_without_counting_them(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    handle = _issue(card_uow, _enroll(engine, clock)).card.handle
    with card_uow() as uow:
        revoke_card(uow, KEYS, handle, "lost", POLICY)
    with card_uow() as uow:
        assert _code(lambda: attempt_card_pin(uow, KEYS, handle, PIN, 0)) == "card_revoked"


def test_card_actions_are_logged_for_card_service_and_never_hold_the_pin(
    engine: Engine, clock: Clock, card_uow: CardUow
) -> None:
    person_id = _enroll(engine, clock)
    issued = _issue(card_uow, person_id)
    with card_uow() as uow:
        attempt_card_pin(uow, KEYS, issued.card.handle, WRONG_PIN, 0)
    with card_uow() as uow:
        revoke_card(uow, KEYS, issued.card.handle, "lost", POLICY)
    card_rows = [r for r in _log_rows(engine, clock) if r[3].startswith("card.")]
    assert [(p, a, s, d.split()[0]) for p, a, s, d in card_rows] == [
        ("card_service", "write", person_id, "card.issued"),
        ("card_service", "read", person_id, "card.pin_checked"),
        ("card_service", "write", person_id, "card.revoked"),
    ]
    with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), clock) as uow:
        cells = [v for table in t.metadata.sorted_tables for row in uow.connection.execute(select(table)) for v in row]
    # Random ids, salts and hashes may contain any four digits by chance; a stored PIN would stand
    # as a value of its own or as a separate word in a text.
    for pin in (PIN, WRONG_PIN):
        word = re.compile(rf"(?<![0-9A-Za-z]){pin}(?![0-9A-Za-z])")
        assert not [v for v in cells if v == pin or v == int(pin) or (isinstance(v, str) and word.search(v))]


def test_card_actions_need_the_card_service_purpose(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    person_id = _enroll(engine, clock)
    with card_uow("enrollment") as uow:
        assert _code(lambda: issue_card(uow, KEYS, person_id, PIN, POLICY)) == "purpose_not_allowed"
    vendor = SqlCardUnitOfWork(engine, AccessContext(Actor("shop-1", "vendor"), "card_service"), clock)
    assert _code(vendor.__enter__) == "purpose_not_allowed"
    with card_uow() as uow:
        assert uow.cards.current_of_person(person_id) is None


def test_a_printed_card_carries_a_qr_that_decodes_to_the_token(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    first = _issue(card_uow, _enroll(engine, clock))
    second = _issue(card_uow, _enroll(engine, clock, national_id="71234567"))
    with card_uow() as uow:
        pdf = print_cards(uow, KEYS, [first.card.person_id, second.card.person_id])
    pages = [page.render(scale=200 / 72, grayscale=True).to_pil() for page in pdfium.PdfDocument(pdf)]
    assert [read_qr(image) for image in pages] == [first.token, second.token]
    assert [r[3].split()[0] for r in _log_rows(engine, clock)].count("card.printed") == 2


def test_a_republished_list_stays_fresh_and_an_old_one_is_degraded(engine: Engine, card_uow: CardUow) -> None:
    long_ago = Clock.fixed(FIXED_NOW - timedelta(days=8))
    person_id = _enroll(engine, long_ago)
    with card_uow(clock_=long_ago) as uow:
        issued = issue_card(uow, KEYS, person_id, PIN, POLICY)
    assert _verifier(engine).check(issued.token, FIXED_NOW).code == "status_list_stale"
    with card_uow() as uow:
        published = publish_status_list(uow, KEYS, POLICY)
    assert published.version == 2
    assert _verifier(engine).check(issued.token, FIXED_NOW).code == "card_valid"


def test_issuing_with_a_weak_pin_is_refused_and_writes_no_card(engine: Engine, clock: Clock, card_uow: CardUow) -> None:
    person_id = _enroll(engine, clock)
    assert _code(lambda: _issue(card_uow, person_id, pin="1234")) == "pin_too_weak"
    with card_uow() as uow:
        assert uow.cards.current_of_person(person_id) is None
        assert uow.connection.execute(select(func.count()).select_from(t.cards)).scalar_one() == 0

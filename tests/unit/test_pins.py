"""Card PINs: choice policy, keyed hash, 3 tries per transaction, lock after 5 wrong PINs in a row."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicard.identity.pins import (
    LOCK_AFTER_FAILURES,
    PinCounter,
    attempt_pin,
    check_new_pin,
    check_pin,
    hash_pin,
    is_trivial,
    pin_matches,
    pin_pepper,
    reset_pin_lock,
)
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

ROOT = RootKey(hashlib.sha256(b"civicard test root").digest())
PEPPER = pin_pepper(ROOT)
HANDLE, OTHER_HANDLE = "K7M2QXR9TZD", "0000000000F"


@pytest.mark.parametrize("pin", ["0000", "1111", "1234", "4321", "123456", "987654", "1212", "123123", "2580", "1004"])
def test_trivial_pins_are_refused(pin: str) -> None:
    assert is_trivial(pin)
    with pytest.raises(DomainError) as caught:
        check_new_pin(pin)
    assert caught.value.code == "pin_too_weak"


@pytest.mark.parametrize("pin", ["123", "1234567", "12a4", "", " 4821", "١٢٣٤٥"])
def test_a_pin_is_four_to_six_ascii_digits(pin: str) -> None:
    with pytest.raises(DomainError) as caught:
        check_new_pin(pin)
    assert caught.value.code == "pin_format"


def test_ordinary_pins_are_accepted_unless_the_caller_says_avoid_them() -> None:
    assert check_new_pin("4821") == "4821" and check_new_pin("730915") == "730915"
    with pytest.raises(DomainError):
        check_new_pin("1987", avoid=["1987"])


def test_the_hash_is_keyed_per_card_and_reveals_nothing() -> None:
    stored = hash_pin(PEPPER, HANDLE, "4821")
    assert re.fullmatch(r"v1\$[0-9a-f]{64}", stored)  # only the keyed hash is stored
    assert stored == hash_pin(PEPPER, HANDLE, "4821")
    assert stored != hash_pin(PEPPER, OTHER_HANDLE, "4821")
    assert stored != hash_pin(pin_pepper(RootKey(hashlib.sha256(b"other").digest())), HANDLE, "4821")
    assert pin_matches(PEPPER, HANDLE, "4821", stored)
    assert not pin_matches(PEPPER, HANDLE, "4822", stored) and not pin_matches(PEPPER, OTHER_HANDLE, "4821", stored)


def test_three_tries_per_transaction_then_a_new_transaction_is_needed() -> None:
    counter = PinCounter()
    for tries_used, left in ((0, 2), (1, 1), (2, 0)):
        outcome = attempt_pin(counter, tries_used, correct=False)
        assert (outcome.code, outcome.tries_left) == ("pin_wrong", left)
        counter = outcome.counter
    refused = attempt_pin(counter, 3, correct=True)
    assert (refused.accepted, refused.code, refused.counter) == (False, "pin_tries_exhausted", counter)
    assert attempt_pin(counter, 0, correct=True).accepted


def test_five_wrong_pins_in_a_row_lock_the_card_across_transactions_until_reset() -> None:
    counter = PinCounter()
    for attempt in range(LOCK_AFTER_FAILURES):
        outcome = attempt_pin(counter, attempt % 3, correct=False)  # two transactions, any terminals
        counter = outcome.counter
    assert (outcome.code, counter.locked) == ("pin_locked", True)
    still = attempt_pin(counter, 0, correct=True)
    assert (still.accepted, still.code) == (False, "pin_locked")
    with pytest.raises(DomainError) as caught:
        still.raise_if_refused()
    assert caught.value.code == "pin_locked"
    assert attempt_pin(reset_pin_lock(), 0, correct=True).accepted


def test_a_right_pin_clears_the_run_of_failures() -> None:
    counter = PinCounter(consecutive_failures=4)
    assert attempt_pin(counter, 0, correct=True).counter == PinCounter()
    stored = hash_pin(PEPPER, HANDLE, "4821")
    assert check_pin(PEPPER, HANDLE, "4821", stored, counter, 0).code == "pin_ok"
    assert check_pin(PEPPER, HANDLE, "4820", stored, counter, 0).code == "pin_locked"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=30))
def test_lock_happens_exactly_at_five_consecutive_failures(attempts: list[bool]) -> None:
    counter, run, locked = PinCounter(), 0, False
    for correct in attempts:
        outcome = attempt_pin(counter, 0, correct)
        if not locked:
            run = 0 if correct else run + 1
            locked = run >= LOCK_AFTER_FAILURES
        counter = outcome.counter
        assert counter.locked == locked
        assert outcome.accepted == (correct and not locked)


def test_refusals_carry_a_code_and_never_the_pin() -> None:
    stored = hash_pin(PEPPER, HANDLE, "4821")
    outcome = check_pin(PEPPER, HANDLE, "7305", stored, PinCounter(), 0)
    with pytest.raises(DomainError) as caught:
        outcome.raise_if_refused()
    assert (caught.value.code, caught.value.details) == ("pin_wrong", {"tries_left": 2})
    assert "7305" not in repr(outcome) + str(caught.value) and "4821" not in repr(outcome)
    check_pin(PEPPER, HANDLE, "4821", stored, PinCounter(), 0).raise_if_refused()  # accepted: no error

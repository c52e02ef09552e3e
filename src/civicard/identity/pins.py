"""Card PINs: the choice policy, the keyed hash, and the attempt rules.

A 4–6 digit PIN has at most a million values, so no hash cost protects a leaked table; what
protects it is a secret pepper (`root_key.derive("identity:pin-pepper")`, never in the database)
and the attempt limits: 3 tries per transaction, and after 5 wrong PINs in a row (over any
transactions and terminals) PIN use is locked for the card until it is unlocked at the desk: a
registrar asks (`civicard cards request-unlock`), a second registrar or a reviewer approves
(governance/kinds.py `pin_reset`), which clears the PIN, and the holder chooses a new one in person.

Stored value: "v1$" + hex(HMAC-SHA256(pepper, "civicard-pin-v1" NUL handle NUL pin)). The input is
the card handle, not the person id: the PIN belongs to the card (locks are per card; a
replacement card gets a new PIN in person), and the handle is random, so a PIN row links to no
person. The version tag lets a rotated pepper coexist with old rows until they are reset.
The PIN is never logged, returned or put in the QR; callers pass it in and drop it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from civicard.shared.errors import Forbidden, InvalidInput, Unauthenticated
from civicard.shared.keys import RootKey

PIN_SCHEME = "v1"
PEPPER_LABEL = "identity:pin-pepper"
TRIES_PER_TRANSACTION = 3
LOCK_AFTER_FAILURES = 5
_PIN = re.compile(r"[0-9]{4,6}")
# Keypad patterns and the most chosen PINs not caught by the repetition and sequence rules.
_COMMON = frozenset({"2580", "0852", "1004", "2000", "6969", "1122", "1313", "1379", "2468", "1357", "7410", "0147"})


def pin_pepper(root_key: RootKey) -> bytes:
    return root_key.derive(PEPPER_LABEL)


def check_new_pin(pin: str, avoid: Iterable[str] = ()) -> str:
    """Accept a new PIN or say why not. `avoid`: strings the holder's PIN must not equal (e.g. a birth year)."""
    if not _PIN.fullmatch(pin):
        raise InvalidInput("pin_format", "A PIN is 4 to 6 digits.")
    if is_trivial(pin) or pin in set(avoid):
        raise InvalidInput("pin_too_weak", "This PIN is too easy to guess; choose another.")
    return pin


def is_trivial(pin: str) -> bool:
    """One digit repeated, a run up or down (1234, 987654), a repeated pair or triple (1212, 123123), or common."""
    digits = [int(d) for d in pin]
    steps = {b - a for a, b in pairwise(digits)}
    repeats = any(len(pin) % n == 0 and pin == pin[:n] * (len(pin) // n) for n in (1, 2, 3))
    return repeats or steps in ({1}, {-1}) or pin in _COMMON


def hash_pin(pepper: bytes, handle: str, pin: str) -> str:
    """The stored form; the same PIN on two cards gives unrelated values."""
    message = b"\x00".join((b"civicard-pin-" + PIN_SCHEME.encode(), handle.encode(), pin.encode()))
    return f"{PIN_SCHEME}${hmac.new(pepper, message, hashlib.sha256).hexdigest()}"


def pin_matches(pepper: bytes, handle: str, pin: str, stored: str) -> bool:
    """Constant-time comparison; a malformed PIN is hashed anyway so timing says nothing about it."""
    return hmac.compare_digest(hash_pin(pepper, handle, pin), stored) and bool(_PIN.fullmatch(pin))


@dataclass(frozen=True)
class PinCounter:
    """What the store keeps per card: wrong PINs in a row, and whether PIN use is locked."""

    consecutive_failures: int = 0
    locked: bool = False


@dataclass(frozen=True)
class PinOutcome:
    """`code`: pin_ok, pin_wrong, pin_tries_exhausted (start a new transaction) or pin_locked."""

    accepted: bool
    code: str
    counter: PinCounter
    tries_left: int  # in this transaction

    def raise_if_refused(self) -> None:
        if self.code == "pin_wrong":
            raise Unauthenticated(self.code, _MESSAGES[self.code], tries_left=self.tries_left)
        if not self.accepted:
            raise Forbidden(self.code, _MESSAGES[self.code])


_MESSAGES = {
    "pin_wrong": "Wrong PIN.",
    "pin_tries_exhausted": "Three wrong PINs: start the purchase again.",
    "pin_locked": "PIN use is locked for this card; the holder must see a registrar in person.",
}


def attempt_pin(counter: PinCounter, tries_used: int, correct: bool) -> PinOutcome:
    """Decide one PIN attempt. `tries_used`: attempts already made in this transaction.

    A locked card or an exhausted transaction is refused before the PIN counts, right or wrong.
    """
    if counter.locked:
        return PinOutcome(False, "pin_locked", counter, 0)
    if tries_used >= TRIES_PER_TRANSACTION:
        return PinOutcome(False, "pin_tries_exhausted", counter, 0)
    tries_left = TRIES_PER_TRANSACTION - tries_used - 1
    if correct:
        return PinOutcome(True, "pin_ok", PinCounter(), tries_left)
    failures = counter.consecutive_failures + 1
    if failures >= LOCK_AFTER_FAILURES:
        return PinOutcome(False, "pin_locked", PinCounter(failures, locked=True), 0)
    return PinOutcome(False, "pin_wrong", PinCounter(failures), tries_left)


def check_pin(pepper: bytes, handle: str, pin: str, stored: str, counter: PinCounter, tries_used: int) -> PinOutcome:
    """Hash comparison and attempt rules in one step, as the redemption service needs them."""
    return attempt_pin(counter, tries_used, pin_matches(pepper, handle, pin, stored))


def reset_pin_lock() -> PinCounter:
    """What a registrar's in-person reset stores (with a new PIN hash)."""
    return PinCounter()

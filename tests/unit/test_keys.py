"""Derived keys are distinct per label, stable per root, and never printed."""

from __future__ import annotations

import secrets

from civicard.shared.keys import RootKey


def test_derived_keys_differ_by_label_and_are_stable() -> None:
    root = RootKey(secrets.token_bytes(32))
    assert root.derive("pseudonym:vendor") == root.derive("pseudonym:vendor")
    assert root.derive("pseudonym:vendor") != root.derive("pseudonym:program")
    assert RootKey(secrets.token_bytes(32)).derive("pin-pepper") != root.derive("pin-pepper")


def test_a_root_key_never_shows_its_bytes() -> None:
    raw = secrets.token_bytes(32)
    assert raw.hex() not in repr(RootKey(raw)) and "secret" in repr(RootKey(raw))

"""The terminal's offline check: every refusal has its own code; a stale list never says plain "valid"."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import base45
import pypdfium2 as pdfium
import pytest

from civicard.identity.card_print import CardFace, render_card
from civicard.identity.credentials import (
    QR_PREFIX,
    CardClaims,
    IssuerKey,
    Keyring,
    issue_token,
    new_handle,
    token_bytes,
)
from civicard.identity.status_list import (
    INVALID,
    SUSPENDED,
    StatusList,
    diff,
    new_token,
    sign_delta,
    sign_status_list,
)
from civicard.identity.terminal_check import OfflineVerifier, read_qr
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

ROOT = RootKey(hashlib.sha256(b"civicard test root").digest())
KEY_1, KEY_2 = IssuerKey.derive(ROOT, 1), IssuerKey.derive(ROOT, 2)
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
URI = "https://civicard.example/status/1"
VALID_AT, REVOKED_AT, SUSPENDED_AT = 10, 11, 12


def _card(index: int = VALID_AT, key: IssuerKey = KEY_1, days: int = 365) -> str:
    """A card issued 30 days ago that expires `days` from NOW."""
    return issue_token(CardClaims(new_handle(), index, NOW - timedelta(days=30), NOW + timedelta(days=days)), key)


def _published_list(version: int = 1, at: datetime = NOW) -> bytes:
    status = StatusList.empty(1_024)
    status.set(REVOKED_AT, INVALID)
    status.set(SUSPENDED_AT, SUSPENDED)
    return sign_status_list(new_token(status, URI, version, at), KEY_1)


@pytest.fixture
def terminal() -> OfflineVerifier:
    return OfflineVerifier.from_published(Keyring.of([KEY_1]).cose_key_set(), _published_list())


def test_a_valid_card_with_a_fresh_list_is_valid(terminal: OfflineVerifier) -> None:
    text = _card()
    result = terminal.check(text, NOW)
    assert (result.status, result.code, result.accepted) == ("valid", "card_valid", True)
    assert result.claims is not None and result.claims.status_index == VALID_AT


def test_each_refusal_has_its_own_code(terminal: OfflineVerifier) -> None:
    good = _card()
    forged = issue_token(
        CardClaims(new_handle(), VALID_AT, NOW, NOW + timedelta(days=9)),
        IssuerKey.derive(RootKey(hashlib.sha256(b"forger").digest()), 1),
    )
    cases = {
        "garbage": ("token_malformed", "https://example.com/not-a-card"),
        "truncated": ("token_malformed", good[:120]),
        "re-signed": ("token_bad_signature", forged),
        "unknown kid": ("token_unknown_kid", _card(key=KEY_2)),
        "expired": ("card_expired", _card(days=-1)),
        "suspended": ("card_suspended", _card(SUSPENDED_AT)),
        "revoked": ("card_revoked", _card(REVOKED_AT)),
        "beyond the list": ("card_status_unknown", _card(5_000)),
    }
    for name, (code, text) in cases.items():
        result = terminal.check(text, NOW)
        assert (result.status, result.code) == ("invalid", code), name


def test_a_stale_list_degrades_valid_but_never_un_revokes(terminal: OfflineVerifier) -> None:
    late = NOW + timedelta(days=7, minutes=1)
    assert terminal.check(_card(), NOW + timedelta(days=6, hours=23)).status == "valid"
    result = terminal.check(_card(), late)
    assert (result.status, result.code, result.accepted) == ("valid_degraded", "status_list_stale", True)
    assert terminal.check(_card(REVOKED_AT), late).code == "card_revoked"
    strict = OfflineVerifier(terminal.keyring, terminal.status_list, max_age=timedelta(days=1))
    assert strict.check(_card(), NOW + timedelta(days=2)).status == "valid_degraded"


def test_a_delta_revokes_a_card_at_the_terminal_and_refreshes_the_list(terminal: OfflineVerifier) -> None:
    text = _card(20)
    later = NOW + timedelta(days=6)
    newer_status = terminal.status_list.status.copy()
    newer_status.set(20, INVALID)
    newer = new_token(newer_status, URI, 2, later)
    terminal.apply_delta(sign_delta(diff(terminal.status_list, newer), KEY_1, later))
    assert terminal.check(text, later).code == "card_revoked"
    assert terminal.check(_card(), later + timedelta(days=6)).status == "valid"


def test_an_older_list_cannot_replace_a_newer_one(terminal: OfflineVerifier) -> None:
    terminal.replace_list(_published_list(version=5))
    with pytest.raises(DomainError) as caught:
        terminal.replace_list(_published_list(version=4))
    assert caught.value.code == "status_list_rollback"


def test_a_bit_flipped_token_never_passes_the_terminal(terminal: OfflineVerifier) -> None:
    raw = token_bytes(_card())
    for bit in range(0, len(raw) * 8, 7):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert terminal.check(QR_PREFIX + base45.b45encode(bytes(flipped)).decode(), NOW).status == "invalid"


def test_the_check_works_from_a_png_of_the_printed_card(terminal: OfflineVerifier) -> None:
    text = _card(REVOKED_AT)
    page = pdfium.PdfDocument(render_card(CardFace("Ana Pérez", new_handle(), text)))[0]
    image = page.render(scale=200 / 72, grayscale=True).to_pil()
    png = io.BytesIO()
    image.save(png, format="PNG")
    assert read_qr(png.getvalue()) == text
    assert terminal.check_image(png.getvalue(), NOW).code == "card_revoked"
    blank = io.BytesIO()
    image.crop((0, 0, 200, 200)).save(blank, format="PNG")
    assert terminal.check_image(blank.getvalue(), NOW).code == "qr_not_found"

"""Printed cards: CR80 pages, accented names, and a QR that zxing-cpp reads back to the exact token."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime, timedelta

import cbor2
import pypdfium2 as pdfium
import pytest
from PIL import Image
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from civicard.identity import card_print
from civicard.identity.card_print import CardFace, card_qr, module_mm, render_card, render_cards
from civicard.identity.credentials import (
    CardClaims,
    IssuerKey,
    Keyring,
    format_handle,
    issue_token,
    new_handle,
    token_bytes,
)
from civicard.identity.terminal_check import read_qr
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

KEY = IssuerKey.derive(RootKey(hashlib.sha256(b"civicard test root").digest()), 1)
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
MM_PER_POINT = 25.4 / 72


def _face(name: str = "Zoë Ñúñez-Łukasiewicz", index: int = 29_999_999) -> CardFace:
    handle = new_handle()
    token = issue_token(CardClaims(handle, index, NOW, NOW + timedelta(days=1_800)), KEY)
    return CardFace(name, handle, token, date(2031, 10, 20))


def _pages(pdf: bytes, dpi: int = 300) -> list[tuple[pdfium.PdfPage, Image.Image]]:
    document = pdfium.PdfDocument(pdf)
    return [(page, page.render(scale=dpi / 72, grayscale=True).to_pil()) for page in document]


def test_the_qr_is_version_9_or_less_at_level_q_with_modules_of_half_a_millimetre() -> None:
    qr = card_qr(_face().token)
    assert qr.error == "Q" and qr.mode == "alphanumeric" and isinstance(qr.version, int) and qr.version <= 9
    assert module_mm(qr) >= 0.5


def test_a_token_too_long_for_the_card_is_refused() -> None:
    with pytest.raises(DomainError) as caught:
        card_qr("CC1:" + "A" * 400)
    assert caught.value.code == "card_qr_too_large"


def test_the_card_is_cr80_and_its_qr_decodes_to_the_exact_token() -> None:
    face = _face()
    [(page, image)] = _pages(render_card(face))
    width, height = page.get_size()
    assert (round(width * MM_PER_POINT, 1), round(height * MM_PER_POINT, 1)) == (85.6, 54.0)
    assert read_qr(image) == face.token
    png = io.BytesIO()
    image.save(png, format="PNG")
    assert read_qr(png.getvalue()) == face.token
    text = page.get_textpage().get_text_range()
    assert face.name in text and format_handle(face.handle) in text and "2031-10-20" in text


def test_the_printed_qr_verifies_with_pycose_and_only_the_published_key_set() -> None:
    """zxing-cpp reads the printed card; pycose (cwt signed it) verifies with the public COSE_KeySet."""
    face = _face()
    [(_, image)] = _pages(render_card(face), dpi=200)
    scanned = read_qr(image)
    assert scanned == face.token
    [cose_key] = [CoseKey.decode(cbor2.dumps(entry)) for entry in cbor2.loads(Keyring.of([KEY]).cose_key_set())]
    message = Sign1Message.decode(token_bytes(scanned))
    message.key = cose_key
    assert message.verify_signature()
    assert cbor2.loads(message.payload)[2] == face.handle


def test_a_batch_prints_one_card_per_page_each_with_its_own_qr() -> None:
    faces = [_face(name, index) for index, name in enumerate(["Ana Pérez", "Björn Ødegård", "Nguyễn Thị Minh Khai"])]
    pages = _pages(render_cards(faces), dpi=200)
    assert len(pages) == 3
    for face, (page, image) in zip(faces, pages, strict=True):
        assert read_qr(image) == face.token
        assert face.name in page.get_textpage().get_text_range()


def test_a_very_long_name_wraps_and_the_qr_still_reads() -> None:
    face = _face("Maria Magdalena Alexandrescu Constantinopolitana de la Vega y Fernández")
    [(page, image)] = _pages(render_card(face))
    assert read_qr(image) == face.token
    assert "Fernández" in page.get_textpage().get_text_range()


def test_without_dejavu_names_fall_back_to_latin_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(card_print, "_font_paths", lambda: None)
    face = _face("Zoë Łukasiewicz")
    [(page, image)] = _pages(render_card(face))
    assert "Zoë Lukasiewicz" in page.get_textpage().get_text_range()
    assert read_qr(image) == face.token


def test_a_photo_is_placed_in_the_photo_box() -> None:
    photo = io.BytesIO()
    Image.new("RGB", (80, 100), (200, 30, 30)).save(photo, format="PNG")
    face = _face()
    pdf = render_card(CardFace(face.name, face.handle, face.token, photo=photo.getvalue()))
    [(_, image)] = _pages(pdf, dpi=100)
    assert read_qr(image) == face.token
    x, y = round(14 / 25.4 * 100), round(20 / 25.4 * 100)  # inside the photo box, in pixels
    assert image.getpixel((x, y)) < 150  # the red photo, not white paper


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(DomainError) as caught:
        render_cards([])
    assert caught.value.code == "no_cards"

"""Printable cards: a CR80 PDF page (85.6 × 54 mm) per card with name, photo box, handle and QR.

The QR (segno, error level Q, alphanumeric mode, version ≤ 9) is drawn as vector squares so it
prints sharp at any resolution; one module is at least 0.5 mm (35 mm for 53 modules plus the
4-module quiet zone gives 0.57 mm). The QR holds only the signed token — no name, no birth date.
Names keep their accents with DejaVu (a TrueType font, looked up when the first card is drawn);
without it the core Helvetica prints them transliterated to Latin-1.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import segno

from civicard.identity.credentials import format_handle
from civicard.shared.errors import InvalidInput

if TYPE_CHECKING:  # fpdf takes ~0.5 s to import: loaded when a card is printed, not by every command
    from fpdf import FPDF

CARD_W, CARD_H = 85.6, 54.0  # ISO/IEC 7810 ID-1 (CR80), millimetres
MARGIN = 4.0
QR_AREA = 35.0  # side of the QR with its quiet zone
QUIET_ZONE = 4  # modules, ISO/IEC 18004
MIN_MODULE_MM = 0.5
MAX_QR_VERSION = 9
PHOTO_W, PHOTO_H = 20.0, 25.0
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/local/share/fonts"))
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}


@dataclass(frozen=True)
class CardFace:
    """What one printed card shows. `photo` is PNG or JPEG bytes; without it a labelled box is drawn."""

    name: str
    handle: str
    token: str
    expires_on: date | None = None
    photo: bytes | None = None


def card_qr(token: str) -> segno.QRCode:
    """The token's QR at level Q; refuses a token that would need a version above 9."""
    qr = segno.make_qr(token, error="q", mode="alphanumeric", boost_error=False)
    if not isinstance(qr.version, int) or qr.version > MAX_QR_VERSION:
        raise InvalidInput("card_qr_too_large", f"The card code needs QR version {qr.version}; at most 9 fits a card.")
    return qr


def module_mm(qr: segno.QRCode) -> float:
    width, _ = qr.symbol_size(scale=1, border=QUIET_ZONE)
    return QR_AREA / width


def render_card(face: CardFace) -> bytes:
    return render_cards([face])


def render_cards(faces: Iterable[CardFace]) -> bytes:
    """One PDF, one card per page, for a batch at the printer."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format=(CARD_H, CARD_W))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.c_margin = 0
    pdf.set_creator("civicard")
    fonts = _register_fonts(pdf)
    count = 0
    for face in faces:
        pdf.add_page()
        _draw_card(pdf, face, fonts)
        count += 1
    if count == 0:
        raise InvalidInput("no_cards", "There are no cards to print.")
    return bytes(pdf.output())


@dataclass(frozen=True)
class _Fonts:
    sans: str
    mono: str
    unicode: bool

    def text(self, value: str) -> str:
        return value if self.unicode else "".join(map(_latin_1, value))


_NO_DECOMPOSITION = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Œ": "OE", "œ": "oe", "ı": "i", "Ŀ": "L", "ŀ": "l"}


def _latin_1(char: str) -> str:
    """A character the core fonts can print: itself, its base letter (ő → o), or '?'."""
    if ord(char) < 256:
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and all(ord(c) < 256 for c in base):
        return base
    return _NO_DECOMPOSITION.get(char, "?")


@cache
def _font_paths() -> dict[str, Path] | None:
    for folder in FONT_DIRS:
        paths = {style: folder / name for style, name in FONT_FILES.items()}
        if all(path.is_file() for path in paths.values()):
            return paths
    return None


def _register_fonts(pdf: FPDF) -> _Fonts:
    paths = _font_paths()
    if paths is None:
        return _Fonts("helvetica", "courier", unicode=False)
    pdf.add_font("dejavu", "", str(paths[""]))
    pdf.add_font("dejavu", "B", str(paths["B"]))
    pdf.add_font("dejavu-mono", "", str(paths["mono"]))
    return _Fonts("dejavu", "dejavu-mono", unicode=True)


def _draw_card(pdf: FPDF, face: CardFace, fonts: _Fonts) -> None:
    pdf.set_draw_color(160)
    pdf.set_line_width(0.2)
    pdf.rect(0.3, 0.3, CARD_W - 0.6, CARD_H - 0.6, round_corners=True, corner_radius=3)  # cut guide
    pdf.set_text_color(0)
    pdf.set_font(fonts.sans, "B", 9)
    pdf.text(MARGIN, MARGIN + 3, "civicard")
    _draw_photo(pdf, face.photo, fonts)
    if face.expires_on is not None:
        pdf.set_font(fonts.sans, "", 6)
        pdf.text(MARGIN + PHOTO_W + 2, 14, "valid until")
        pdf.set_font(fonts.sans, "B", 7)
        pdf.text(MARGIN + PHOTO_W + 2, 17.5, face.expires_on.isoformat())
    _draw_name(pdf, fonts.text(face.name), fonts.sans)
    pdf.set_font(fonts.mono, "", 10)
    pdf.text(MARGIN, CARD_H - MARGIN - 0.5, format_handle(face.handle))
    _draw_qr(pdf, card_qr(face.token), CARD_W - QR_AREA - 1.0, (CARD_H - QR_AREA) / 2)


def _draw_photo(pdf: FPDF, photo: bytes | None, fonts: _Fonts) -> None:
    top = MARGIN + 5
    if photo is not None:
        pdf.image(io.BytesIO(photo), MARGIN, top, PHOTO_W, PHOTO_H, keep_aspect_ratio=True)
        return
    pdf.set_draw_color(120)
    pdf.rect(MARGIN, top, PHOTO_W, PHOTO_H)
    pdf.set_font(fonts.sans, "", 6)
    pdf.set_xy(MARGIN, top + PHOTO_H / 2 - 2)
    pdf.cell(PHOTO_W, 4, "PHOTO", align="C")


def _draw_name(pdf: FPDF, name: str, family: str) -> None:
    """Largest size from 11 pt down to 7 pt that fits one line; otherwise two lines at 7 pt."""
    width, top = CARD_W - QR_AREA - 1.0 - MARGIN - 1.0, MARGIN + 5 + PHOTO_H + 1.5
    for size in range(11, 6, -1):
        pdf.set_font(family, "B", size)
        if pdf.get_string_width(name) <= width:
            pdf.set_xy(MARGIN, top)
            pdf.cell(width, size * 0.45, name)
            return
    pdf.set_xy(MARGIN, top)
    pdf.multi_cell(width, 3.0, name, max_line_height=3.0)


def _draw_qr(pdf: FPDF, qr: segno.QRCode, left: float, top: float) -> None:
    module = module_mm(qr)
    if module < MIN_MODULE_MM:
        raise InvalidInput("card_qr_too_small", f"A QR module would be {module:.2f} mm; at least 0.5 mm is needed.")
    pdf.set_fill_color(0)
    origin_x, origin_y = left + QUIET_ZONE * module, top + QUIET_ZONE * module
    for row, (start, length) in _dark_runs(qr):
        # a hair of overlap between rows so renderers leave no light seams inside dark areas
        pdf.rect(origin_x + start * module, origin_y + row * module, length * module, module + 0.01, style="F")


def _dark_runs(qr: segno.QRCode) -> Iterator[tuple[int, tuple[int, int]]]:
    """(row, (first column, length)) for each horizontal run of dark modules."""
    for row, line in enumerate(qr.matrix):
        start = None
        for col, dark in enumerate([*line, 0]):
            if dark and start is None:
                start = col
            elif not dark and start is not None:
                yield row, (start, col - start)
                start = None

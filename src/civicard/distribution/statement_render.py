"""A vendor statement as CSV (one row per ledger line, amounts in minor units) and as a PDF.

Both carry what the statement carries and nothing more: transaction ids, times, outlets, items,
quantities, prices, subsidies and the vendor's own pseudonym of each card holder.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from civicard.distribution.settlement import Statement

if TYPE_CHECKING:  # fpdf takes ~0.5 s to import: loaded when a PDF is drawn
    from fpdf import FPDF

CSV_COLUMNS = (
    "transaction_id",
    "sold_at_utc",
    "outlet_id",
    "outlet_name",
    "item_code",
    "quantity",
    "reference_price_minor",
    "subsidized_price_minor",
    "subsidy_minor",
    "channel",
    "holder_pseudonym",
)


def money(minor: int) -> str:
    """Minor units as a decimal amount: 12345 → '123.45'."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def statement_csv(statement: Statement) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in statement.lines:
        writer.writerow(
            [
                line.transaction_id,
                line.sold_at.isoformat(timespec="seconds"),
                line.outlet_id,
                line.outlet_name,
                line.item_code,
                line.quantity,
                line.reference_price_minor,
                line.subsidized_price_minor,
                line.subsidy_minor,
                line.channel,
                line.holder,
            ]
        )
    return buffer.getvalue()


def _latin1(text: str) -> str:
    """The PDF's core fonts print Latin-1; anything else becomes '?' (names here are vendors' own)."""
    return text.encode("latin-1", "replace").decode("latin-1")


def statement_pdf(statement: Statement) -> bytes:
    """An A4 statement: header, the total owed, subtotals per outlet and item, then every line."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, _latin1(f"Subsidy statement {statement.period}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    status = statement.period_status
    if statement.settled is not None:
        status += f", settled {statement.settled.settled_at:%Y-%m-%d %H:%M} UTC by {statement.settled.settled_by}"
    for text in (
        f"Vendor: {statement.vendor_name} (tax id {statement.tax_id})",
        f"Vendor id: {statement.vendor_id}",
        f"Period: {statement.period} ({status})",
        f"Redemptions: {statement.total.redemptions}   Lines: {statement.total.lines}",
        f"Ledger SHA-256: {statement.total.ledger_sha256}",
    ):
        pdf.cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 9, f"Subsidy owed: {money(statement.total.subsidy_minor)}", new_x="LMARGIN", new_y="NEXT")
    _table(
        pdf,
        "Per outlet and item",
        ("outlet", "item", "sales", "quantity", "subsidy"),
        (70, 50, 20, 20, 30),
        [
            (s.outlet_name, s.item_code or "", str(s.redemptions), str(s.quantity), money(s.subsidy_minor))
            for s in statement.by_outlet_item
        ]
        + [
            (f"{s.outlet_name} - total", "", str(s.redemptions), str(s.quantity), money(s.subsidy_minor))
            for s in statement.by_outlet
        ],
    )
    _table(
        pdf,
        "Reconciliation: every redemption behind the total",
        ("time (UTC)", "transaction", "outlet", "item", "qty", "ref.", "paid", "subsidy", "holder"),
        (24, 22, 28, 30, 9, 15, 15, 17, 30),
        [
            (
                f"{line.sold_at:%m-%d %H:%M}",
                line.transaction_id[:12],
                line.outlet_name,
                line.item_code,
                str(line.quantity),
                money(line.reference_price_minor),
                money(line.subsidized_price_minor),
                money(line.subsidy_minor),
                line.holder[:14],
            )
            for line in statement.lines
        ],
    )
    return bytes(pdf.output())


def _table(
    pdf: FPDF, title: str, headings: tuple[str, ...], widths: tuple[int, ...], rows: Sequence[Sequence[str]]
) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 8)
    for heading, width in zip(headings, widths, strict=True):
        pdf.cell(width, 5, heading, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)
    if not rows:
        pdf.cell(0, 5, "(none)", new_x="LMARGIN", new_y="NEXT")
    for row in rows:
        for value, width in zip(row, widths, strict=True):
            shown = _latin1(value)
            while shown and pdf.get_string_width(shown) > width - 1:
                shown = shown[:-1]
            pdf.cell(width, 5, shown)
        pdf.ln()

"""The public transparency page and the oversight exclusion report page.

/transparency needs no sign-in: the published rule versions (from the register, which holds no
personal data), the latest signed checkpoint of the access log, and the public statistics
(aggregates suppressed by programs/statistics.py, read under a logged system context), as tables
and as server-rendered SVG bar charts. /oversight/exclusions is for oversight staff: the per-outlet
exclusion report of distribution/exclusion.py under the purpose `settlement`, one period at a time
(a period is not personal data, so it travels in the query string).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.api.transparency_routes import read_public_statistics
from civicard.adapters.backup import publish_checkpoint
from civicard.adapters.db import log_store
from civicard.adapters.db.register_store import RegisteredVersion, SqlProgramRegister
from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
from civicard.adapters.db.statistics_store import opened_periods
from civicard.adapters.web.i18n import N_, gettext, translated, use_request_locale
from civicard.adapters.web.pages import render, render_error, session_of, staff_context
from civicard.adapters.web.program_pages import Bar, Chart, ChartGroup, region_label
from civicard.distribution.exclusion import exclusion_report
from civicard.programs.publishing import SUPPRESSED
from civicard.programs.statistics import Cell, Line, ProgramStatistics
from civicard.shared.errors import DomainError, Forbidden
from civicard.transparency.checkpoints import parse_note

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
OVERSIGHT = "oversight"
SETTLEMENT = "settlement"
PUBLIC = ("published", "retired")
HOUSEHOLD_SERIES = ((N_("elegibles"), "#0b5cad"), (N_("con derecho a artículos"), "#1a7f37"))  # (msgid, colour)
ITEM_SERIES = ((N_("cantidad (regiones mostradas)"), "#8a5300"),)
REFUSAL_LABELS = {  # a refusal code → its exclusion-report column header
    "pin_wrong": N_("PIN incorrecto"),
    "pin_locked": N_("PIN bloqueado"),
    "pin_not_set": N_("sin PIN"),
    "not_entitled": N_("sin derecho"),
    "unknown_card": N_("tarjeta desconocida"),
    "card_revoked": N_("tarjeta revocada"),
    "card_expired": N_("tarjeta vencida"),
    "period_closed": N_("periodo cerrado"),
    "photo_not_checked": N_("foto no comprobada"),
}
_LABEL_W, _BAR_MAX, _BAR_H, _GAP, _GROUP_GAP, _TOP = 170, 360, 14, 3, 16, 34


# --- the published rule versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedVersion:
    version: RegisteredVersion
    valid_to: date | None  # the last day it applies; None while no later version or retirement ends it
    in_force: bool  # the version a cycle would apply today


def published_versions(versions: Sequence[RegisteredVersion], in_force: set[str]) -> list[PublishedVersion]:
    """Published and retired versions with the days they apply: a published version until the day
    before the next published version of its program takes effect; a retired one also ends when retired.
    `in_force`: ids of the versions a cycle applies today (the register's `in_force`)."""
    shown = [v for v in versions if v.status in PUBLIC]
    published = [v for v in shown if v.status == "published"]
    found = []
    for v in shown:
        successors = [
            w.effective_from for w in published if w.program == v.program and w.effective_from > v.effective_from
        ]
        ends = [min(successors) - timedelta(days=1)] if successors else []
        if v.status == "retired" and v.retired_at is not None:
            ends.append(v.retired_at.date())
        found.append(PublishedVersion(v, min(ends) if ends else None, v.id in in_force))
    return found


# --- the latest signed checkpoint --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointView:
    tree_size: int
    root_hash: str  # base64, as in the note
    root_hash_hex: str
    signed_at: datetime
    key_id: str
    signatures: tuple[tuple[str, str], ...]  # (key name, base64 of key id ‖ signature)
    note: str


def checkpoint_view(app: App) -> CheckpointView | None:
    with app.engine.connect() as conn:
        latest = log_store.latest_checkpoint(conn)
    if latest is None:
        return None
    publish_checkpoint(app, latest.note)
    signed = parse_note(latest.note)
    return CheckpointView(
        tree_size=latest.tree_size,
        root_hash=base64.b64encode(latest.root_hash).decode(),
        root_hash_hex=latest.root_hash.hex(),
        signed_at=latest.signed_at,
        key_id=latest.key_id,
        signatures=tuple((s.name, base64.b64encode(s.key_id + s.signature).decode()) for s in signed.signatures),
        note=latest.note,
    )


# --- statistics as tables and charts ----------------------------------------------------------------


def bar_chart(groups: Sequence[tuple[str, Sequence[Cell]]], series: Sequence[tuple[str, str]]) -> Chart:
    """Horizontal bars, one group per label and one bar per series, on one scale (the impact preview's
    layout); a suppressed cell gets no bar, only its "<10". `series`: (marked name, colour); the bars
    and the legend are named in the current locale."""
    named = [(gettext(name), colour) for name, colour in series]
    numbers = [v for _, values in groups for v in values if isinstance(v, int)]
    scale = _BAR_MAX / max([*numbers, 1])
    built, y = [], float(_TOP)
    for label, values in groups:
        bars = []
        for index, ((name, colour), value) in enumerate(zip(named, values, strict=True)):
            width = value * scale if isinstance(value, int) else 0.0
            bars.append(Bar(name, colour, value, y + index * (_BAR_H + _GAP), round(width, 1)))
        built.append(ChartGroup(label, y, tuple(bars)))
        y += len(named) * (_BAR_H + _GAP) + _GROUP_GAP
    legend, x = [], 8
    for name, colour in named:
        legend.append((name, colour, x))
        x += 16 + 7 * len(name) + 18  # swatch, text at about 7 px a character, gap
    return Chart(max(_LABEL_W + _BAR_MAX + 70, x), int(y), _LABEL_W, _BAR_H, tuple(built), tuple(legend))


def _line_total(line: Line) -> Cell:
    """A line's total for a chart: the shown cells' sum, or "<10" when every region is suppressed."""
    return SUPPRESSED if line.total_shown == 0 and line.hidden_regions else line.total_shown


@dataclass(frozen=True)
class ProgramView:
    stats: ProgramStatistics
    title: dict[str, str] | None
    regions: tuple[tuple[str, str], ...]  # (code, label)
    households_chart: Chart
    items_chart: Chart | None


def program_view(stats: ProgramStatistics, title: dict[str, str] | None) -> ProgramView:
    regions = tuple((code, region_label(code)) for code in stats.regions)
    if stats.items:
        households = bar_chart(
            [(label, (stats.eligible.cells[code], stats.entitled.cells[code])) for code, label in regions],
            HOUSEHOLD_SERIES,
        )
    else:  # a money-only program entitles nobody to items: its second bar would always be empty
        households = bar_chart(
            [(label, (stats.eligible.cells[code],)) for code, label in regions], HOUSEHOLD_SERIES[:1]
        )
    items = bar_chart([(item, (_line_total(line),)) for item, line in stats.items], ITEM_SERIES)
    return ProgramView(stats, title, regions, households, items if stats.items else None)


@router.get("/transparency", response_model=None)
def transparency_page(request: Request, app: App) -> Response:
    with app.engine.connect() as conn:
        register = SqlProgramRegister(conn)
        versions, items = register.all(), {i["code"]: i for i in register.items()}
        in_force = {v.id for v in register.in_force(app.clock.today())}
    published = published_versions(versions, in_force)
    titles = {p.version.program: p.version.title for p in published}
    found = read_public_statistics(app)
    return render(
        request,
        "transparency.html",
        session=session_of(request, app),
        versions=published,
        checkpoint=checkpoint_view(app),
        statistics=found,
        programs=[program_view(p, titles.get(p.program)) for p in found.programs],
        items=items,
        suppressed=SUPPRESSED,
    )


# --- the exclusion report ----------------------------------------------------------------------------


@router.get("/oversight/exclusions", response_model=None)
def exclusions_page(request: Request, app: App, period: Annotated[str, Query(max_length=7)] = "") -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    with app.engine.connect() as conn:
        periods = opened_periods(conn)
    chosen = period or (periods[0] if periods else "")
    labels = translated(REFUSAL_LABELS)
    page: dict[str, Any] = {"session": session, "periods": periods, "period": chosen, "labels": labels}
    try:
        if session.principal.role != OVERSIGHT:
            raise Forbidden("oversight_only", "Only oversight staff may read the exclusion report.")
        if not chosen:
            return render(request, "exclusions.html", report=None, **page)
        with SqlSettlementUnitOfWork(app.engine, staff_context(session, SETTLEMENT), app.clock) as uow:
            report = exclusion_report(uow, chosen)
    except DomainError as exc:
        return render_error(request, "exclusions.html", exc, report=None, **page)
    return render(request, "exclusions.html", report=report, **page)

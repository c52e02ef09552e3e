"""The resident's download of everything held about them: GET /me/download.json and /me/download.pdf.

Read through the same services as the portal pages, under `self_access`, so the download is in
the resident's access log like any view: their record (my_record), every version of their facts
(and their household's property), the household's decisions with reasons and entitlements
(my_decisions), each period's benefits and redemptions (my_benefits), their cards' status (never
the handle or PIN), appeals, correction requests, and their access-log entries. Other members
appear only as the portal shows them: a name and an age.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db import log_store
from civicard.adapters.db import tables as t
from civicard.adapters.db.resident_store import SqlResidentUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, use_request_locale
from civicard.adapters.web.resident_pages import resident_session
from civicard.distribution.household_ledger import my_benefits
from civicard.programs import appeals
from civicard.registry.correction_requests import my_correction_requests
from civicard.registry.facts import FACT_KINDS
from civicard.registry.self_service import FACT_CATEGORIES, SELF_ACCESS, my_record
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext, Subject, disclose
from civicard.transparency.log_entries import plain_entry

if TYPE_CHECKING:  # fpdf takes ~0.5 s to import: loaded when a PDF is drawn
    from fpdf import FPDF

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
SECTIONS = {
    "person": N_("Sus datos de identidad"),
    "household": N_("Su hogar y sus miembros"),
    "facts": N_("Datos registrados, con su historial"),
    "decisions": N_("Decisiones y sus motivos"),
    "benefits": N_("Derechos y canjes por periodo"),
    "cards": N_("Tarjetas"),
    "appeals": N_("Recursos"),
    "correction_requests": N_("Solicitudes de corrección"),
    "access_log": N_("Quién consultó sus datos"),
}
_MAX_PERIODS = 36  # three years of monthly benefit periods


def everything_held(app: App, person_id: str, actor: AccessContext) -> dict[str, Any]:
    """Everything held about the resident as plain JSON-ready data; each read is logged."""
    with SqlResidentUnitOfWork(app.engine, actor, app.clock) as uow:
        record = my_record(uow, person_id)
        disclose(
            uow.access_log, uow.context, [Subject.person(person_id)], FACT_CATEGORIES, "self.download", uow.clock.now()
        )
        household_id = record.membership.household_id if record.membership else None
        facts: dict[str, list[Any]] = {}
        for kind in FACT_KINDS.values():
            subject = person_id if kind.subject == "person" else household_id
            if subject is not None:
                versions = uow.facts.of_subjects(kind.name, [subject])
                facts[kind.name] = sorted(versions, key=lambda v: (v.valid_from, v.recorded_at))
        c = t.cards
        cards = uow.connection.execute(
            sa.select(c.c.status, c.c.status_reason, c.c.issued_at, c.c.expires_at, c.c.status_changed_at)
            .where(c.c.person_id == person_id)
            .order_by(c.c.issued_at)
        ).all()
        uow.commit()
        corrections = my_correction_requests(uow, person_id)
        decisions = appeals.my_decisions(uow, person_id)
        latest = my_benefits(uow, person_id)
        benefits = [latest] + [
            my_benefits(uow, person_id, p) for p in latest.periods[:_MAX_PERIODS] if p != latest.period
        ]
        log = log_store.resident_log(uow, person_id)
    return {
        "person_id": person_id,
        "person": [_plain(d) for d in record.identity],
        "household": {
            "household": _plain(record.household),
            "membership": _plain(record.membership),
            "members": [_plain(h) for h in record.housemates],
        },
        "facts": _plain(facts),
        "decisions": [_plain(v) for v in decisions.decisions],
        "benefits": [_plain(b) for b in benefits],
        "cards": [{k: _plain(v) for k, v in r._mapping.items()} for r in cards],
        "appeals": [_plain(a) for a in decisions.appeals],
        "correction_requests": [_plain(r) for r in corrections],
        "access_log": [plain_entry(e.entry) | {"leaf_index": e.leaf_index} for e in log.entries],
    }


def _plain(value: Any) -> Any:
    """Dataclasses, mappings, dates and enums as JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _held(request: Request, app: App) -> dict[str, Any] | Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    try:
        return everything_held(app, me.id, AccessContext(me.actor(), SELF_ACCESS))
    except DomainError as exc:
        return Response(f"{exc.message} ({exc.code})\n", status_code=409, media_type="text/plain; charset=utf-8")


@router.get("/me/download.json", response_model=None)
def download_json(request: Request, app: App) -> Response:
    held = _held(request, app)
    if isinstance(held, Response):
        return held
    body = json.dumps(held, ensure_ascii=False, indent=2, sort_keys=True)
    return Response(body, media_type="application/json", headers=_attachment("mis-datos.json"))


@router.get("/me/download.pdf", response_model=None)
def download_pdf(request: Request, app: App) -> Response:
    held = _held(request, app)
    if isinstance(held, Response):
        return held
    return Response(held_pdf(held), media_type="application/pdf", headers=_attachment("mis-datos.pdf"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def held_pdf(held: Mapping[str, Any]) -> bytes:
    """The same data as the JSON, one section per heading (Spanish through the i18n gettext)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    _line(pdf, 8, gettext("Todo lo que civicard guarda sobre usted"))
    pdf.set_font("Helvetica", "", 9)
    _line(pdf, 5, gettext("Identificador: %(id)s") % {"id": held["person_id"]})
    for key, heading in SECTIONS.items():
        _section(pdf, gettext(heading), held.get(key))
    return bytes(pdf.output())


def _section(pdf: FPDF, heading: str, data: Any) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    _line(pdf, 7, heading)
    pdf.set_font("Helvetica", "", 7)
    items = list(data.items()) if isinstance(data, Mapping) else list(data or [])
    if not items:
        _line(pdf, 4, gettext("Nada registrado."))
    for item in items:
        text = json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
        _line(pdf, 4, text)
        pdf.ln(1)


def _line(pdf: FPDF, height: float, text: str) -> None:
    """A paragraph from the left margin; long hashes and ids break anywhere."""
    from fpdf.enums import WrapMode, XPos, YPos

    pdf.multi_cell(0, height, _latin1(text), wrapmode=WrapMode.CHAR, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _latin1(text: str) -> str:
    """The PDF's core fonts print Latin-1 (Spanish included); anything else becomes '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")

"""The resident's pages: sign-in by card handle + PIN, "who read my data" with verified marks,
"my data" (everything the registry holds about them, by category) and "my benefits" (this
period's entitlements and the household's redemptions from the ledger).

The log page verifies every entry on the server against the signed checkpoint (inclusion proof,
the resident's hash chain) and offers each entry's proof bundle for offline checking. The data
and benefits pages read through the enforcement point under `self_access`: each view is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.api.session_routes import client_address
from civicard.adapters.db import log_store
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.fallback_store import TerminalOutlet, terminal_outlets
from civicard.adapters.db.life_event_store import SqlLifeEventUnitOfWork
from civicard.adapters.db.resident_store import SqlResidentUnitOfWork
from civicard.adapters.web.i18n import N_, current_locale, gettext, localized, translated, use_request_locale
from civicard.adapters.web.life_event_pages import events_shown
from civicard.adapters.web.pages import render, render_error, session_of, with_session_cookie
from civicard.distribution.household_ledger import my_benefits
from civicard.identity.staff import StaffAccount
from civicard.registry.allowlist import ColumnSpec, allow_list
from civicard.registry.facts import FACT_KINDS
from civicard.registry.life_events import events_about_person
from civicard.registry.model import FactVersion
from civicard.registry.self_service import SELF_ACCESS, IdentityDetail, Recorder, my_record
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext, purpose_policy
from civicard.transparency.proofs import verify_resident_log

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
FALLBACK_DETAIL = "redemption.fallback "
FALLBACK_NOTE = N_("sin PIN, foto verificada, con supervisor")
IDENTITY_LABELS = {
    "given_names": N_("Nombres"),
    "first_surname": N_("Primer apellido"),
    "second_surname": N_("Segundo apellido"),
    "birth_date": N_("Fecha de nacimiento"),
    "birth_place": N_("Lugar de nacimiento"),
    "sex": N_("Sexo"),
    "national_id": N_("Documento de identidad"),
    "address_line": N_("Dirección"),
    "municipality": N_("Municipio"),
    "region": N_("Región"),
    "postcode": N_("Código postal"),
    "phone": N_("Teléfono"),
}
FACT_LABELS = {
    "employment": N_("Situación laboral"),
    "incomes": N_("Ingreso"),
    "properties": N_("Bien"),
    "health_needs": N_("Necesidad de salud"),
    "benefits_received": N_("Prestación"),
}
ROLE_LABELS = {
    "registrar": N_("registro"),
    "reviewer": N_("revisión"),
    "program_admin": N_("administración de programas"),
    "oversight": N_("supervisión"),
    "vendor": N_("comercio"),
    "system": N_("proceso automático"),
}
CHANNEL_LABELS = {
    "online": N_("en línea, con PIN"),
    "offline": N_("sin conexión, recibo sincronizado"),
    "fallback": FALLBACK_NOTE,
}


@router.get("/me", response_class=HTMLResponse)
def resident_sign_in_page(request: Request) -> HTMLResponse:
    return render(request, "resident_signin.html", handle="")


@router.post("/me/signin", response_model=None)
def resident_sign_in(
    request: Request,
    app: App,
    handle: Annotated[str, Form(max_length=20)] = "",
    pin: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    try:
        signed = app.resident_sign_in.open_session(handle, pin, client_address(request))
    except DomainError as exc:
        return render_error(request, "resident_signin.html", exc, handle=handle)
    return with_session_cookie(request, RedirectResponse("/me/log", status_code=303), signed)


@router.get("/me/log", response_model=None)
def my_log(request: Request, app: App) -> Response:
    session = session_of(request, app)
    if session is None or session.principal.kind != "resident":
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    with app.uow(AccessContext(me.actor(), "self_access")) as uow:
        log = log_store.resident_log(uow, me.id)
        terminals = {e.entry.actor for e in log.entries if e.entry.role == "vendor"}
        outlets = terminal_outlets(uow.connection, terminals)
    verification = verify_resident_log(log, app.log_signer.verifier)
    verdicts = {v.seq: v for v in verification.entries}
    staff = {a.id: a for a in app.auth.list_staff_accounts()}
    rows = [
        {
            "entry": e.entry,
            "leaf_index": e.leaf_index,
            "verdict": verdicts.get(e.entry.seq),
            "who": _who(e.entry.actor, e.entry.role, me.id, staff, outlets, e.entry.detail),
        }
        for e in reversed(log.entries)
    ]
    return render(
        request,
        "resident_log.html",
        session=session,
        rows=rows,
        verification=verification,
        checkpoint=log.checkpoint,
        purposes=purpose_policy().described(current_locale()),
    )


def _who(
    actor: str,
    role: str,
    me: str,
    staff: Mapping[str, StaffAccount],
    outlets: Mapping[str, TerminalOutlet],
    detail: str = "",
) -> str:
    """A person reads 'Tienda La Esquina (vendor)', not a terminal id; staff by their display name.
    A sale without PIN says so, since the holder did not type it."""
    if actor == me or (role == "resident" and actor.startswith("card:")):  # signing in with their own card
        return gettext("Usted")
    outlet = outlets.get(actor) if role == "vendor" else None
    if outlet is not None:
        served = f" — {gettext(FALLBACK_NOTE)}" if detail.startswith(FALLBACK_DETAIL) else ""
        return f"{outlet.label} ({role}){served}"
    account = staff.get(actor)
    return f"{account.display_name} ({role})" if account else f"{actor} ({role})"


def resident_session(request: Request, app: App) -> ActiveSession | None:
    """The signed-in resident's session, or None (the caller sends them to sign in)."""
    session = session_of(request, app)
    return session if session is not None and session.principal.kind == "resident" else None


@router.get("/me/data", response_model=None)
def my_data(request: Request, app: App) -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    try:
        with SqlResidentUnitOfWork(app.engine, AccessContext(me.actor(), SELF_ACCESS), app.clock) as uow:
            record = my_record(uow, me.id)
        with SqlLifeEventUnitOfWork(app.engine, AccessContext(me.actor(), SELF_ACCESS), app.clock) as events_uow:
            life_events = events_shown(events_about_person(events_uow, me.id), me.id)
    except DomainError as exc:
        return render_error(request, "me_data.html", exc, session=session, record=None)

    def by(actor: str) -> str:
        return _recorded_by(actor, record.recorders)

    membership, household = record.membership, record.household
    relationships = vocabulary().labels("relationships")
    return render(
        request,
        "me_data.html",
        session=session,
        record=record,
        identity=[_identity_row(d, by(d.recorded_by)) for d in record.identity],
        facts={category: [_fact_row(f, by(f.recorded_by)) for f in found] for category, found in record.facts.items()},
        categories=allow_list().categories,
        relationship=localized(relationships[membership.relationship]) if membership else "",
        place=_place(household.municipality, household.region) if household else "",
        membership_by=by(membership.recorded_by) if membership else "",
        household_by=by(household.created_by) if household else "",
        life_events=life_events,
    )


@router.get("/me/benefits", response_model=None)
def my_benefits_page(request: Request, app: App, period: Annotated[str, Query(max_length=7)] = "") -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    page: dict[str, Any] = {"session": session, "channels": translated(CHANNEL_LABELS)}
    try:
        with SqlResidentUnitOfWork(app.engine, AccessContext(me.actor(), SELF_ACCESS), app.clock) as uow:
            mine = my_benefits(uow, me.id, period or None)
    except DomainError as exc:
        return render_error(request, "me_benefits.html", exc, mine=None, **page)
    return render(request, "me_benefits.html", mine=mine, **page)


def _recorded_by(actor: str, recorders: Mapping[str, Recorder]) -> str:
    """'Rosa Registradora (registro)' for staff; the role alone for a process or an import."""
    found = recorders.get(actor)
    if found is None or not found.role:
        return actor
    role = gettext(ROLE_LABELS[found.role]) if found.role in ROLE_LABELS else found.role
    return f"{found.name} ({role})" if found.name != actor else role


def _place(municipality: str, region: str) -> str:
    labels = vocabulary().labels
    town = labels("municipalities").get(municipality)
    area = labels("regions").get(region)
    return ", ".join(localized(x) for x in (town, area) if x)


def _identity_row(detail: IdentityDetail, by: str) -> dict[str, Any]:
    return {
        "name": detail.name,
        "label": gettext(IDENTITY_LABELS[detail.name]),
        "value": _shown(allow_list().column("persons", detail.name), detail.value) or "—",
        "recorded_at": detail.recorded_at,
        "by": by,
        "corrected": detail.corrected,
    }


def _fact_row(fact: FactVersion, by: str) -> dict[str, Any]:
    """How one fact reads: what (kind and key, in words), its value, since when, recorded when and by whom."""
    kind = FACT_KINDS[fact.kind]
    what = gettext(FACT_LABELS[fact.kind])
    keys = " · ".join(_shown(kind.column(k), fact.key.get(k)) for k in kind.keys)
    values = (_shown(kind.column(v), fact.values.get(v)) for v in kind.values)
    return {
        "id": fact.id,
        "kind": fact.kind,
        "what": f"{what}: {keys}" if keys else what,
        "value": "; ".join(v for v in values if v),
        "valid_from": fact.valid_from,
        "recorded_at": fact.recorded_at,
        "by": by,
        "corrected": fact.supersedes_id is not None,
    }


def _shown(column: ColumnSpec, value: Any) -> str:
    """A stored value in words: codes by their label, money in units, dates as YYYY-MM-DD."""
    if value is None or value == "":
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if column.type == "code" and column.codes:
        label = vocabulary().labels(column.codes).get(value)
        return localized(label) if label else str(value)
    if column.type == "money":
        amount = f"{value / 100:,.2f}"
        return gettext("%(amount)s al mes") % {"amount": amount} if "month" in (column.unit or "") else amount
    if column.type == "integer":
        return gettext("grado %(percent)s %%") % {"percent": value}
    if column.type == "boolean":
        return gettext("vigente") if value else gettext("ya no está vigente")
    return str(value)

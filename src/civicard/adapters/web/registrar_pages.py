"""The registrar's desk work reached from the household page: record and correct need-related
facts (purpose `fact_correction`) here, and look after a member's card (purpose `card_service`)
in `registrar_card_pages`, whose routes this router includes.

Every handler opens a unit of work with the clerk's AccessContext and a fixed purpose and calls
the same services as /v1, so the enforcement point logs each read and write. After a fact
changes, the household is decided again in its open periods, as the API does (FactOut.redecided),
and the page says how many decisions that re-evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, localized, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.adapters.web.registrar_card_pages import router as card_router
from civicard.programs.reevaluation import redecide_after_fact
from civicard.registry import lookup, recording
from civicard.registry.allowlist import ColumnSpec
from civicard.registry.facts import FACT_KINDS, FactKind, fact_kind
from civicard.registry.model import FactVersion, HouseholdRecord
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import DomainError, InvalidInput, NotFound
from civicard.shared.ids import is_id

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
router.include_router(card_router)
FACT_CORRECTION = "fact_correction"
_AMOUNT = re.compile(r"[0-9]{1,12}(?:[.,][0-9]{1,2})?")
_COLUMN_FIELDS = {f"key_{n}" for k in FACT_KINDS.values() for n in k.keys} | {
    f"value_{n}" for k in FACT_KINDS.values() for n in k.values
}
_FORM_FIELDS = ("kind", "subject_id", "valid_from", "reason", "csrf_token", *sorted(_COLUMN_FIELDS))

KIND_LABELS = {
    "employment": N_("Situación laboral"),
    "incomes": N_("Ingresos"),
    "properties": N_("Bienes del hogar"),
    "health_needs": N_("Discapacidad o enfermedad crónica"),
    "benefits_received": N_("Prestaciones recibidas"),
}
FIELD_LABELS = {
    ("employment", "status"): N_("Situación"),
    ("incomes", "source"): N_("Fuente del ingreso"),
    ("incomes", "monthly_amount_minor"): N_("Importe mensual"),
    ("properties", "kind"): N_("Tipo de bien"),
    ("properties", "value_minor"): N_("Valor estimado"),
    ("health_needs", "kind"): N_("Tipo"),
    ("health_needs", "code"): N_("Condición"),
    ("health_needs", "degree_percent"): N_("Grado reconocido (%)"),
    ("health_needs", "present"): N_("Vigente"),
    ("benefits_received", "benefit"): N_("Prestación"),
    ("benefits_received", "monthly_amount_minor"): N_("Importe mensual"),
}
OPTIONAL_VALUES = frozenset({"degree_percent"})
FACT_NOTICES = {
    "recorded": N_("Dato registrado."),
    "corrected": N_("Dato corregido; la versión anterior queda en el historial."),
}
# The codes a clerk meets most on these forms, in the page's language (others keep the service's words).
ERROR_TEXTS = {
    "csrf_failed": N_("El formulario caducó; recargue la página y vuelva a intentarlo."),
    "not_a_member": N_("Esa persona no es miembro actual de este hogar."),
    "unknown_fact": N_("Ese dato no es un dato vigente de este hogar (quizá ya se corrigió); abra de nuevo la lista."),
    "fact_already_corrected": N_("Esa versión ya se corrigió; corrija la versión vigente."),
    "no_change": N_("La corrección no cambia nada."),
    "missing_reason": N_("Escriba el motivo."),
    "invalid_date": N_("La fecha «desde» debe ser una fecha válida (AAAA-MM-DD), no anterior a 1900."),
    "invalid_amount": N_("Escriba el importe como 1250,50 o 1250.50 (sin separador de miles)."),
    "invalid_percent": N_("El grado es un número entero de 0 a 100."),
    "missing_field": N_("Falta un dato obligatorio (una discapacidad necesita su grado reconocido)."),
    "invalid_field": N_("Una enfermedad crónica no tiene grado; deje el grado vacío."),
    "unknown_condition_code": N_("La condición elegida no corresponde al tipo (discapacidad o enfermedad crónica)."),
}


@dataclass(frozen=True)
class FieldForm:
    """One input of a fact form: a key or value column, its label and choices, and what it shows."""

    name: str
    part: str  # "key" or "value"
    type: str  # the column type: code, money, integer, boolean
    label: str
    value: str
    choices: list[tuple[str, list[tuple[str, str]]]]  # (group heading or "", [(code, label)])

    @property
    def input_name(self) -> str:
        return f"{self.part}_{self.name}"

    @property
    def optional(self) -> bool:
        return self.name in OPTIONAL_VALUES


@dataclass(frozen=True)
class KindForm:
    """The form recording one kind of fact; `open` when it comes back refused, filled in."""

    kind: str
    label: str
    subject: str
    subject_id: str
    fields: list[FieldForm]
    valid_from: str
    reason: str
    open: bool


@dataclass(frozen=True)
class FactRow:
    fact: FactVersion
    kind_label: str
    subject_label: str
    key_text: str
    value_text: str


@router.get("/registrar/households/{household_id}/facts", response_model=None)
def facts_page(
    request: Request,
    app: App,
    household_id: str,
    done: Annotated[str, Query(max_length=20)] = "",
    redecided: Annotated[int | None, Query(ge=0, le=10_000)] = None,
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    if done not in FACT_NOTICES:
        return _facts(request, app, session, household_id)
    notice = gettext(FACT_NOTICES[done])
    return _facts(request, app, session, household_id, notice=notice, done=done, redecided=redecided)


@router.post("/registrar/households/{household_id}/facts", response_model=None)
async def record_fact_page(request: Request, app: App, household_id: str) -> Response:
    """Record a fact for a member or the household; the household is then decided again."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    typed = await _typed(request)
    try:
        require_csrf(session, typed.get("csrf_token", ""))
        kind = fact_kind(typed.get("kind", ""))
        key = {n: _parsed(kind.column(n), typed.get(f"key_{n}", "")) for n in kind.keys}
        values = {n: _parsed(kind.column(n), typed.get(f"value_{n}", "")) for n in kind.values}
        valid_from = _day(typed.get("valid_from", ""))
        if valid_from is None:
            raise InvalidInput("invalid_date", "valid_from is required.")
        subject_id = household_id if kind.subject == "household" else typed.get("subject_id", "")
        with app.uow(staff_context(session, FACT_CORRECTION)) as uow:
            _require_in_household(uow, kind, subject_id, household_id)
            recording.record_fact(uow, kind.name, subject_id, key, values, valid_from, typed.get("reason", ""))
            redecided = redecide_after_fact(uow, kind.name, subject_id)
    except DomainError as exc:
        return _facts(request, app, session, household_id, error=exc, typed=typed)
    return _to_facts(household_id, "recorded", redecided)


@router.get("/registrar/households/{household_id}/facts/{kind}/{version_id}", response_model=None)
def correction_page(request: Request, app: App, household_id: str, kind: str, version_id: str) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    return _correction(request, app, session, household_id, kind, version_id)


@router.post("/registrar/households/{household_id}/facts/{kind}/{version_id}", response_model=None)
async def correct_fact_page(request: Request, app: App, household_id: str, kind: str, version_id: str) -> Response:
    """Correct the version in force: a new version supersedes it (the old one stays in the history)."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    typed = await _typed(request)
    try:
        require_csrf(session, typed.get("csrf_token", ""))
        spec = fact_kind(kind)
        values = {n: _parsed(spec.column(n), typed.get(f"value_{n}", "")) for n in spec.values}
        valid_from = _day(typed.get("valid_from", ""))
        with app.uow(staff_context(session, FACT_CORRECTION)) as uow:
            old = uow.facts.get(spec.name, version_id) if is_id(version_id) else None
            if old is None:
                raise NotFound("unknown_fact", "No such fact.")
            _require_in_household(uow, spec, old.subject_id, household_id)
            recording.correct_fact(uow, spec.name, version_id, values, typed.get("reason", ""), valid_from)
            redecided = redecide_after_fact(uow, spec.name, old.subject_id)
    except DomainError as exc:
        return _correction(request, app, session, household_id, kind, version_id, error=exc, typed=typed)
    return _to_facts(household_id, "corrected", redecided)


def _facts(
    request: Request,
    app: App,
    session: ActiveSession,
    household_id: str,
    *,
    error: DomainError | None = None,
    typed: Mapping[str, str] | None = None,
    **page: Any,
) -> Response:
    context: dict[str, Any] = {"session": session, "household_id": household_id, **page}
    try:
        with app.uow(staff_context(session, FACT_CORRECTION)) as uow:
            record = lookup.get_household(uow, household_id)
    except DomainError as exc:
        return render_error(request, "registrar_facts.html", _clear(exc), record=None, **context)
    names = _names(record)
    today = app.clock.today().isoformat()
    refused_kind = (typed or {}).get("kind", "")
    context |= {
        "record": record,
        "members": [(pid, name) for pid, name in names.items() if pid != household_id],
        "rows": [_row(f, names) for f in record.facts],
        "kind_forms": [_kind_form(k, typed if k.name == refused_kind else None, today) for k in FACT_KINDS.values()],
    }
    if error is not None:
        return render_error(request, "registrar_facts.html", _clear(error), **context)
    return render(request, "registrar_facts.html", **context)


def _correction(
    request: Request,
    app: App,
    session: ActiveSession,
    household_id: str,
    kind: str,
    version_id: str,
    *,
    error: DomainError | None = None,
    typed: Mapping[str, str] | None = None,
) -> Response:
    context: dict[str, Any] = {"session": session, "household_id": household_id}
    try:
        with app.uow(staff_context(session, FACT_CORRECTION)) as uow:
            record = lookup.get_household(uow, household_id)
        fact = next((f for f in record.facts if f.kind == kind and f.id == version_id), None)
        if fact is None:
            raise NotFound("unknown_fact", "No such current fact in this household.")
    except DomainError as exc:
        return render_error(request, "registrar_fact.html", _clear(error or exc), row=None, **context)
    spec = FACT_KINDS[fact.kind]
    stored = {f"value_{n}": _shown(spec.column(n).type, fact.values.get(n)) for n in spec.values}
    shown = dict(typed) if typed else stored
    context |= {
        "row": _row(fact, _names(record)),
        "fields": _fields(spec, ("value",), shown),
        "valid_from": shown.get("valid_from", fact.valid_from.isoformat()),
        "reason": shown.get("reason", ""),
    }
    if error is not None:
        return render_error(request, "registrar_fact.html", _clear(error), **context)
    return render(request, "registrar_fact.html", **context)


def _require_in_household(uow: SqlUnitOfWork, kind: FactKind, subject_id: str, household_id: str) -> None:
    """The page acts on one household: a person's fact must be about one of its current members."""
    if kind.subject == "household":
        if subject_id != household_id:
            raise NotFound("unknown_fact", "This fact is about another household.")
        return
    membership = uow.memberships.current_of_person(subject_id) if is_id(subject_id) else None
    if membership is None or membership.household_id != household_id:
        raise NotFound("not_a_member", "This person is not a current member of the household.")


def _kind_form(kind: FactKind, typed: Mapping[str, str] | None, today: str) -> KindForm:
    shown = typed or {}
    return KindForm(
        kind=kind.name,
        label=gettext(KIND_LABELS[kind.name]),
        subject=kind.subject,
        subject_id=shown.get("subject_id", ""),
        fields=_fields(kind, ("key", "value"), shown),
        valid_from=shown.get("valid_from", today),
        reason=shown.get("reason", ""),
        open=typed is not None,
    )


def _fields(kind: FactKind, parts: tuple[str, ...], shown: Mapping[str, str]) -> list[FieldForm]:
    fields = []
    for part, names in (("key", kind.keys), ("value", kind.values)):
        for name in names if part in parts else ():
            column = kind.column(name)
            default = "true" if column.type == "boolean" else ""
            label = gettext(FIELD_LABELS.get((kind.name, name), name))
            value = shown.get(f"{part}_{name}", default)
            fields.append(FieldForm(name, part, column.type, label, value, _choices(column)))
    return fields


def _choices(column: ColumnSpec) -> list[tuple[str, list[tuple[str, str]]]]:
    if column.type != "code" or column.codes is None:
        return []
    vocab = vocabulary()
    if column.codes == "health_codes":  # grouped, so a clerk sees which codes go with which kind
        kinds = vocab.labels("health_kinds")
        return [
            (localized(kinds[k]), [(c, f"{localized(label)} ({c})") for c, label in vocab.lists[f"{k}_codes"].items()])
            for k in ("disability", "chronic")
        ]
    return [("", [(code, localized(label)) for code, label in vocab.labels(column.codes).items()])]


def _row(fact: FactVersion, names: Mapping[str, str]) -> FactRow:
    spec = FACT_KINDS[fact.kind]
    vocab = vocabulary()

    def text(name: str, value: Any) -> str:
        column = spec.column(name)
        if value is None:
            return "—"
        if column.type == "code" and column.codes:
            return localized(vocab.labels(column.codes).get(value, {"es": str(value)}))
        if column.type == "money":
            return f"{value / 100:,.2f}"
        if column.type == "boolean":
            return gettext("sí") if value else gettext("no")
        return str(value)

    values = "; ".join(f"{gettext(FIELD_LABELS.get((fact.kind, n), n))}: {text(n, v)}" for n, v in fact.values.items())
    return FactRow(
        fact=fact,
        kind_label=gettext(KIND_LABELS.get(fact.kind, fact.kind)),
        subject_label=names.get(fact.subject_id, fact.subject_id[:8]),
        key_text=" · ".join(text(n, v) for n, v in fact.key.items()),
        value_text=values,
    )


def _names(record: HouseholdRecord) -> dict[str, str]:
    """Who each fact is about: members by name (in household order), the household itself."""
    names = {m.person_id: p.full_name if p else m.person_id[:8] for m, p in record.members}
    return {**names, record.household.id: gettext("Hogar")}


def _shown(column_type: str, value: Any) -> str:
    if value is None:
        return ""
    if column_type == "money":
        return f"{value / 100:.2f}"
    if column_type == "boolean":
        return "true" if value else "false"
    return str(value)


def _parsed(column: ColumnSpec, text: str) -> Any:
    """A form value as the fact services take it: money in units → céntimos, flags, degrees, codes."""
    text = text.strip()
    if column.type == "money":
        if not _AMOUNT.fullmatch(text):
            raise InvalidInput("invalid_amount", "Write the amount in units, like 1250.50.")
        return int(Decimal(text.replace(",", ".")) * 100)
    if column.type == "boolean":
        return text != "false"
    if column.type == "integer":
        if not text:
            return None
        if not text.isdigit() or len(text) > 3:
            raise InvalidInput("invalid_percent", "The degree is a whole number from 0 to 100.")
        return int(text)
    return text


def _day(text: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput("invalid_date", "valid_from must be a date (YYYY-MM-DD).") from None


async def _typed(request: Request) -> dict[str, str]:
    """The known fields of a fact form, as typed (capped), so a refused form comes back filled in."""
    form = await request.form()
    return {name: str(form.get(name, ""))[:600] for name in _FORM_FIELDS if name in form}


def _to_facts(household_id: str, done: str, redecided: int) -> RedirectResponse:
    query = urlencode({"done": done, "redecided": redecided})
    return RedirectResponse(f"/registrar/households/{quote(household_id, safe='')}/facts?{query}", status_code=303)



def _clear(exc: DomainError) -> DomainError:
    """The refusal with its code unchanged and, where the page knows one, a message in the reader's language."""
    text = ERROR_TEXTS.get(exc.code)
    return type(exc)(exc.code, gettext(text)) if text else exc


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)

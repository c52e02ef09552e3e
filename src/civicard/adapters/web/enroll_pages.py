"""The registrar's enrollment form: enroll a person into a household, warned of possible duplicates.

While the clerk types, htmx posts the form to `/registrar/enroll/check` and shows who in the
registry may be this person, with the probability and why (each candidate shown is a logged
read). Saving with possible duplicates needs the clerk to confirm a new person; from the review
band up the person is then registered as held until a reviewer decides. Works without
JavaScript: submitting shows the same warnings.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.web.i18n import gettext, use_request_locale
from civicard.adapters.web.pages import render, render_error, session_of, staff_context
from civicard.dedup.model import REVIEW_BAND
from civicard.dedup.screening import Screening
from civicard.identity.sessions import csrf_matches
from civicard.registry import enrollment, lookup
from civicard.shared.errors import DomainError, Forbidden, InvalidInput

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
FIELDS = (
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_place",
    "sex",
    "phone",
    "national_id",
    "relationship",
)


class EnrollForm:
    """The posted form, kept as typed so a refused form comes back filled in."""

    def __init__(self, values: dict[str, str], confirmed: bool) -> None:
        self.values = values
        self.confirmed = confirmed

    def command(self, household: Any) -> enrollment.EnrollPerson:
        v = self.values
        try:
            born = date.fromisoformat(v.get("birth_date", ""))
        except ValueError:
            message = gettext("La fecha de nacimiento debe ser una fecha (AAAA-MM-DD).")
            raise InvalidInput("invalid_birth_date", message) from None
        return enrollment.EnrollPerson(
            given_names=v.get("given_names", ""),
            first_surname=v.get("first_surname", ""),
            second_surname=v.get("second_surname", ""),
            birth_date=born,
            birth_place=v.get("birth_place", ""),
            sex=v.get("sex", ""),
            address_line=household.address_line,
            municipality=household.municipality,
            postcode=household.postcode,
            phone=v.get("phone") or None,
            national_id=v.get("national_id") or None,
            household_id=household.id,
            relationship=v.get("relationship") or "other_relative",
            confirmed_new_person=self.confirmed,
        )


async def _form(request: Request) -> tuple[EnrollForm, str, str]:
    raw = await request.form()
    values = {name: str(raw.get(name, ""))[:300] for name in FIELDS}
    confirmed = raw.get("confirmed_new_person") == "yes"
    return EnrollForm(values, confirmed), str(raw.get("csrf_token", ""))[:64], str(raw.get("household_id", ""))[:32]


@router.get("/registrar/households/{household_id}/enroll", response_model=None)
def enroll_page(request: Request, app: App, household_id: str) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", 303)
    page: dict[str, Any] = {"session": session, "form": EnrollForm({}, False), "screening": None}
    try:
        with app.uow(staff_context(session, "enrollment")) as uow:
            record = lookup.get_household(uow, household_id)
    except DomainError as exc:
        return render_error(request, "enroll.html", exc, household=None, **page)
    return render(request, "enroll.html", household=record.household, review_band=REVIEW_BAND, **page)


@router.post("/registrar/enroll/check", response_model=None)
async def enroll_check(request: Request, app: App) -> Response:
    """The live duplicate warning (an htmx fragment)."""
    session = session_of(request, app)
    if session is None:
        return Response(status_code=401)
    form, token, household_id = await _form(request)
    screening: Screening | None = None
    error: DomainError | None = None
    try:
        if not csrf_matches(session.csrf_token, token):
            raise Forbidden("csrf_failed", gettext("El formulario caducó; recargue la página y vuelva a intentarlo."))
        if _complete_enough(form):
            with app.uow(staff_context(session, "enrollment")) as uow:
                household = lookup.get_household_address(uow, household_id)
                screening = enrollment.check_duplicates(uow, form.command(household), app.matcher)
    except DomainError as exc:
        error = exc
    return render(request, "_duplicates.html", screening=screening, error=error, review_band=REVIEW_BAND)


@router.post("/registrar/households/{household_id}/enroll", response_model=None)
async def enroll_submit(request: Request, app: App, household_id: str) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", 303)
    form, token, _ = await _form(request)
    page: dict[str, Any] = {"session": session, "form": form, "review_band": REVIEW_BAND, "screening": None}
    household = None
    try:
        if not csrf_matches(session.csrf_token, token):
            raise Forbidden("csrf_failed", gettext("El formulario caducó; recargue la página y vuelva a intentarlo."))
        with app.uow(staff_context(session, "enrollment")) as uow:
            household = lookup.get_household_address(uow, household_id)
            enrollment.enroll_person(uow, form.command(household), app.matcher)
    except enrollment.PossibleDuplicates as exc:
        # The refused enrollment rolled back, its reads with it: read and log what is shown again.
        with app.uow(staff_context(session, "enrollment")) as uow:
            household = lookup.get_household_address(uow, household_id)
            screening = enrollment.check_duplicates(uow, form.command(household), app.matcher)
        page["screening"] = screening
        return render_error(request, "enroll.html", exc, household=household, **page)
    except DomainError as exc:
        return render_error(request, "enroll.html", exc, household=household, **page)
    return RedirectResponse(f"/registrar/households/{household_id}", 303)


def _complete_enough(form: EnrollForm) -> bool:
    """Screen once names and a full birth date are typed; earlier warnings would only be noise."""
    v = form.values
    return bool(v.get("given_names") and v.get("first_surname") and len(v.get("birth_date", "")) == 10)

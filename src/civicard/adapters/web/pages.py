"""Server-rendered pages: sign-in, the landing page, the registrar's search and household view.

Pages read through the same services and access enforcement point as the API. Staff sign in
with a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS); every form echoes the
session's CSRF token; search terms travel in POST bodies, never in URLs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from civicard.adapters.api.access import SESSION_COOKIE, App
from civicard.adapters.api.problems import http_status
from civicard.adapters.api.session_routes import client_address
from civicard.adapters.db.auth_store import ActiveSession, SignedIn
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.demo_accounts import demo_credentials
from civicard.adapters.web import i18n
from civicard.identity.sessions import csrf_matches
from civicard.registry import lookup
from civicard.registry.vocabulary import vocabulary
from civicard.settings import Mode
from civicard.shared.errors import DomainError, Forbidden, Unauthenticated
from civicard.transparency.access import AccessContext, purpose_policy

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
i18n.install(templates.env)
router = APIRouter(include_in_schema=False, dependencies=[Depends(i18n.use_request_locale)])
router.include_router(i18n.router)
HOME_OF_ROLE = {
    "registrar": "/registrar",
    "reviewer": "/reviewer",
    "program_admin": "/programs",
    "oversight": "/oversight/exclusions",
}


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def session_of(request: Request, app: App) -> ActiveSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return app.auth.resolve_session(token)
    except Unauthenticated:
        return None


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page in the request's language (the template renders here, inside the locale)."""
    with i18n.using_locale(i18n.locale_of(request)):
        return templates.TemplateResponse(request, name, {"vocab": vocabulary(), **context}, status_code=status_code)


def render_error(request: Request, name: str, exc: DomainError, **context: Any) -> HTMLResponse:
    return render(request, name, status_code=http_status(exc)[0], error=exc, **context)


def with_session_cookie(request: Request, response: Response, signed: SignedIn) -> Response:
    """The session cookie: HttpOnly, SameSite=Strict, Secure whenever the request came over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        signed.session_token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def require_csrf(session: ActiveSession, token: str) -> None:
    """A form posted with the session's cookie must echo its CSRF token."""
    if not csrf_matches(session.csrf_token, token):
        raise Forbidden("csrf_failed", i18n.gettext("El formulario caducó; recargue la página y vuelva a intentarlo."))


def staff_context(session: ActiveSession, purpose: str) -> AccessContext:
    if session.principal.kind != "staff":
        raise Forbidden("staff_only", i18n.gettext("Estas páginas son para el personal."))
    return AccessContext(session.principal.actor(), purpose)


def _purposes(session: ActiveSession) -> dict[str, str]:
    policy = purpose_policy()
    described = policy.described(i18n.current_locale())
    return {p: described[p] for p in sorted(policy.roles.get(session.principal.role, ()))}


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


@router.get("/", response_class=HTMLResponse)
def landing(request: Request, app: App) -> HTMLResponse:
    demo = app.settings.mode is Mode.DEMO
    return render(
        request,
        "index.html",
        demo=demo,
        session=session_of(request, app),
        accounts=demo_credentials(app) if demo else [],
    )


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return render(request, "signin.html", username="")


@router.post("/signin", response_model=None)
def sign_in(
    request: Request,
    app: App,
    username: Annotated[str, Form(max_length=60)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp_code: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        signed = app.auth.sign_in(username, password, totp_code or None, client_address(request))
    except DomainError as exc:
        return render_error(request, "signin.html", exc, username=username)
    return with_session_cookie(request, RedirectResponse(HOME_OF_ROLE.get(signed.principal.role, "/"), 303), signed)


@router.post("/signout", response_model=None)
def sign_out(request: Request, app: App, csrf_token: Annotated[str, Form(max_length=64)] = "") -> Response:
    session = session_of(request, app)
    if session and csrf_matches(session.csrf_token, csrf_token):
        app.auth.sign_out(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/registrar", response_model=None)
def registrar_home(request: Request, app: App) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    return render(
        request,
        "registrar_search.html",
        session=session,
        purposes=_purposes(session),
        query="",
        results=None,
        purpose="enrollment",
    )


@router.post("/registrar/search", response_model=None)
def registrar_search(
    request: Request,
    app: App,
    q: Annotated[str, Form(max_length=200)] = "",
    purpose: Annotated[str, Form(max_length=60)] = "enrollment",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    page: dict[str, Any] = {"query": q, "purpose": purpose, "session": session, "purposes": _purposes(session)}
    try:
        if not csrf_matches(session.csrf_token, csrf_token):
            expired = i18n.gettext("El formulario caducó; recargue la página y vuelva a intentarlo.")
            raise Forbidden("csrf_failed", expired)
        with app.uow(staff_context(session, purpose)) as uow:
            found = lookup.search_persons(uow, q, limit=50)
    except DomainError as exc:
        return render_error(request, "registrar_search.html", exc, results=None, **page)
    return render(request, "registrar_search.html", results=found, **page)


@router.get("/registrar/households/{household_id}", response_model=None)
def household_page(request: Request, app: App, household_id: str, purpose: str = "enrollment") -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    page: dict[str, Any] = {"purpose": purpose, "session": session}
    try:
        with SqlCardUnitOfWork(app.engine, staff_context(session, purpose), app.clock) as uow:
            record = lookup.get_household(uow, household_id)
            cards = {m.person_id: uow.cards.current_of_person(m.person_id) for m, _ in record.members}
    except DomainError as exc:
        return render_error(request, "household.html", exc, record=None, **page)
    return render(request, "household.html", record=record, cards=cards, on=app.clock.today(), **page)

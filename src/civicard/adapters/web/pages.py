"""Server-rendered pages. The registrar's search and household view read through the same
services and access enforcement point as the API; search terms travel in POST bodies, never URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from civicard.adapters.api.access import App
from civicard.registry import lookup
from civicard.registry.vocabulary import vocabulary
from civicard.settings import Mode
from civicard.shared.errors import DomainError, ErrorKind, Unauthenticated
from civicard.transparency.access import AccessContext, Actor, purpose_policy

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
DEMO_REGISTRAR = Actor("demo-registrar", "registrar")
PAGE_STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.UNAVAILABLE: 503,
}


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def _registrar(app: App, purpose: str) -> AccessContext:
    # Staff sign-in arrives with the access-log issue; until then only the demo registrar exists.
    if app.settings.mode is not Mode.DEMO:
        raise Unauthenticated("sign_in_unavailable", "Staff sign-in is not configured on this server yet.")
    return AccessContext(DEMO_REGISTRAR, purpose)


def _render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    policy = purpose_policy()
    purposes = {p: policy.descriptions[p] for p in sorted(policy.roles[DEMO_REGISTRAR.role])}
    return templates.TemplateResponse(
        request, name, {"purposes": purposes, "vocab": vocabulary(), **context}, status_code=status_code
    )


def _error(request: Request, name: str, exc: DomainError, **context: Any) -> HTMLResponse:
    return _render(request, name, status_code=PAGE_STATUS[exc.kind], error=exc, **context)


@router.get("/", response_class=HTMLResponse)
def landing(request: Request, app: App) -> HTMLResponse:
    return _render(request, "index.html", demo=app.settings.mode is Mode.DEMO)


@router.get("/registrar", response_class=HTMLResponse)
def registrar_home(request: Request) -> HTMLResponse:
    return _render(request, "registrar_search.html", query="", results=None, purpose="enrollment")


@router.post("/registrar/search", response_class=HTMLResponse)
def registrar_search(
    request: Request,
    app: App,
    q: Annotated[str, Form(max_length=200)] = "",
    purpose: Annotated[str, Form(max_length=60)] = "enrollment",
) -> HTMLResponse:
    page: dict[str, Any] = {"query": q, "purpose": purpose}
    try:
        with app.uow(_registrar(app, purpose)) as uow:
            found = lookup.search_persons(uow, q, limit=50)
    except DomainError as exc:
        return _error(request, "registrar_search.html", exc, results=None, **page)
    return _render(request, "registrar_search.html", results=found, **page)


@router.get("/registrar/households/{household_id}", response_class=HTMLResponse)
def household_page(request: Request, app: App, household_id: str, purpose: str = "enrollment") -> HTMLResponse:
    try:
        with app.uow(_registrar(app, purpose)) as uow:
            record = lookup.get_household(uow, household_id)
    except DomainError as exc:
        return _error(request, "household.html", exc, record=None, purpose=purpose)
    return _render(request, "household.html", record=record, purpose=purpose, on=app.clock.today())

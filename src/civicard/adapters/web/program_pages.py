"""The program administrator's pages: the register of rule versions, one version shown readably
with its test run and impact preview, and proposing, approving, rejecting and retiring versions.

The register holds rules, never personal data, so it is read on a plain connection; every change
goes through `publishing` under `program_publication` (the same calls as the API and the CLI),
and a proposal's impact preview reads the households under `impact_preview` and shows aggregates
only, cells under 10 households as "<10".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import IntegrityError

from civicard.adapters.api.access import App
from civicard.adapters.cli.demo_programs import demo_rulepacks
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.register_store import RegisteredVersion, SqlProgramRegister
from civicard.adapters.publication import impact_reader, postgres_connector, publication_uow
from civicard.adapters.web.i18n import N_, gettext, translated, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount
from civicard.programs import publishing
from civicard.programs.rulepack import RulePack
from civicard.programs.testing import CaseResult, rule_files, run_tests
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
ProgramId = Annotated[str, PathParam(max_length=60)]
VersionText = Annotated[str, PathParam(max_length=60)]
STATUS_LABELS = {
    "proposed": N_("propuesta"),
    "published": N_("publicada"),
    "rejected": N_("rechazada"),
    "retired": N_("retirada"),
    "expired": N_("vencida"),
}
NOTICES = {
    "proposed": N_(
        "Versión propuesta: sus pruebas pasan en todos los motores. Otra persona administradora debe aprobarla."
    ),
    "published": N_("Versión aprobada y publicada: los ciclos la aplican desde su fecha de vigencia."),
    "rejected": N_("Versión rechazada: queda en el registro como rechazada."),
    "retired": N_("Versión retirada: ningún ciclo la aplicará."),
}
METRIC_LABELS = {
    "households": N_("hogares"),
    "gain": N_("ganan"),
    "lose": N_("pierden"),
    "amount_up": N_("importe ↑"),
    "amount_down": N_("importe ↓"),
    "items_change": N_("artículos ≠"),
    "unchanged": N_("sin cambio"),
    "eligible_before": N_("elegibles antes"),
    "eligible_after": N_("elegibles después"),
    "amount_before": N_("importe antes"),
    "amount_after": N_("importe después"),
}
ENGINES = ("python", "duckdb", "sqlite", "postgres")


# --- who may act -----------------------------------------------------------------------------------


def program_admin(app: Container, session: ActiveSession) -> StaffAccount:
    """The enabled program administrator behind the session, or Forbidden `not_program_admin`."""
    principal = session.principal
    if principal.kind == "staff" and principal.role == publishing.PROGRAM_ADMIN:
        for account in app.auth.list_staff_accounts():
            if account.id == principal.id and account.active:
                return account
    raise Forbidden("not_program_admin", gettext("Estas páginas son para las personas administradoras de programas."))



def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


# --- what the pages show ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleFile:
    """A rule file in the rulepacks folder that the register does not hold yet."""

    name: str  # its path under the folder: what the propose form sends back
    pack: RulePack | None
    problem: DomainError | None


def _register(app: Container) -> tuple[list[RegisteredVersion], dict[str, dict[str, Any]]]:
    with app.engine.connect() as conn:
        register = SqlProgramRegister(conn)
        return register.all(), {item["code"]: item for item in register.items()}


def _unregistered(versions: list[RegisteredVersion]) -> list[RuleFile]:
    root = demo_rulepacks()
    if not root.is_dir():
        return []
    taken = {(v.program, v.version) for v in versions}
    found = []
    for path in rule_files(root):
        name = path.relative_to(root).as_posix()
        try:
            pack = publishing.parse_source(path.read_text(encoding="utf-8"))
        except DomainError as exc:
            found.append(RuleFile(name, None, exc))
            continue
        if (pack.program, pack.version) not in taken:
            found.append(RuleFile(name, pack, None))
    return found


def _rule_file_text(name: str) -> str:
    """The text of a file the list offered; any other name (a path outside the folder) is refused."""
    root = demo_rulepacks()
    for path in rule_files(root) if root.is_dir() else []:
        if path.relative_to(root).as_posix() == name:
            return path.read_text(encoding="utf-8")
    raise InvalidInput("unknown_rule_file", gettext("Elija uno de los archivos de reglas listados, o pegue su texto."))


def money(minor: float) -> str:
    return f"{minor / 100:,.2f}"


def shown_value(unit: str, value: float) -> str:
    """A parameter's value as an administrator reads it: money from minor units, percent, number."""
    if unit == "money":
        return money(value)
    if unit == "percent":
        return f"{value:g} %"
    if unit == "boolean":
        return gettext("sí") if value else gettext("no")
    return f"{value:g}"


def expectation(expect: dict[str, Any]) -> str:
    parts = []
    if "eligible" in expect:
        eligible = {True: gettext("elegible"), False: gettext("no elegible")}
        parts.append(eligible.get(expect["eligible"], "?"))
    if "amount" in expect:
        parts.append(f"{gettext('importe')} {money(int(expect['amount']))}")
    for name, met in (expect.get("conditions") or {}).items():
        parts.append(f"{name}: {'—' if met is None else gettext('sí') if met else gettext('no')}")
    for code, quantity in (expect.get("items") or {}).items():
        parts.append(f"{code} × {quantity}")
    return " · ".join(parts)


@dataclass(frozen=True)
class TestRun:
    engines: tuple[str, ...]
    rows: tuple[tuple[str, dict[str, CaseResult]], ...]  # case → engine → result, in file order
    passed: int
    failed: int


def run_version_tests(app: Container, pack: RulePack) -> TestRun:
    """The pack's cases on Python, DuckDB, SQLite and, on a PostgreSQL database, PostgreSQL."""
    with _engines(app) as engines:
        results = run_tests([pack], engines)
    rows: dict[str, dict[str, CaseResult]] = {}
    for result in results:
        rows.setdefault(result.case, {})[result.engine] = result
    failed = sum(not r.passed for r in results)
    shown = tuple(e for e in ENGINES if e == "python" or e in engines)
    return TestRun(shown, tuple(rows.items()), len(results) - failed, failed)


@contextmanager
def _engines(app: Container) -> Iterator[dict[str, Any]]:
    engines: dict[str, Any] = {"duckdb": duckdb.connect(), "sqlite": sqlite3.connect(":memory:")}
    try:
        connect = postgres_connector(app.engine)
        if connect is not None:
            engines["postgres"] = connect()
        yield engines
    finally:
        for connection in engines.values():
            connection.close()


# --- the impact preview as a table and a chart -----------------------------------------------------

CHART_SERIES = (  # (metric, colour); bars and legend are labelled from METRIC_LABELS
    ("gain", "#1a7f37"),
    ("lose", "#b42318"),
    ("amount_up", "#0b5cad"),
    ("amount_down", "#8a5300"),
)
_LABEL_W, _BAR_MAX, _BAR_H, _GAP, _GROUP_GAP, _TOP = 170, 360, 14, 3, 16, 34


@dataclass(frozen=True)
class Bar:
    label: str
    colour: str
    value: int | str  # "<10" when suppressed: no bar, the text only
    y: float
    width: float


@dataclass(frozen=True)
class ChartGroup:
    label: str
    y: float
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    label_width: int
    bar_height: int
    groups: tuple[ChartGroup, ...]
    legend: tuple[tuple[str, str, int], ...]  # label, colour, x


@dataclass(frozen=True)
class ImpactView:
    against: str | None
    period: str
    small_cell: int
    rows: tuple[tuple[str, dict[str, Any]], ...]  # region label → cells
    total: dict[str, Any]
    metrics: dict[str, str]
    money_metrics: frozenset[str]
    chart: Chart


def region_label(code: str) -> str:
    region = vocabulary().regions.get(code)
    return region.name if region else gettext("sin región") if code == "(none)" else code


def impact_view(text: str) -> ImpactView | None:
    """The stored preview (publishing.ImpactPreview.to_json) for the page; None if there is none."""
    raw = json.loads(text) if text else {}
    if not raw or "regions" not in raw:
        return None
    rows = tuple((region_label(r["region"]), r) for r in raw["regions"])
    return ImpactView(
        against=raw.get("against"),
        period=raw["period"],
        small_cell=int(raw.get("small_cell", publishing.SMALL_CELL)),
        rows=rows,
        total=raw["total"],
        metrics=translated(METRIC_LABELS),
        money_metrics=frozenset(publishing.SUMS),
        chart=impact_chart(rows),
    )


def impact_chart(rows: tuple[tuple[str, dict[str, Any]], ...]) -> Chart:
    """Bars per region for gains, losses and amount changes, on one scale; a suppressed cell has no bar."""
    numbers = [cells[m] for _, cells in rows for m, _ in CHART_SERIES if isinstance(cells[m], int)]
    names = {metric: gettext(METRIC_LABELS[metric]) for metric, _ in CHART_SERIES}
    scale = _BAR_MAX / max([*numbers, 1])
    groups, y = [], float(_TOP)
    for label, cells in rows:
        bars = []
        for index, (metric, colour) in enumerate(CHART_SERIES):
            value = cells[metric]
            width = value * scale if isinstance(value, int) else 0.0
            bars.append(Bar(names[metric], colour, value, y + index * (_BAR_H + _GAP), round(width, 1)))
        groups.append(ChartGroup(label, y, tuple(bars)))
        y += len(CHART_SERIES) * (_BAR_H + _GAP) + _GROUP_GAP
    legend, x = [], 8
    for metric, colour in CHART_SERIES:
        legend.append((names[metric], colour, x))
        x += 16 + 7 * len(names[metric]) + 18  # swatch, text at about 7 px a character, gap
    width = _LABEL_W + _BAR_MAX + 70
    return Chart(max(width, x), int(y), _LABEL_W, _BAR_H, tuple(groups), tuple(legend))


# --- the register ----------------------------------------------------------------------------------


@router.get("/programs", response_model=None)
def programs_page(
    request: Request, app: App, notice: Annotated[list[str] | None, Query(max_length=40)] = None
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    return _programs(request, app, session, notices=[gettext(NOTICES[n]) for n in notice or () if n in NOTICES])


def _programs(
    request: Request, app: App, session: ActiveSession, error: DomainError | None = None, **form: Any
) -> Response:
    statuses = translated(STATUS_LABELS)
    page: dict[str, Any] = {"session": session, "statuses": statuses, "source": "", "note": "", "file": ""}
    page.update(form)
    try:
        program_admin(app, session)
    except DomainError as exc:
        return render_error(request, "programs.html", exc, programs=None, files=[], **page)
    versions, _ = _register(app)
    programs: dict[str, list[RegisteredVersion]] = {}
    for v in versions:
        programs.setdefault(v.program, []).append(v)
    context = {"programs": programs, "files": _unregistered(versions), **page}
    if error is not None:
        return render_error(request, "programs.html", error, **context)
    return render(request, "programs.html", **context)


@router.post("/programs/proposals", response_model=None)
def propose_page(
    request: Request,
    app: App,
    file: Annotated[str, Form(max_length=200)] = "",
    source: Annotated[str, Form(max_length=publishing.MAX_SOURCE_CHARS + 1)] = "",
    note: Annotated[str, Form(max_length=publishing.MAX_NOTE_CHARS + 1)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Propose a listed rule file (by name) or pasted text; a refusal keeps what was typed."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        require_csrf(session, csrf_token)
        account = program_admin(app, session)
        text = source if source.strip() else _rule_file_text(file)
        with publication_uow(app, account) as uow:
            proposal = publishing.propose(
                uow,
                text,
                account,
                note,
                read_inputs=impact_reader(app, account),
                connect_postgres=postgres_connector(app.engine),
            )
    except IntegrityError:  # another proposal of the same version or text committed first
        exc = Conflict("version_exists", gettext("esta versión o este texto se registró en ese mismo momento"))
        return _programs(request, app, session, exc, source=source, note=note, file=file)
    except DomainError as exc:
        return _programs(request, app, session, exc, source=source, note=note, file=file)
    v = proposal.version
    return _to_version(v.program, v.version, "proposed")


def _to_version(program: str, version: str, notice: str) -> RedirectResponse:
    # program and version come from the register, where the service checked their shape.
    return RedirectResponse(f"/programs/{program}/{version}?notice={notice}", status_code=303)


# --- one version -----------------------------------------------------------------------------------


@router.get("/programs/{program}/{version}", response_model=None)
def version_page(
    request: Request,
    app: App,
    program: ProgramId,
    version: VersionText,
    notice: Annotated[list[str] | None, Query(max_length=40)] = None,
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    notices = [gettext(NOTICES[n]) for n in notice or () if n in NOTICES]
    return _version(request, app, session, program, version, notices=notices)


def _version(
    request: Request,
    app: App,
    session: ActiveSession,
    program: str,
    version: str,
    error: DomainError | None = None,
    **extra: Any,
) -> Response:
    statuses = translated(STATUS_LABELS)
    page: dict[str, Any] = {"session": session, "statuses": statuses, "note": "", "tests": None, **extra}
    try:
        account = program_admin(app, session)
        found, items = _find(app, program, version)
        pack = found.pack()
    except DomainError as exc:
        return render_error(request, "programs_version.html", exc, v=None, **page)
    context = {
        "v": found,
        "pack": pack,
        "items": items,
        "me": account.username,
        "impact": impact_view(found.impact),
        "shown_value": shown_value,
        "expectation": expectation,
        **page,
    }
    if error is not None:
        return render_error(request, "programs_version.html", error, **context)
    return render(request, "programs_version.html", **context)


def _find(app: Container, program: str, version: str) -> tuple[RegisteredVersion, dict[str, dict[str, Any]]]:
    with app.engine.connect() as conn:
        register = SqlProgramRegister(conn)
        found = register.find(program, version)
        items = {item["code"]: item for item in register.items()}
    if found is None:
        message = gettext("%(program)s %(version)s no está en el registro")
        raise NotFound("version_not_found", message % {"program": program, "version": version})
    return found, items


@router.post("/programs/{program}/{version}/tests", response_model=None)
def tests_page(
    request: Request,
    app: App,
    program: ProgramId,
    version: VersionText,
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Run the version's test cases on every engine; htmx swaps in the table, a plain post gets the page."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    fragment = request.headers.get("HX-Request") == "true"
    try:
        require_csrf(session, csrf_token)
        program_admin(app, session)
        found, _ = _find(app, program, version)
        run = run_version_tests(app, found.pack())
    except DomainError as exc:
        if fragment:
            return render_error(request, "programs_tests.html", exc, tests=None)
        return _version(request, app, session, program, version, exc)
    if fragment:
        return render(request, "programs_tests.html", tests=run)
    return _version(request, app, session, program, version, tests=run)


@router.post("/programs/{program}/{version}/decision", response_model=None)
def decide_page(
    request: Request,
    app: App,
    program: ProgramId,
    version: VersionText,
    decision: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=publishing.MAX_NOTE_CHARS + 1)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Approve (publish) or reject a proposed version; the service refuses its own proposer."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    actions = {"approve": publishing.approve, "reject": publishing.reject, "retire": publishing.retire}
    try:
        require_csrf(session, csrf_token)
        account = program_admin(app, session)
        action = actions.get(decision)
        if action is None:
            raise InvalidInput("unknown_decision", gettext("Elija aprobar, rechazar o retirar."))
        found, _ = _find(app, program, version)
        with publication_uow(app, account) as uow:
            decided = action(uow, found.id, account, note)
    except DomainError as exc:
        return _version(request, app, session, program, version, exc, note=note, failed=decision)
    return _to_version(decided.program, decided.version, decided.status)

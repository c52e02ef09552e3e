"""/v1/programs (public: the published rule versions) and /v1/program-versions (program administrators).

Reading the register needs no sign-in: it holds rules, never personal data. Proposing, approving
and rejecting need a program administrator's session (CSRF for cookie sessions, as everywhere);
the purpose is the operation's own (`program_publication`; the impact preview reads households
under `impact_preview`), so no X-Civicard-Purpose header is needed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status
from sqlalchemy.exc import IntegrityError

from civicard.adapters.api.access import App, Caller, caller
from civicard.adapters.api.program_schemas import (
    DecisionIn,
    ProgramListOut,
    ProgramVersionDetailOut,
    ProgramVersionOut,
    ProposalIn,
    ProposalOut,
    RegisteredOut,
)
from civicard.adapters.db.register_store import RegisteredVersion, SqlProgramRegister
from civicard.adapters.publication import impact_reader, postgres_connector, publication_uow
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount
from civicard.programs import publishing
from civicard.shared.errors import Conflict, Forbidden, NotFound

router = APIRouter(prefix="/v1", tags=["programs"])
PUBLIC = ("published", "retired")
READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No published or retired version with this program and version"},
    422: {"description": "Invalid path"},
}
ADMIN_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No valid session"},
    403: {
        "description": "Not a program administrator, CSRF token missing, or the proposer deciding their own proposal"
    },
    404: {"description": "Unknown program version"},
    409: {"description": "Version or text already registered, not proposed any more, or its date already taken"},
    422: {
        "description": "The rule file does not parse, has no tests, failing tests or unknown items; nothing was written"
    },
}
ProgramId = Annotated[str, Path(max_length=60)]
VersionText = Annotated[str, Path(max_length=60)]
VersionId = Annotated[str, Path(max_length=64)]


@router.get("/programs")
def list_programs(app: App) -> ProgramListOut:
    """Every published or retired rule version, with its hash, legal basis and who proposed and approved it."""
    with app.engine.connect() as conn:
        versions = SqlProgramRegister(conn).all()
    return ProgramListOut(versions=[ProgramVersionOut.of(v) for v in versions if v.status in PUBLIC])


@router.get("/programs/{program}/{version}", responses=READ_PROBLEMS)
def read_program(program: ProgramId, version: VersionText, app: App) -> ProgramVersionDetailOut:
    """One published or retired version with the exact text that was approved."""
    with app.engine.connect() as conn:
        found = SqlProgramRegister(conn).find(program, version)
    if found is None or found.status not in PUBLIC:
        raise NotFound("version_not_found", f"{program} {version} is not a published program version")
    return ProgramVersionDetailOut.of(found)


@router.post("/program-versions", status_code=status.HTTP_201_CREATED, responses=ADMIN_PROBLEMS)
def propose_version(body: ProposalIn, app: App, who: Annotated[Caller, Depends(caller)]) -> ProposalOut:
    """Check, test on every engine, preview the impact (aggregates only) and register a rule file as proposed."""
    account = _program_admin(app, who)
    try:
        with publication_uow(app, account) as uow:
            proposal = publishing.propose(
                uow,
                body.source,
                account,
                body.note,
                read_inputs=impact_reader(app, account),
                connect_postgres=postgres_connector(app.engine),
            )
    except IntegrityError:  # another proposal of the same version or text committed first
        raise Conflict("version_exists", "this version or text was registered at the same moment") from None
    return ProposalOut.of(proposal)


@router.post("/program-versions/{version_id}/approval", responses=ADMIN_PROBLEMS)
def approve_version(
    version_id: VersionId, body: DecisionIn, app: App, who: Annotated[Caller, Depends(caller)]
) -> RegisteredOut:
    """Publish a proposed version: only a program administrator other than its proposer may."""
    account = _program_admin(app, who)
    with publication_uow(app, account) as uow:
        decided = publishing.approve(uow, version_id, account, body.note)
    return RegisteredOut.of(_registered(decided))


@router.post("/program-versions/{version_id}/rejection", responses=ADMIN_PROBLEMS)
def reject_version(
    version_id: VersionId, body: DecisionIn, app: App, who: Annotated[Caller, Depends(caller)]
) -> RegisteredOut:
    """Turn a proposed version down (another program administrator than its proposer)."""
    account = _program_admin(app, who)
    with publication_uow(app, account) as uow:
        decided = publishing.reject(uow, version_id, account, body.note)
    return RegisteredOut.of(_registered(decided))


def _program_admin(app: Container, who: Caller) -> StaffAccount:
    principal = who.principal
    if principal.kind == "staff" and principal.role == publishing.PROGRAM_ADMIN:
        for account in app.auth.list_staff_accounts():
            if account.id == principal.id and account.active:
                return account
    raise Forbidden("not_program_admin", "Only a program administrator may propose or decide program rules.")


def _registered(version: publishing.RegisteredView) -> RegisteredVersion:
    assert isinstance(version, RegisteredVersion)  # the SQL register returns its own rows
    return version

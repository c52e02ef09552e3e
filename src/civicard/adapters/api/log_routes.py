"""The verifiable access log over HTTP: public checkpoints and consistency proofs; a resident's
own entries with inclusion proofs and a downloadable proof bundle per entry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from civicard.adapters.api.access import App, Resident
from civicard.adapters.backup import publish_checkpoint
from civicard.adapters.db import log_store
from civicard.shared.errors import NotFound
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["transparency"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid session"},
    403: {"description": "Residents only"},
    404: {"description": "No such entry, or not yours"},
    409: {"description": "Not yet in a signed checkpoint"},
    422: {"description": "Invalid tree sizes"},
}


@router.get("/log/checkpoint", response_class=PlainTextResponse, responses={404: {"description": "No checkpoint yet"}})
def checkpoint(app: App) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP signed note). Keep it: later proofs must be consistent with it."""
    with app.engine.connect() as conn:
        latest = log_store.latest_checkpoint(conn)
    if latest is None:
        raise NotFound("no_checkpoint", "The log has no signed checkpoint yet.")
    publish_checkpoint(app, latest.note)
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")


@router.get("/log/public-key")
def public_key(app: App) -> dict[str, Any]:
    """The log's verifier key (C2SP vkey) to check checkpoints and proofs offline; `earlier` lists the
    keys of earlier generations (after a checkpoint-key rotation), which signed older checkpoints."""
    verifier = app.log_signer.verifier
    earlier = [key.to_vkey() for key in verifier.generations()[1:]]
    return {"vkey": verifier.to_vkey(), "origin": app.log_signer.name, "earlier": earlier}


@router.get("/log/consistency", responses=PROBLEMS)
def consistency(
    app: App,
    old: Annotated[int, Query(ge=0, le=2**53, description="Size of the checkpoint you hold.")],
    new: Annotated[int | None, Query(ge=0, le=2**53, description="Default: the latest checkpoint.")] = None,
) -> dict[str, Any]:
    """A consistency proof that the tree of size `old` is a prefix of the tree of size `new`."""
    with app.engine.connect() as conn:
        return log_store.consistency_between(conn, old, new).to_json()


@router.get("/me/access-log", responses=PROBLEMS)
def my_access_log(
    app: App,
    me: Resident,
    since: Annotated[int | None, Query(ge=0, le=2**53, description="Size of the checkpoint you saw last.")] = None,
) -> dict[str, Any]:
    """Every read and change of your data: who, role, purpose, categories, when — with proofs."""
    with app.uow(AccessContext(me.actor(), "self_access")) as uow:
        return log_store.resident_log(uow, me.id, since).to_json()


@router.get("/me/access-log/{leaf_index}/proof", responses=PROBLEMS)
def my_entry_proof(leaf_index: int, app: App, me: Resident) -> dict[str, Any]:
    """An offline proof bundle for one of your entries (check it with `civicard audit check-proof`)."""
    with app.uow(AccessContext(me.actor(), "self_access")) as uow:
        mine = {e.leaf_index for e in log_store.resident_log(uow, me.id).entries}
        if leaf_index not in mine:  # checked first: another person's leaf must not even look pending
            raise NotFound("unknown_entry", f"There is no entry of yours at leaf {leaf_index}.")
        bundle = log_store.prove_entry(uow, leaf_index, app.log_signer.verifier)
    return bundle.to_json()

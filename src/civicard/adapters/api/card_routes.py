"""Public card material: the verification keys, the signed status list and signed deltas (no personal data).

Terminals fetch `/v1/keys` once per key rotation, the full list when they have none (or the size
changed), and then `/v1/status-list/deltas/{v}` for each version after the one they hold until 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from civicard.adapters.api.access import App
from civicard.adapters.db.card_store import PublishedCardMaterial
from civicard.shared.errors import NotFound

router = APIRouter(prefix="/v1", tags=["cards"])
COSE_KEY_SET = "application/cose-key-set"  # RFC 9052 §11.2
STATUS_LIST = "application/statuslist+cwt"  # draft-ietf-oauth-status-list
STATUS_DELTA = "application/civicard-statusdelta+cwt"
CACHE = {"Cache-Control": "public, max-age=300"}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not published (yet)"}}


@router.get("/keys", response_class=Response, responses={200: {"content": {COSE_KEY_SET: {}}}})
def card_keys(app: App) -> Response:
    """The COSE_KeySet of every issuer key a card in circulation may be signed with."""
    return Response(app.card_keys.keyring.cose_key_set(), media_type=COSE_KEY_SET, headers=CACHE)


@router.get("/keys.jwks")
def card_keys_jwks(app: App) -> dict[str, Any]:
    """The same keys as a JWK Set, for JOSE tooling."""
    return app.card_keys.keyring.jwks()


@router.get("/status-list", response_class=Response, responses={200: {"content": {STATUS_LIST: {}}}, **NOT_FOUND})
def status_list(app: App) -> Response:
    """The latest signed Status List Token (2 bits a card: 0 valid, 1 revoked, 2 suspended)."""
    latest = PublishedCardMaterial(app.engine).latest()
    if latest is None:
        raise NotFound("status_list_missing", "No status list has been published yet.")
    headers = CACHE | {"X-Status-List-Version": str(latest.version)}
    return Response(latest.signed_list, media_type=STATUS_LIST, headers=headers)


@router.get(
    "/status-list/deltas/{version}",
    response_class=Response,
    responses={200: {"content": {STATUS_DELTA: {}}}, **NOT_FOUND, 422: {"description": "Not a version number (≥ 2)"}},
)
def status_list_delta(app: App, version: Annotated[int, Path(ge=2, le=2**53)]) -> Response:
    """The signed delta from version − 1 to `version`; 404 means you are current (or fetch the full list)."""
    published = PublishedCardMaterial(app.engine).version(version)
    if published is None or published.signed_delta is None:
        raise NotFound("status_delta_missing", "No delta to this version; fetch the full list.")
    return Response(published.signed_delta, media_type=STATUS_DELTA, headers=CACHE)

"""Offline redemption over HTTP: a counter terminal's bundle and receipt sync (signed requests), the
bundle-signing key (public), and the conflicts kept for review (reviewer or oversight session).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from civicard.adapters.api.access import Access, App, Terminal, TerminalEvenRevoked
from civicard.adapters.api.observability import record_redemptions
from civicard.adapters.api.offline_schemas import (
    ConflictOut,
    ConflictsOut,
    ReceiptOutcomeOut,
    ReceiptsIn,
    ReceiptsOut,
)
from civicard.distribution.offline import BUNDLE_TYP, bundle_keyring, bundle_signing_key, sign_bundle
from civicard.distribution.offline_sync import (
    SignedReceipt,
    apply_batch,
    build_bundle,
    list_conflicts,
    require_counter_seat,
)
from civicard.shared.errors import Forbidden
from civicard.transparency.access import AccessContext, Actor

router = APIRouter(prefix="/v1", tags=["offline"])
COSE_KEY_SET = "application/cose-key-set"
REDEMPTION = "redemption"
REVIEW_ROLES = frozenset({"reviewer", "oversight"})
TERMINAL_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "Unsigned, badly signed, replayed, unknown or revoked terminal (terminal_revoked)"},
    403: {"description": "Not a counter terminal at an open outlet"},
    422: {"description": "Invalid input"},
    503: {"description": "No open period, or no status list published yet"},
}

REVIEW_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid session"},
    403: {"description": "Not a reviewer or oversight, or a purpose the role does not have"},
    422: {"description": "Invalid input"},
}


def _vendor(terminal_id: str) -> AccessContext:
    return AccessContext(Actor(terminal_id, "vendor"), REDEMPTION)


@router.get("/keys/offline-bundle", response_class=Response, responses={200: {"content": {COSE_KEY_SET: {}}}})
def offline_bundle_keys(app: App) -> Response:
    """The COSE_KeySet terminals verify offline bundles with (not card keys: see /v1/keys)."""
    body = bundle_keyring(app.root_key).cose_key_set()
    return Response(body, media_type=COSE_KEY_SET, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/terminal/bundle",
    response_class=Response,
    responses={200: {"content": {BUNDLE_TYP: {}}}, **TERMINAL_PROBLEMS},
)
def terminal_bundle(app: App, terminal: Terminal) -> Response:
    """The signed offline bundle for this terminal's outlet and the current period (no handles, names or ids)."""
    with app.uow(_vendor(terminal.id)) as uow:
        bundle = build_bundle(uow, app.root_key, terminal.id, app.clock.now())
    signed = sign_bundle(bundle, bundle_signing_key(app.root_key))
    return Response(signed, media_type=BUNDLE_TYP, headers={"Cache-Control": "no-store"})


@router.post("/terminal/receipts", responses=TERMINAL_PROBLEMS)
def terminal_receipts(body: ReceiptsIn, app: App, terminal: TerminalEvenRevoked) -> ReceiptsOut:
    """Apply a batch of signed offline receipts in seq order; a re-sent receipt gets its first answer.

    A revoked terminal may still hand in its receipts: each is kept as a `terminal_revoked`
    conflict for a reviewer, and none is applied."""
    batch = [SignedReceipt(i, _b64(r.payload), _b64(r.signature)) for i, r in enumerate(body.receipts)]
    context = _vendor(terminal.id)
    with app.uow(context) as uow:
        seat = require_counter_seat(uow.offline, terminal.id)
    outcomes = apply_batch(lambda: app.uow(context), seat, batch, app.clock.now())
    record_redemptions("offline", (o.reason or "approved" for o in outcomes))  # a re-sent receipt counts again
    return ReceiptsOut(
        results=[
            ReceiptOutcomeOut(
                index=o.index, seq=o.seq, status=o.status, reason=o.reason, transaction_id=o.transaction_id
            )
            for o in outcomes
        ]
    )


def reviewer_context(context: Access) -> AccessContext:
    """A reviewer's or oversight's session under a purpose its role has (checked before any input)."""
    if context.actor.role not in REVIEW_ROLES:
        raise Forbidden("reviewers_only", "Only reviewers and oversight see offline conflicts.")
    return context


@router.get("/offline-conflicts", responses=REVIEW_PROBLEMS)
def offline_conflicts(
    app: App,
    context: Annotated[AccessContext, Depends(reviewer_context)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ConflictsOut:
    """Offline receipts that could not be applied, newest first, for review (no card, name or household)."""
    with app.uow(context) as uow:
        found = list_conflicts(uow, app.clock.now(), limit)
    return ConflictsOut(
        conflicts=[
            ConflictOut(
                id=c.id,
                terminal_id=c.terminal_id,
                outlet_id=c.outlet_id,
                seq=c.seq,
                period=c.period,
                items=c.items,
                device_time=c.device_time,
                received_at=c.received_at,
                reason=c.reason,
            )
            for c in found
        ]
    )


def _b64(text: str) -> bytes:
    """base64url with or without padding; anything unreadable becomes no bytes (that receipt is refused)."""
    cleaned = text.strip()
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b""

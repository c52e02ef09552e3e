"""POST /v1/redemptions/fallback (a sale without PIN, attested by the outlet supervisor's device) and
POST /v1/offline-conflicts/{id}/review (a reviewer closes an offline conflict).

The fallback is sent by the counter terminal, signed like every terminal request, with an
`Idempotency-Key` that follows the online redemption's rules (first final answer stored and
replayed; 409 while the first is running). The body carries the supervisor's attestation (see
distribution/fallback.py for the exact bytes it signs). The answer is vendor-safe like the online
receipt: no name, income, health fact or internal id of a person, household or card.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from civicard.adapters.api.access import App, Terminal
from civicard.adapters.api.observability import record_redemption
from civicard.adapters.api.offline_routes import REVIEW_PROBLEMS, reviewer_context
from civicard.adapters.api.problems import PROBLEM, http_status, problem
from civicard.adapters.api.redemption_routes import redemption_keys
from civicard.adapters.api.redemption_schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    BasketLineIn,
    ReceiptLineOut,
    receipt_lines,
)
from civicard.adapters.api.schemas import Body
from civicard.adapters.db.fallback_store import SqlFallbackUnitOfWork, SqlReviewUnitOfWork
from civicard.adapters.db.redemption_store import IdempotencyKeys, StoredAnswer
from civicard.bootstrap import Container
from civicard.distribution.fallback import Attestation, FallbackCommand, FallbackReceipt, sell_without_pin
from civicard.distribution.offline_review import MAX_NOTE, review_conflict
from civicard.distribution.redemption import Claim, RedemptionKeys
from civicard.distribution.sales import MAX_LINES, BasketLine
from civicard.identity.principals import Principal
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["redemptions"])
PURPOSE = "redemption"
JSON = "application/json"
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read"},
    401: {"description": "The counter terminal's signature, clock, nonce or registration is not accepted"},
    403: {"description": "The terminal is not a counter at an open outlet (terminal_not_at_outlet)"},
    409: {"description": "A request with this Idempotency-Key is still running (request_in_progress)"},
    422: {
        "description": "Refused, with its code: photo_not_checked, attestation_missing, attestation_bad_signature, "
        "attestation_replayed, attestation_not_supervisor, attestation_other_outlet, attestation_stale, "
        "fallback_limit_reached, fallback_cap_exceeded, card_revoked, not_entitled, …"
    },
}


class AttestationIn(Body):
    terminal_id: str = Field(min_length=1, max_length=32, description="The supervisor device's terminal id.")
    timestamp: int = Field(ge=0, le=2**40, description="Unix seconds when the supervisor device signed.")
    nonce: str = Field(pattern=NONCE_PATTERN, description="Never reused by this supervisor device.")
    signature: str = Field(min_length=1, max_length=100, description="base64url Ed25519 signature.")

    def attestation(self) -> Attestation:
        return Attestation(self.terminal_id, self.timestamp, self.nonce, _b64(self.signature))


class FallbackIn(Body):
    card_token: str = Field(min_length=1, max_length=400, description="The card's QR text exactly as scanned.")
    basket: list[BasketLineIn] = Field(min_length=1, max_length=MAX_LINES)
    photo_checked: bool = Field(description="The clerk compared the holder with the photo on the card.")
    supervisor: AttestationIn | None = Field(
        default=None, description="The outlet supervisor's attestation (see distribution/fallback.py)."
    )

    def command(self, claim: Claim) -> FallbackCommand:
        basket = tuple(BasketLine(line.item, line.quantity) for line in self.basket)
        attestation = self.supervisor.attestation() if self.supervisor else None
        return FallbackCommand(self.card_token, basket, self.photo_checked, attestation, claim)


class FallbackReceiptOut(BaseModel):
    decision: Literal["approved"]
    code: Literal["redeemed_fallback"]
    period: str = Field(description="The benefit cycle, YYYY-MM.")
    transaction_id: str = Field(description="The redemption's id: quote it to settle or dispute.")
    holder: str = Field(description="This vendor's own pseudonym for the card holder.")
    items: list[ReceiptLineOut]
    total_minor: int = Field(description="What the holder pays in all.")
    fallbacks_left: int = Field(description="Sales without PIN this card has left this period.")

    @classmethod
    def of(cls, result: FallbackReceipt) -> FallbackReceiptOut:
        receipt = result.receipt
        return cls(
            decision="approved",
            code="redeemed_fallback",
            period=receipt.period,
            transaction_id=receipt.transaction_id,
            holder=receipt.holder,
            items=receipt_lines(receipt),
            total_minor=receipt.total_minor,
            fallbacks_left=result.fallbacks_left,
        )


class ReviewIn(Body):
    note: str = Field(min_length=1, max_length=MAX_NOTE, description="What was decided, for the record.")


class ReviewOut(BaseModel):
    id: str
    reason: str
    reviewed_by: str
    reviewed_at: str


@router.post(
    "/redemptions/fallback", status_code=status.HTTP_201_CREATED, response_model=FallbackReceiptOut, responses=PROBLEMS
)
async def create_fallback(
    body: FallbackIn,
    request: Request,
    app: App,
    terminal: Terminal,
    idempotency_key: Annotated[
        str, Header(alias="Idempotency-Key", min_length=1, max_length=80, pattern=IDEMPOTENCY_KEY_PATTERN)
    ],
) -> Response:
    """Sell without the PIN (locked or forgotten): photo checked, supervisor attested, capped per cycle."""
    keys = redemption_keys(request, app)
    fingerprint = hashlib.sha256(await request.body()).hexdigest()
    ledger = IdempotencyKeys(app.engine)
    found = await run_in_threadpool(ledger.claim, terminal.id, idempotency_key, fingerprint, app.clock.now())
    if isinstance(found, StoredAnswer):
        return Response(found.body, found.status, media_type=JSON if found.status < 400 else PROBLEM)
    command = body.command(found)
    try:
        answer = await run_in_threadpool(_sell, app, keys, terminal, command)
    except DomainError as refused:
        record_redemption("fallback", refused.code)
        code, headers = http_status(refused)
        if code != status.HTTP_422_UNPROCESSABLE_CONTENT:
            await run_in_threadpool(ledger.release, found)
            raise
        title = refused.kind.value.replace("_", " ").capitalize()
        content = bytes(problem(code, refused.code, title, refused.message, **refused.public).body)
        await run_in_threadpool(ledger.settle, found, code, content, app.clock.now())
        return Response(content, code, media_type=PROBLEM, headers=headers)
    except BaseException:
        await run_in_threadpool(ledger.release, found)
        raise
    record_redemption("fallback", "approved")
    return Response(answer, status.HTTP_201_CREATED, media_type=JSON)


@router.post(
    "/offline-conflicts/{receipt_id}/review",
    responses={
        400: {"description": "The body could not be read"},
        404: {"description": "No such receipt"},
        409: {"description": "Applied or already reviewed"},
        **REVIEW_PROBLEMS,
    },
)
def review_offline_conflict(
    receipt_id: Annotated[str, Path(max_length=32)],
    body: ReviewIn,
    app: App,
    context: Annotated[AccessContext, Depends(reviewer_context)],
) -> ReviewOut:
    """Close an offline conflict (purpose offline_review): who reviewed it and when; the note is logged."""
    with SqlReviewUnitOfWork(app.engine, context, app.clock) as uow:
        done = review_conflict(uow, receipt_id, body.note)
    return ReviewOut(
        id=done.id, reason=done.reason, reviewed_by=done.reviewed_by, reviewed_at=done.reviewed_at.isoformat()
    )


def _sell(app: Container, keys: RedemptionKeys, terminal: Principal, command: FallbackCommand) -> bytes:
    context = AccessContext(terminal.actor(), PURPOSE)
    with SqlFallbackUnitOfWork(app.engine, context, app.clock) as uow:
        result = sell_without_pin(uow, keys, command, _receipt_bytes)
    return _receipt_bytes(result)


def _receipt_bytes(result: FallbackReceipt) -> bytes:
    return FallbackReceiptOut.of(result).model_dump_json().encode()


def _b64(text: str) -> bytes:
    """base64url with or without padding; unreadable text becomes no bytes (the signature fails)."""
    cleaned = text.strip()
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b""

"""POST /v1/redemptions and POST /v1/terminal/card-check: what a vendor terminal sends, signed.

A redemption needs an `Idempotency-Key` (1–80 of [A-Za-z0-9_-], new for each purchase attempt —
a new PIN is a new attempt). Its first final answer — 201 receipt or 422 refusal — is stored and
replayed byte for byte to every retry; a duplicate arriving while the first is still running gets
409 `request_in_progress`; the same key with another body 422 `idempotency_key_reused`. Answers
that are not final (401/403 authentication, 429 throttling, 5xx) are not stored: a retry runs again.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from civicard.adapters.api.access import App, Signed, SignedRequest, Terminal
from civicard.adapters.api.observability import record_redemption
from civicard.adapters.api.problems import PROBLEM, http_status, problem
from civicard.adapters.api.redemption_schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    CardCheckIn,
    CardCheckOut,
    ReceiptOut,
    RedemptionIn,
)
from civicard.adapters.db.redemption_store import IdempotencyKeys, SqlRedemptionUnitOfWork, StoredAnswer
from civicard.bootstrap import Container
from civicard.distribution.redemption import Claim, Receipt, RedeemCommand, RedemptionKeys, check_card, redeem
from civicard.identity.principals import Principal
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["redemptions"])
PURPOSE = "redemption"
JSON = "application/json"
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read"},
    401: {"description": "The terminal's signature, clock, nonce or registration is not accepted (terminal_revoked…)"},
    403: {"description": "The terminal is not a counter at an open outlet (terminal_not_at_outlet)"},
    409: {"description": "A request with this Idempotency-Key is still running (request_in_progress)"},
    422: {"description": "Refused, with its code: card_revoked, pin_wrong, pin_locked, not_entitled, …"},
    429: {"description": "Too many wrong PINs at this terminal or outlet; see Retry-After"},
}


def redemption_keys(request: Request, app: Container) -> RedemptionKeys:
    """Built once per application and key generation (verifying keys parsed, pseudonym keys cached);
    rebuilt when key custody hands out other card keys, i.e. after an issuer-key rotation."""
    cards = app.card_keys
    keys: RedemptionKeys | None = getattr(request.app.state, "redemption_keys", None)
    if keys is None or keys.cards is not cards:
        keys = request.app.state.redemption_keys = RedemptionKeys(cards, app.root_key)
    return keys


@router.post("/redemptions", status_code=status.HTTP_201_CREATED, response_model=ReceiptOut, responses=PROBLEMS)
async def create_redemption(
    body: RedemptionIn,
    request: Request,
    app: App,
    signed: Signed,
    idempotency_key: Annotated[
        str, Header(alias="Idempotency-Key", min_length=1, max_length=80, pattern=IDEMPOTENCY_KEY_PATTERN)
    ],
) -> Response:
    """Redeem a basket for the card holder's household (card token + PIN), once per Idempotency-Key."""
    keys = redemption_keys(request, app)
    fingerprint = hashlib.sha256(signed.body).hexdigest()
    command = RedeemCommand(body.card_token, body.pin, body.lines())
    # One trip to the thread pool and one pooled connection for the whole request.
    return await run_in_threadpool(_claim_and_redeem, app, keys, signed, command, idempotency_key, fingerprint)


def _claim_and_redeem(
    app: Container, keys: RedemptionKeys, signed: SignedRequest, command: RedeemCommand, key: str, fingerprint: str
) -> Response:
    """On one connection: verify the terminal and claim the key (one transaction: nonce + claim),
    replay a stored answer or redeem, and store a final answer under the claim."""
    ledger = IdempotencyKeys(app.engine)
    with app.engine.connect() as conn:
        try:
            terminal = signed.verify(app, conn)
            found = ledger.claim(terminal.id, key, fingerprint, app.clock.now(), conn)
        except DomainError:
            conn.commit()  # a busy or reused key still spends the request's nonce
            raise
        conn.commit()
        if isinstance(found, StoredAnswer):
            return Response(found.body, found.status, media_type=JSON if found.status < 400 else PROBLEM)
        try:
            answer = _redeem(app, keys, terminal, replace(command, claim=found), conn)
        except DomainError as refused:
            record_redemption("online", refused.code)
            code, headers = http_status(refused)
            if code != status.HTTP_422_UNPROCESSABLE_CONTENT:
                ledger.release(found, conn)
                raise
            content = _problem_bytes(refused, code)
            ledger.settle(found, code, content, app.clock.now(), conn)
            return Response(content, code, media_type=PROBLEM, headers=headers)
        except BaseException:
            _release_quietly(ledger, found, conn)
            raise
    record_redemption("online", "approved")
    return Response(answer, status.HTTP_201_CREATED, media_type=JSON)


def _release_quietly(ledger: IdempotencyKeys, claim: Claim, conn: Connection) -> None:
    """After an unexpected failure: free the claim if the connection still works (else it goes stale)."""
    try:
        conn.rollback()
        ledger.release(claim, conn)
    except Exception:  # the original failure is what the caller must see
        return


@router.post("/terminal/card-check", responses={k: v for k, v in PROBLEMS.items() if k in (400, 401, 403, 422)})
def card_check(body: CardCheckIn, request: Request, app: App, terminal: Terminal) -> CardCheckOut:
    """Before the PIN: is the card valid, is the holder entitled here, and how much is left."""
    keys = redemption_keys(request, app)
    with SqlRedemptionUnitOfWork(app.engine, _context(terminal), app.clock) as uow:
        return CardCheckOut.of(check_card(uow, keys, body.card_token))


def _redeem(
    app: Container, keys: RedemptionKeys, terminal: Principal, command: RedeemCommand, conn: Connection
) -> bytes:
    """The sale in one unit of work; the receipt's bytes are stored with it as the key's answer."""
    with SqlRedemptionUnitOfWork(app.engine, _context(terminal), app.clock, conn) as uow:
        receipt = redeem(uow, keys, command, _receipt_bytes)
    return _receipt_bytes(receipt)  # the same bytes the key stored: the model dump is deterministic


def _receipt_bytes(receipt: Receipt) -> bytes:
    return ReceiptOut.of(receipt).model_dump_json().encode()


def _context(terminal: Principal) -> AccessContext:
    return AccessContext(terminal.actor(), PURPOSE)


def _problem_bytes(refused: DomainError, code: int) -> bytes:
    title = refused.kind.value.replace("_", " ").capitalize()
    return bytes(problem(code, refused.code, title, refused.message, **refused.public).body)

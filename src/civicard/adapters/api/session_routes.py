"""/v1/sessions (staff sign-in and sign-out) and /v1/terminals/ping (a terminal checks its key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from civicard.adapters.api.access import App, Caller, Terminal, caller

router = APIRouter(prefix="/v1", tags=["sessions"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read"},
    401: {"description": "Sign-in refused, or no valid session"},
    403: {"description": "Not allowed (card not valid, PIN locked)"},
    404: {"description": "Unknown card"},
    409: {"description": "No PIN set"},
    422: {"description": "Invalid input"},
    429: {"description": "Too many attempts; see Retry-After"},
}


class SignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=60)
    password: str = Field(max_length=1024)
    totp_code: str | None = Field(default=None, max_length=10, description="Required for admins and oversight.")


class ResidentSignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card_handle: str = Field(max_length=20, examples=["K7QM-Z2PX-4AB"])
    pin: str = Field(max_length=6)


class SessionOut(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    csrf_token: str
    role: str
    display_name: str


class TerminalOut(BaseModel):
    terminal_id: str
    label: str


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/sessions", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def sign_in(body: SignInIn, request: Request, app: App) -> SessionOut:
    signed = app.auth.sign_in(body.username, body.password, body.totp_code, client_address(request))
    p = signed.principal
    return SessionOut(
        token=signed.session_token, csrf_token=signed.csrf_token, role=p.role, display_name=p.display_name
    )


@router.post("/me/sessions", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def resident_sign_in(body: ResidentSignInIn, request: Request, app: App) -> SessionOut:
    """A card holder signs in with the card's handle and PIN (five wrong PINs lock the card)."""
    signed = app.resident_sign_in.open_session(body.card_handle, body.pin, client_address(request))
    return SessionOut(token=signed.session_token, csrf_token=signed.csrf_token, role="resident", display_name="")


@router.delete("/sessions/current", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEMS)
def sign_out(who: Annotated[Caller, Depends(caller)], app: App) -> Response:
    app.auth.sign_out(who.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/terminals/ping", responses=PROBLEMS)
def ping(terminal: Terminal) -> TerminalOut:
    """A terminal checks that its device key is registered and its clock and signing are right."""
    return TerminalOut(terminal_id=terminal.id, label=terminal.display_name)

"""The vendor terminal page (phone-sized): the device key never leaves the browser.

The shop imports its terminal id and device key (base64 raw 32-byte Ed25519 private key) into the
browser's localStorage; static/terminal.js signs POST /v1/terminal/card-check and POST
/v1/redemptions with WebCrypto Ed25519 over exactly `identity.terminal_auth.canonical_request`.
The server only serves the page: no session, no personal data, nothing in URLs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from civicard.adapters.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/terminal", response_class=HTMLResponse)
def terminal_page(request: Request) -> HTMLResponse:
    return render(request, "terminal.html")

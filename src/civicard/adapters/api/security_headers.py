"""The security headers every response carries: a strict Content-Security-Policy and its companions.

Pages load scripts, styles and images from this origin only, and no page has inline script, inline
style or an event-handler attribute (htmx is told not to inject its indicator style; civicard.css
has it). A successful XSS therefore cannot run injected markup, and a page cannot be framed
(clickjacking), submit forms elsewhere or rebase its relative URLs.

Two kinds of response get a different policy:

- FastAPI's API documentation (/docs, /redoc) is Swagger UI or ReDoc from cdn.jsdelivr.net, bootstrapped by
  an inline script. Those pages get a policy naming the CDN (and ReDoc's Google fonts) and the
  SHA-256 of each inline script, computed from the page as served, so a FastAPI upgrade that
  rewrites the bootstrap keeps working while any other inline script stays refused. Their own
  libraries inject styles, hence 'unsafe-inline' for styles there only.
- A PDF (the printed card) gets no CSP: browsers' built-in viewers wrap it in a synthetic page with
  inline styles and an <embed> that a page policy would block. X-Frame-Options still applies.

Strict-Transport-Security is sent only on a request that came over HTTPS (uvicorn sets the scheme
from X-Forwarded-Proto when the proxy is trusted): over plain HTTP the header is ignored anyway, and
a development server on http://localhost must not pin itself to HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",  # the terminal's camera preview
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    )
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})  # FastAPI's defaults, kept by create_app
DOCS_CDN = "https://cdn.jsdelivr.net"
# Camera for the vendor terminal's QR scanning (the same origin only); the preview video may play.
# Every other powerful feature is off, for this origin and for anything it could embed. Only features
# Chromium recognises are named: an unknown one is an error in the console (the browser tests check it).
PERMISSIONS_POLICY = ", ".join(
    [
        "camera=(self)",
        "autoplay=(self)",
        *(
            f"{feature}=()"
            for feature in (
                "accelerometer",
                "browsing-topics",
                "display-capture",
                "encrypted-media",
                "fullscreen",
                "gamepad",
                "geolocation",
                "gyroscope",
                "hid",
                "identity-credentials-get",
                "idle-detection",
                "local-fonts",
                "magnetometer",
                "microphone",
                "midi",
                "otp-credentials",
                "payment",
                "picture-in-picture",
                "publickey-credentials-create",
                "publickey-credentials-get",
                "screen-wake-lock",
                "serial",
                "storage-access",
                "usb",
                "window-management",
                "xr-spatial-tracking",
            )
        ),
    ]
)
COMMON_HEADERS = (
    ("X-Frame-Options", "DENY"),
    # same-origin rather than no-referrer: nothing about a page (paths carry household and case ids)
    # leaves for another site, while same-origin POSTs keep their Origin header (no-referrer turns
    # it into "null"), which a CSRF check may rely on.
    ("Referrer-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
# One year, this host only: a town may run other services on sibling subdomains over plain HTTP.
HSTS = ("Strict-Transport-Security", "max-age=31536000")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(page: bytes) -> str:
    """The policy of an API documentation page: its CDN, and exactly the inline scripts it holds."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {DOCS_CDN} {hashes}".rstrip(),
            f"style-src 'self' {DOCS_CDN} https://fonts.googleapis.com 'unsafe-inline'",
            "font-src 'self' https://fonts.gstatic.com",
            "img-src 'self' data: https://fastapi.tiangolo.com",
            "worker-src 'self' blob:",  # ReDoc's search index
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
        )
    )


def _add_headers(start: Message, https: bool, policy: str | None) -> None:
    headers = MutableHeaders(scope=start)
    if policy is not None and not headers.get("content-type", "").startswith("application/pdf"):
        headers.setdefault("Content-Security-Policy", policy)
    for name, value in (*COMMON_HEADERS, *((HSTS,) if https else ())):
        headers.setdefault(name, value)


class SecurityHeaders:
    """Pure ASGI middleware (no BaseHTTPMiddleware: streamed bodies pass through untouched).

    A header a route set itself is kept; every other response gets the ones above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        if scope["path"] in DOCS_PATHS:
            await self._documentation(scope, receive, send, https)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message, https, PAGE_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _documentation(self, scope: Scope, receive: Receive, send: Send, https: bool) -> None:
        """The docs page is small and its policy depends on its body: hold the body, then send both."""
        start: Message | None = None
        body = bytearray()

        async def send_when_complete(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            _add_headers(start, https, docs_policy(bytes(body)))
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})

        await self.app(scope, receive, send_when_complete)

"""Server-side sessions: timeouts, random tokens (only their hashes are stored) and CSRF tokens.

A session token is a bearer secret sent in a cookie; the database keeps SHA-256(token), so a
leaked table does not yield usable sessions. The CSRF token is a second random value tied to the
session and echoed in forms; it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_TOKEN_LENGTH = 200  # anything longer is not one of ours; refuse before hashing


@dataclass(frozen=True)
class SessionPolicy:
    """Idle and absolute timeouts (OWASP session guidance: 15 min idle, one working day absolute).

    `touch_interval` limits how often last_seen_at is rewritten: an idle timeout may therefore end
    a session up to that much early, in exchange for one write a minute instead of one a request.
    """

    idle_timeout: timedelta = timedelta(minutes=15)
    absolute_timeout: timedelta = timedelta(hours=8)
    touch_interval: timedelta = timedelta(minutes=1)

    def expiry_reason(self, created_at: datetime, last_seen_at: datetime, now: datetime) -> str | None:
        """'absolute' or 'idle' if the session has run out at `now`, else None."""
        if now - created_at >= self.absolute_timeout:
            return "absolute"
        if now - last_seen_at >= self.idle_timeout:
            return "idle"
        return None

    def needs_touch(self, last_seen_at: datetime, now: datetime) -> bool:
        return now - last_seen_at >= self.touch_interval


def new_session_token() -> str:
    """256 random bits, URL-safe (fits a cookie)."""
    return secrets.token_urlsafe(32)


def hash_session_token(token: str) -> str:
    """What the database stores and looks up: SHA-256 hex (64 characters)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one a form or header sent."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())

"""Domain errors: a stable machine code, a message a clerk understands, and an error kind.

Adapters map the kind to HTTP statuses, page messages and CLI exit codes in one place each;
tests assert on the code, never on the wording.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorKind(Enum):
    INVALID = "invalid"  # the input is wrong; nothing was written
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the input clashes with the current state
    FORBIDDEN = "forbidden"  # the actor may not do this, or not for this purpose
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"


class DomainError(Exception):
    """An expected refusal. `code` is stable (snake_case); `message` is for people."""

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details  # for logs and callers; never sent to clients as is
        self.public: dict[str, Any] = {}  # extra fields a client may see in the problem response

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidInput(DomainError):
    kind = ErrorKind.INVALID


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED


class Unavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE

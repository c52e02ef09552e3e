"""Who is calling and why: the access context of an API request.

Until staff authentication lands, demo mode accepts a *declared* actor and role in headers so
the demo and tests can exercise every role; production refuses such requests (401) rather than
trusting them. The purpose header is required for every request that touches personal data.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from civicard.bootstrap import Container
from civicard.settings import Mode
from civicard.shared.errors import Forbidden, InvalidInput, Unauthenticated
from civicard.transparency.access import AccessContext, Actor

_ACTOR = re.compile(r"^[A-Za-z0-9._:@-]{1,120}$")
_WORD = re.compile(r"^[a-z_]{1,60}$")


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def access_context(
    app_container: Annotated[Container, Depends(container)],
    x_civicard_purpose: Annotated[str | None, Header(description="Allow-listed purpose of this read or write.")] = None,
    x_civicard_actor: Annotated[str | None, Header(description="Demo mode only: the acting account.")] = None,
    x_civicard_role: Annotated[str | None, Header(description="Demo mode only: the actor's role.")] = None,
) -> AccessContext:
    if app_container.settings.mode is not Mode.DEMO:
        raise Unauthenticated(
            "authentication_unavailable", "Staff authentication is not configured; declared identities are demo-only."
        )
    if not x_civicard_actor or not _ACTOR.match(x_civicard_actor):
        raise Unauthenticated("actor_required", "Name the acting account in X-Civicard-Actor.")
    if not x_civicard_role or not _WORD.match(x_civicard_role):
        raise Unauthenticated("role_required", "Name the actor's role in X-Civicard-Role.")
    if not x_civicard_purpose:
        raise Forbidden("purpose_required", "Name the purpose of this request in X-Civicard-Purpose.")
    if not _WORD.match(x_civicard_purpose):
        raise InvalidInput("unknown_purpose", "X-Civicard-Purpose must be an allow-listed purpose.")
    return AccessContext(Actor(x_civicard_actor, x_civicard_role), x_civicard_purpose)


Access = Annotated[AccessContext, Depends(access_context)]
App = Annotated[Container, Depends(container)]

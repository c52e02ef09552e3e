"""The application factory a multi-worker ASGI server imports (`civicard serve` runs one process).

    uvicorn --factory civicard.adapters.api.asgi:create_app_from_environment --workers 4 ...

Each worker process calls the factory once, after the fork, and so builds its own container —
engine and connection pool, keys, access-log integrator — from the CIVICARD_* environment.
Importing the module does nothing: there is no module-level `app`, because building one means
reading settings and keys and connecting, which civicard never does at import time.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from civicard.adapters.api.app import create_app
from civicard.adapters.api.observability import configure_logging
from civicard.adapters.demo_accounts import active_demo_accounts
from civicard.bootstrap import bootstrap
from civicard.settings import Mode, Settings

log = logging.getLogger(__name__)


def create_app_from_environment() -> FastAPI:
    """One worker's application, refused on the same grounds as `civicard serve`: settings that do
    not validate (production without a real root key, a short metrics token, …) or, in production,
    demo accounts still active.

    A refusal is logged in one line (the reason, never a key) and ends the worker with uvicorn's
    start-up failure code, on which uvicorn stops the whole server instead of restarting the worker
    forever; systemd then reports the unit failed."""
    try:
        settings = Settings()
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        log.critical("civicard refuses to start: settings: %s", reason)
        raise SystemExit(STARTUP_FAILURE) from None
    configure_logging(settings)
    container = bootstrap(settings)
    if settings.mode is Mode.PRODUCTION and (demo := active_demo_accounts(container)):
        container.close()
        log.critical(
            "civicard refuses to start: demo accounts are active (%s); `civicard users disable`", ", ".join(demo)
        )
        raise SystemExit(STARTUP_FAILURE)
    return create_app(container)

"""What every adapter needs to publish rule versions: the unit of work under the publication
purpose, the impact preview's registry reader, and the rule tests' PostgreSQL connection."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from civicard.adapters.db.program_inputs import registry_inputs
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount
from civicard.programs import publishing
from civicard.programs.projection import RuleInputs
from civicard.programs.publishing import Connect, InputsReader
from civicard.transparency.access import AccessContext, Actor


def publication_uow(built: Container, account: StaffAccount) -> SqlUnitOfWork:
    publishing.require_program_admin(account)  # before the unit refuses the purpose less clearly
    return built.uow(AccessContext(Actor(account.id, account.role), publishing.PURPOSE))


def impact_reader(built: Container, account: StaffAccount) -> InputsReader:
    """Reads every household's rule inputs in a unit of its own under `impact_preview` (one log entry each)."""
    context = AccessContext(Actor(account.id, account.role), "impact_preview")

    def read(day: date, detail: str) -> RuleInputs:
        with built.uow(context) as uow:
            inputs = registry_inputs(uow, day, detail)
            uow.commit()
        return inputs

    return read


def postgres_connector(engine: sa.Engine) -> Connect | None:
    """On PostgreSQL, a separate psycopg connection for the rule tests (temporary tables stay off the unit's)."""
    if engine.dialect.name != "postgresql":
        return None
    import psycopg

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    # Only the session's temporary schema on the path: the tests' tables are called `households` and
    # `members`, and must never resolve to (or drop) the registry's own tables.
    return lambda: psycopg.connect(url, options="-c search_path=pg_temp")

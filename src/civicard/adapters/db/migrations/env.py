"""Alembic environment: migrations run on an unguarded engine (schema work, no personal reads)."""

from __future__ import annotations

from alembic import context

from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.tables import metadata

config = context.config


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", guarded=False)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()

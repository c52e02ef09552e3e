"""Cycle jobs: a web-started cycle's progress in the database, so every server worker sees it.

Revision ID: 0014_cycle_jobs
Revises: 0013_retention
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_cycle_jobs"
down_revision = "0013_retention"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cycle_jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("started_by", sa.String(length=120), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("slot", sa.String(length=10), nullable=True),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_jobs")),
        sa.UniqueConstraint("slot", name=op.f("uq_cycle_jobs_slot")),
    )


def downgrade() -> None:
    op.drop_table("cycle_jobs")

"""Refusal counts per period, outlet and reason code, for the exclusion report (issue 7, item 5).

A counter, not a log: no card, household, person or time of day is stored, so the table holds
no personal data (the redemption path bumps a count each time it refuses a sale).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refusal_counts",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("outlet_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("period", "outlet_id", "code", name="pk_refusal_counts"),
    )


def downgrade() -> None:
    op.drop_table("refusal_counts")

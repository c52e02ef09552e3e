"""Key custody: key generations and rotations (issue 9, item 5).

Revision ID: 0012_key_custody
Revises: 0011_life_events
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_key_custody"
down_revision = "0011_life_events"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # No rows means today's keys: issuer kid 1 and checkpoint generation 0 (governance/key_custody.py).
    op.create_table(
        "key_generations",
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("approval_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("purpose", "generation", name="pk_key_generations"),
    )


def downgrade() -> None:
    op.drop_table("key_generations")

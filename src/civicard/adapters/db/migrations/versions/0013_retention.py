"""Retention and erasure (issue 9, item 3).

Revision ID: 0013_retention
Revises: 0012_key_custody
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_retention"
down_revision = "0012_key_custody"
branch_labels = None
depends_on = None


ID = sa.String(length=32)
DIGEST = sa.String(length=64)
_ERASED_COLUMNS = ("erasure_id", "erased_subject", "erased_chain")


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", ID, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("erased_by", sa.String(length=120), nullable=False),
        sa.Column("subject_digest", DIGEST, nullable=False),
        sa.Column("log_entries", sa.Integer(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasures"),
        sa.UniqueConstraint("subject_digest", name="uq_erasures_subject_digest"),
    )
    op.add_column("access_log", sa.Column("erasure_id", ID, nullable=True))
    op.add_column("access_log", sa.Column("erased_subject", DIGEST, nullable=True))
    op.add_column("access_log", sa.Column("erased_chain", DIGEST, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        for name in reversed(_ERASED_COLUMNS):
            batch.drop_column(name)
    op.drop_table("erasures")

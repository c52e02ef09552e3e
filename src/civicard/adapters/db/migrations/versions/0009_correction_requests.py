"""Correction requests: a resident says which recorded fact is wrong and what is right; a reviewer
answers (issue 8, item 5: the resident portal).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "correction_requests",
        sa.Column("id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("household_id", ID, nullable=True),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("filed_at", TS, nullable=False),
        sa.Column("answered_by", sa.String(length=120), nullable=True),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("answer_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_correction_requests_person_id_persons"),
        sa.PrimaryKeyConstraint("id", name="pk_correction_requests"),
    )
    op.create_index("ix_correction_requests_person_id", "correction_requests", ["person_id"])
    op.create_index("ix_correction_requests_queue", "correction_requests", ["status", "filed_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_correction_requests_queue", table_name="correction_requests")
    op.drop_index("ix_correction_requests_person_id", table_name="correction_requests")
    op.drop_table("correction_requests")

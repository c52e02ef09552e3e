"""Four-eyes approvals: one staff account asks, a second one approves or refuses (issue 9, item 2).

Revision ID: 0010_approvals
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_approvals"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
CODE = sa.String(length=40)
TS = sa.DateTime(timezone=True)
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", CODE, nullable=False),
        sa.Column("subject_key", sa.String(length=80), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("requested_role", CODE, nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_role", CODE, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approval_requests"),
    )
    op.create_index("ix_approval_requests_queue", "approval_requests", ["status", "requested_at", "id"])
    op.create_index(
        "uq_approval_requests_pending_subject",
        "approval_requests",
        ["subject_key"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_approval_requests_pending_subject", table_name="approval_requests")
    op.drop_index("ix_approval_requests_queue", table_name="approval_requests")
    op.drop_table("approval_requests")

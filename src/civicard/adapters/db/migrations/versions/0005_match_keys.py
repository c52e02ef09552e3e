"""Duplicate matching on enrollment: persons' blocking keys and the name-frequency snapshot.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_match_keys",
        sa.Column("person_id", sa.String(length=32), sa.ForeignKey("persons.id"), primary_key=True),
        sa.Column("match_key", sa.String(length=300), primary_key=True),
    )
    op.create_index("ix_person_match_keys_key", "person_match_keys", ["match_key"])
    op.create_table(
        "name_frequencies",
        sa.Column("column_name", sa.String(length=40), primary_key=True),
        sa.Column("value", sa.String(length=300), primary_key=True),
        sa.Column("frequency", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("name_frequencies")
    op.drop_index("ix_person_match_keys_key", table_name="person_match_keys")
    op.drop_table("person_match_keys")

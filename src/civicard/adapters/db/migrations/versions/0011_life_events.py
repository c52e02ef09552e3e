"""Life events: death, birth, household split and merge, moves (issue 9, item 1).

Revision ID: 0011_life_events
Revises: 0010_approvals
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_life_events"
down_revision = "0010_approvals"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
CODE = sa.String(length=40)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A nullable column without a constraint: added in place on both databases (no table rebuild).
    op.add_column("persons", sa.Column("deceased_on", sa.Date(), nullable=True))
    op.create_table(
        "life_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", CODE, nullable=False),
        sa.Column("person_id", ID, nullable=True),
        sa.Column("household_id", ID, nullable=True),
        sa.Column("other_household_id", ID, nullable=True),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("document_ref", sa.String(length=60), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_life_events_person_id_persons"),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"], name="fk_life_events_household_id_households"),
        sa.ForeignKeyConstraint(
            ["other_household_id"], ["households.id"], name="fk_life_events_other_household_id_households"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_life_events"),
    )
    for column in ("person_id", "household_id", "other_household_id"):
        op.create_index(f"ix_life_events_{column}", "life_events", [column])


def downgrade() -> None:
    for column in ("person_id", "household_id", "other_household_id"):
        op.drop_index(f"ix_life_events_{column}", table_name="life_events")
    op.drop_table("life_events")
    op.drop_column("persons", "deceased_on")  # SQLite ≥ 3.35 drops a plain column in place

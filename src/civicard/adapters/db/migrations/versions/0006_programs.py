"""Programs: item catalogue, the register of rule versions, benefit periods and cycle runs,
decisions with their input snapshots, entitlements and appeals.

On PostgreSQL the per-period tables (decision_inputs, decisions, entitlements) are partitioned by
period from the start: a cycle adds its period's partition; a DEFAULT partition catches the rest.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
CODE = sa.String(length=40)
PERIOD = sa.String(length=7)
TS = sa.DateTime(timezone=True)
PARTITIONED = ("decision_inputs", "decisions", "entitlements")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("code", CODE, primary_key=True),
        sa.Column("name_es", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("unit", CODE, nullable=False),
        sa.Column("kind", CODE, nullable=False),
        sa.Column("atc_code", sa.String(length=10), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "program_versions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("program", CODE, nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("title_es", sa.String(length=300), nullable=False),
        sa.Column("title_en", sa.String(length=300), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("tests_passed", sa.Integer(), nullable=False),
        sa.Column("impact", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=120), nullable=False),
        sa.Column("proposed_at", TS, nullable=False),
        sa.Column("proposal_note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("retired_by", sa.String(length=120), nullable=True),
        sa.Column("retired_at", TS, nullable=True),
        sa.UniqueConstraint("program", "version", name="uq_program_versions_program_version"),
        sa.UniqueConstraint("sha256", name="uq_program_versions_sha256"),
    )
    op.create_table(
        "benefit_periods",
        sa.Column("period", PERIOD, primary_key=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
    )
    op.create_table(
        "cycle_runs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("period", PERIOD, sa.ForeignKey("benefit_periods.period"), nullable=False, index=True),
        sa.Column("programs", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("started_by", sa.String(length=120), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("decisions_new", sa.Integer(), nullable=False),
        sa.Column("decisions_changed", sa.Integer(), nullable=False),
        sa.Column("entitlements_new", sa.Integer(), nullable=False),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    kw = {"postgresql_partition_by": "LIST (period)"}
    op.create_table(
        "decision_inputs",
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("household_id", ID, nullable=False),
        sa.Column("inputs_sha256", sa.String(length=64), nullable=False),
        sa.Column("region", CODE, nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("period", "household_id", "inputs_sha256", name="pk_decision_inputs"),
        **kw,
    )
    op.create_table(
        "decisions",
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("household_id", ID, nullable=False),
        sa.Column("program", CODE, nullable=False),
        sa.Column("program_version_id", ID, nullable=False),
        sa.Column("rules_sha256", sa.String(length=64), nullable=False),
        sa.Column("inputs_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=12), nullable=False),
        sa.Column("cycle_run_id", ID, nullable=True),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("superseded_at", TS, nullable=True),
        sa.Column("superseded_by", ID, nullable=True),
        sa.PrimaryKeyConstraint("period", "id", name="pk_decisions"),
        **kw,
    )
    op.create_index(
        "uq_decisions_current",
        "decisions",
        ["period", "household_id", "program"],
        unique=True,
        sqlite_where=sa.text("superseded_at IS NULL"),
        postgresql_where=sa.text("superseded_at IS NULL"),
    )
    op.create_index("ix_decisions_household_id", "decisions", ["household_id"])
    op.create_table(
        "entitlements",
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("household_id", ID, nullable=False),
        sa.Column("program", CODE, nullable=False),
        sa.Column("item_code", CODE, nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("period", "id", name="pk_entitlements"),
        sa.UniqueConstraint("period", "household_id", "program", "item_code", name="uq_entitlements_slot"),
        **kw,
    )
    op.create_table(
        "appeals",
        sa.Column("id", ID, primary_key=True),
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("decision_id", ID, nullable=False, index=True),
        sa.Column("household_id", ID, nullable=False, index=True),
        sa.Column("program", CODE, nullable=False),
        sa.Column("person_id", ID, sa.ForeignKey("persons.id"), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("filed_at", TS, nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("new_decision_id", ID, nullable=True),
    )
    op.create_index(
        "uq_appeals_open_decision",
        "appeals",
        ["decision_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in PARTITIONED:
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


def downgrade() -> None:
    op.drop_index("uq_appeals_open_decision", table_name="appeals")
    op.drop_table("appeals")
    op.drop_table("entitlements")
    op.drop_index("ix_decisions_household_id", table_name="decisions")
    op.drop_index("uq_decisions_current", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("decision_inputs")
    op.drop_table("cycle_runs")
    op.drop_table("benefit_periods")
    op.drop_table("program_versions")
    op.drop_table("items")

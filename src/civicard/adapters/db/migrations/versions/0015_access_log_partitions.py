"""Access log partitions: on PostgreSQL access_log becomes RANGE-partitioned by seq, rows kept.

Every read of personal data is logged, so at national size the log holds hundreds of millions of
rows. Partitioning by the primary key keeps the key (and log_leaves' foreign key to it) valid,
keeps each partition's indexes small, and lets seq-range reads (the integrator's) touch only their
partitions. The existing table is rebuilt: a partitioned access_log with partitions up to
`PARTITIONS_AHEAD` beyond the highest seq (adapters/db/log_partitions.py, which also makes later
ones), the rows copied with their seqs, the seq sequence kept (it was OWNED BY the old column and
would have been dropped with it), indexes built after the copy, every foreign key that referenced
the old table pointed at the new one. The downgrade rebuilds a plain table the same way.
SQLite has no partitioning: there the migration does nothing.

Revision ID: 0015_access_log_partitions
Revises: 0014_cycle_jobs
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from civicard.adapters.db import log_partitions

revision = "0015_access_log_partitions"
down_revision = "0014_cycle_jobs"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
DIGEST = sa.String(length=64)
SEQUENCE = "access_log_seq_seq"  # made by 0001's BIGSERIAL
INDEXES = ("ix_access_log_subject_household_id", "ix_access_log_subject_person_id")
COLUMNS = (
    "seq",
    "occurred_at",
    "actor",
    "role",
    "purpose",
    "action",
    "subject_person_id",
    "subject_household_id",
    "categories",
    "detail",
    "subject_salt",
    "erasure_id",
    "erased_subject",
    "erased_chain",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    references = _set_aside("access_log_unpartitioned")
    _create_access_log(postgresql_partition_by="RANGE (seq)")
    top = bind.execute(sa.text("SELECT max(seq) FROM access_log_unpartitioned")).scalar() or 0
    taken = max(top, log_partitions.highest_seq_taken(bind))
    log_partitions.ensure_log_partitions(bind, taken + log_partitions.PARTITIONS_AHEAD * log_partitions.PARTITION_SIZE)
    _move_rows("access_log_unpartitioned", references)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    references = _set_aside("access_log_partitioned")
    _create_access_log()
    _move_rows("access_log_partitioned", references)  # dropping it drops its partitions


def _set_aside(new_name: str) -> list[tuple[str, str, str]]:
    """Unhook the current access_log (foreign keys to it, its key and indexes) and rename it.

    Returns each referencing foreign key as (table, name, definition) to re-create afterwards."""
    bind = op.get_bind()
    references = [
        (str(table), str(name), str(definition))
        for table, name, definition in bind.execute(
            sa.text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND confrelid = to_regclass('access_log') ORDER BY conname"
            )
        )
    ]
    for table, name, _ in references:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    op.execute("ALTER TABLE access_log DROP CONSTRAINT pk_access_log")
    for index in INDEXES:
        op.execute(f"DROP INDEX {index}")
    op.execute(f"ALTER TABLE access_log RENAME TO {new_name}")
    return references


def _create_access_log(**kw: str) -> None:
    """access_log as of 0014, its seq drawing from the kept sequence; key and indexes come later."""
    op.create_table(
        "access_log",
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default=sa.text(f"nextval('{SEQUENCE}'::regclass)")),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=60), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("subject_person_id", ID, nullable=True),
        sa.Column("subject_household_id", ID, nullable=True),
        sa.Column("categories", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("subject_salt", sa.String(length=32), server_default="", nullable=False),
        sa.Column("erasure_id", ID, nullable=True),
        sa.Column("erased_subject", DIGEST, nullable=True),
        sa.Column("erased_chain", DIGEST, nullable=True),
        **kw,
    )
    # The sequence now belongs to the new column, so dropping the old table keeps it.
    op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY access_log.seq")


def _move_rows(old: str, references: list[tuple[str, str, str]]) -> None:
    """Copy every row with its seq, then build the key and indexes (faster than filling them row by
    row), point the foreign keys back at access_log, and drop the old table."""
    columns = ", ".join(COLUMNS)
    op.execute(f"INSERT INTO access_log ({columns}) SELECT {columns} FROM {old}")  # noqa: S608 - names in code
    op.execute("ALTER TABLE access_log ADD CONSTRAINT pk_access_log PRIMARY KEY (seq)")
    op.execute("CREATE INDEX ix_access_log_subject_household_id ON access_log (subject_household_id)")
    op.execute("CREATE INDEX ix_access_log_subject_person_id ON access_log (subject_person_id)")
    for table, name, definition in references:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    op.execute(f"DROP TABLE {old}")
    op.execute("ANALYZE access_log")

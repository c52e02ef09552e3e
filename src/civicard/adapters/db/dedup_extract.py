"""The registry's persons as dedup input records, read in chunks under an access context."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_partitions import make_room_for
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.dedup.records import INPUT_COLUMNS
from civicard.transparency.access import Subject, disclose

CHUNK = 50_000


RECORD_SCHEMA = pa.schema([(name, pa.string()) for name in (*INPUT_COLUMNS, "household_id")])


def registry_records(uow: SqlUnitOfWork, progress: Callable[[int, int], None] = lambda _d, _t: None) -> pa.Table:
    """Every active person with the INPUT_COLUMNS plus their current household id. Each person read
    is logged (purpose of `uow.context`, category identity) in the same transaction."""
    return pa.concat_tables([RECORD_SCHEMA.empty_table(), *registry_pages(uow, progress)])


def registry_pages(
    uow: SqlUnitOfWork, progress: Callable[[int, int], None] = lambda _d, _t: None
) -> Iterator[pa.Table]:
    """`registry_records` one keyset page (CHUNK persons) at a time, each page's reads logged as it
    is read: a caller that writes pages out (a national registry) holds one page in memory."""
    persons, members = t.persons, t.memberships
    after: sa.BindParameter[str] = sa.bindparam("after", type_=sa.String())
    conn = uow.connection
    query = (
        sa.select(
            persons.c.id,
            persons.c.given_names,
            persons.c.first_surname,
            persons.c.second_surname,
            persons.c.birth_date,
            persons.c.sex,
            persons.c.address_line,
            persons.c.postcode,
            persons.c.municipality,
            persons.c.phone,
            persons.c.national_id,
            members.c.household_id,
        )
        .select_from(
            persons.outerjoin(
                members,
                (members.c.person_id == persons.c.id)
                & members.c.valid_to.is_(None)
                # Repeated on the joined side so its index scan starts at the page too: without it
                # PostgreSQL's merge join walks memberships from the first id on every page.
                & (members.c.person_id > after),
            )
        )
        .where(persons.c.record_status != "merged", persons.c.id > after)
        .order_by(persons.c.id)
        .limit(CHUNK)
    )
    total = conn.execute(sa.select(sa.func.count()).select_from(persons)).scalar_one()
    # One read entry a person (30 M in a national run), in this one transaction: their access-log
    # partitions are made first, in a short transaction of their own.
    make_room_for(uow.engine, total)
    done = 0
    last = ""
    while True:  # keyset pages: bounded memory, and the log writes share the connection safely
        chunk = conn.execute(query, {"after": last}).all()
        if not chunk:
            break
        last = chunk[-1].id
        subjects = [Subject.person(row.id) for row in chunk]
        disclose(uow.access_log, uow.context, subjects, ["identity"], "duplicate_screening", uow.clock.now())
        columns = [
            [r.id for r in chunk],
            [r.given_names for r in chunk],
            [f"{r.first_surname} {r.second_surname}".strip() for r in chunk],
            [r.birth_date.isoformat() for r in chunk],
            [r.sex for r in chunk],
            [r.address_line for r in chunk],
            [r.postcode for r in chunk],
            [r.municipality for r in chunk],
            [r.phone for r in chunk],
            [r.national_id for r in chunk],
            [r.household_id for r in chunk],
        ]
        done += len(chunk)
        progress(done, total)
        yield pa.table(dict(zip(RECORD_SCHEMA.names, columns, strict=True)), schema=RECORD_SCHEMA)

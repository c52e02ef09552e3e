"""The registry's persons as dedup input records, read in chunks under an access context."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.dedup.records import INPUT_COLUMNS
from civicard.transparency.access import Subject, disclose

CHUNK = 50_000


def registry_records(uow: SqlUnitOfWork, progress: Callable[[int, int], None] = lambda _d, _t: None) -> pa.Table:
    """Every active person with the INPUT_COLUMNS plus their current household id. Each person read
    is logged (purpose of `uow.context`, category identity) in the same transaction."""
    persons, members = t.persons, t.memberships
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
        .select_from(persons.outerjoin(members, (members.c.person_id == persons.c.id) & members.c.valid_to.is_(None)))
        .where(persons.c.record_status != "merged")
        .order_by(persons.c.id)
    )
    total = conn.execute(sa.select(sa.func.count()).select_from(persons)).scalar_one()
    columns: dict[str, list[object]] = {c: [] for c in (*INPUT_COLUMNS, "household_id")}
    done = 0
    last = ""
    while True:  # keyset pages: bounded memory, and the log writes share the connection safely
        chunk = conn.execute(query.where(persons.c.id > last).limit(CHUNK)).all()
        if not chunk:
            break
        last = chunk[-1].id
        subjects = [Subject.person(row.id) for row in chunk]
        disclose(uow.access_log, uow.context, subjects, ["identity"], "duplicate_screening", uow.clock.now())
        for row in chunk:
            columns["record_id"].append(row.id)
            columns["first_name"].append(row.given_names)
            columns["surname"].append(f"{row.first_surname} {row.second_surname}".strip())
            columns["date_of_birth"].append(row.birth_date.isoformat())
            columns["sex"].append(row.sex)
            columns["address"].append(row.address_line)
            columns["postcode"].append(row.postcode)
            columns["city"].append(row.municipality)
            columns["phone"].append(row.phone)
            columns["national_id"].append(row.national_id)
            columns["household_id"].append(row.household_id)
        done += len(chunk)
        progress(done, total)
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})

"""The resident's download of everything held about them (JSON and PDF), over HTTP, on both databases."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from civicard.adapters.api.app import create_app
from civicard.adapters.db import tables as t
from civicard.registry.recording import record_fact
from tests.conftest import Database
from tests.integration.backup_fixtures import UowFor, build_town, container
from tests.integration.distribution_fixtures import PIN, issue


def test_a_signed_in_resident_downloads_everything_held_and_the_download_is_logged(
    db: Database, tmp_path: Path, uow_for: UowFor
) -> None:
    built = container(db.url, tmp_path / "var")
    try:
        build_town(built, uow_for)
        with uow_for("enrollment") as uow:
            ana, household = uow.connection.execute(
                sa.select(t.memberships.c.person_id, t.memberships.c.household_id)
                .join(t.persons, t.persons.c.id == t.memberships.c.person_id)
                .where(t.persons.c.given_names == "Ana")
            ).one()
        with uow_for("fact_correction") as uow:
            record_fact(
                uow, "incomes", ana, {"source": "wages"}, {"monthly_amount_minor": 80000}, date(2020, 1, 1), "r"
            )
            record_fact(
                uow, "incomes", ana, {"source": "wages"}, {"monthly_amount_minor": 90000}, date(2021, 1, 1), "r"
            )
            uow.commit()
        card = issue(built.engine, built.clock, built.card_keys, ana, household)
        client = TestClient(create_app(built))
        assert client.get("/me/download.json", follow_redirects=False).status_code == 303  # not signed in

        signed = client.post("/me/signin", data={"handle": card.handle, "pin": PIN}, follow_redirects=False)
        assert signed.status_code == 303
        response = client.get("/me/download.json")

        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        held = response.json()
        assert held["person_id"] == ana
        assert {d["name"]: d["value"] for d in held["person"]}["given_names"] == "Ana"
        assert [m["full_name"].split()[0] for m in held["household"]["members"]] == ["Ana", "Luis"]
        incomes = held["facts"]["incomes"]
        assert [v["values"]["monthly_amount_minor"] for v in incomes] == [80000, 90000]  # with history
        assert [c["status"] for c in held["cards"]] == ["valid"] and "handle" not in held["cards"][0]
        details = [e["detail"] for e in held["access_log"]]
        assert "self.download" in details and "self.record_read" in details  # the download itself is logged
        assert all(e["subject_person_id"] == ana for e in held["access_log"])

        pdf = client.get("/me/download.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
    finally:
        built.close()

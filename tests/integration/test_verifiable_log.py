"""The stored verifiable log on SQLite and PostgreSQL: integration, tampering, proofs, residents, CLI."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, insert, select, update
from typer.testing import CliRunner

from civicard.adapters.cli.audit import audit_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.log_store import (
    Integrator,
    consistency_between,
    latest_checkpoint,
    prove_entry,
    record_checkpoint,
    resident_log,
    stored_consistency_proof,
    stored_inclusion_proof,
    stored_root,
    verify_stored_log,
)
from civicard.adapters.db.repositories import SqlAccessLog
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.lookup import get_person, search_persons
from civicard.settings import demo_root_key
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey, parse_root_key
from civicard.transparency.access import AccessEntry, Subject
from civicard.transparency.checkpoints import Checkpoint, NoteSigner, sign_checkpoint
from civicard.transparency.log_entries import LogEntry, categories_from_column, entry_leaf_hash, plain_entry
from civicard.transparency.merkle import MerkleTree, verify_consistency, verify_inclusion
from civicard.transparency.proofs import (
    ResidentReceipt,
    check_proof_bundle,
    verify_resident_log,
)
from tests.conftest import FIXED_NOW, Database

runner = CliRunner()
UowFor = Callable[..., SqlUnitOfWork]
_A, _L, _N, _C = t.access_log, t.log_leaves, t.log_nodes, t.log_checkpoints


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def env(db: Database, data_dir: Path) -> dict[str, str]:
    return {"CIVICARD_DATABASE_URL": db.url, "CIVICARD_DATA_DIR": str(data_dir), "CIVICARD_MODE": "demo"}


@pytest.fixture
def signer(data_dir: Path) -> NoteSigner:
    """The same key the CLI derives: from the demo root key in the data dir."""
    return NoteSigner.from_root_key(RootKey(parse_root_key(demo_root_key(data_dir)[0])))


@pytest.fixture
def log_engine(engine: object) -> Engine:
    assert isinstance(engine, Engine)
    return engine


@pytest.fixture
def integrator(log_engine: Engine, signer: NoteSigner, clock: Clock) -> Integrator:
    return Integrator(log_engine, signer, clock)


def audit(env: dict[str, str], *args: str) -> Any:
    return runner.invoke(audit_app, list(args), env=env)


# --------------------------------------------------------------------------- a small town, through the services


@dataclass(frozen=True)
class Town:
    household: str
    ana: str
    luis: str
    first_checkpoint_size: int


def _person(given: str, national_id: str, household_id: str, relationship: str) -> EnrollPerson:
    return EnrollPerson(
        given_names=given,
        first_surname="Pérez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        national_id=national_id,
        household_id=household_id,
        relationship=relationship,
    )


def build_town(uow_for: UowFor, integrate: Callable[[], object]) -> Town:
    """Leaves 0–4 (first checkpoint, size 5), then 5–7. Ana's entries are at leaves 1, 3, 4 and 7."""
    with uow_for("enrollment") as uow:
        household = create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id
    with uow_for("enrollment") as uow:
        ana = enroll_person(uow, _person("Ana", "52123456", household, "reference")).id
    with uow_for("enrollment") as uow:
        luis = enroll_person(uow, _person("Luis", "52123457", household, "spouse")).id
    for _ in range(2):
        with uow_for("enrollment") as uow:
            get_person(uow, ana)
    integrate()
    with uow_for("card_service") as uow:
        get_person(uow, luis)
    with uow_for("enrollment") as uow:
        assert search_persons(uow, "zzzz") == []  # an entry about nobody
    with uow_for("card_service") as uow:
        get_person(uow, ana)
    integrate()
    return Town(household, ana, luis, 5)


def leaf_seqs(conn: Connection) -> dict[int, int]:
    return dict(conn.execute(select(_L.c.leaf_index, _L.c.entry_seq).order_by(_L.c.leaf_index)).all())


def resident_check(conn: Connection, person_id: str, signer: NoteSigner, receipt: ResidentReceipt | None) -> str:
    """What the resident's client concludes: the verification code, or the server's refusal code."""
    try:
        shown = resident_log(conn, person_id, since_tree_size=receipt.tree_size if receipt else None)
    except DomainError as refused:
        return refused.code
    return verify_resident_log(shown, signer.verifier, receipt).code


# --------------------------------------------------------------------------- tampering


def _edit(column: str, value: str) -> Callable[[Connection, dict[int, int], NoteSigner], None]:
    def tamper(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
        conn.execute(update(_A).where(_A.c.seq == seqs[3]).values({column: value}))

    return tamper


def _delete_entry(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    conn.execute(delete(_L).where(_L.c.leaf_index == 3))
    conn.execute(delete(_A).where(_A.c.seq == seqs[3]))


_SWAPPED = (
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
)


def _edit_chain_head(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    conn.execute(update(_L).where(_L.c.leaf_index == 3).values(chain_head=bytes(32)))


def _swap_contents(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    rows = {s: conn.execute(select(_A).where(_A.c.seq == s)).one() for s in (seqs[3], seqs[5])}
    for this, other in ((seqs[3], seqs[5]), (seqs[5], seqs[3])):
        conn.execute(update(_A).where(_A.c.seq == this).values({c: getattr(rows[other], c) for c in _SWAPPED}))


def _swap_leaf_indexes(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    for old, new in ((3, -1), (5, 3), (-1, 5)):
        conn.execute(update(_L).where(_L.c.leaf_index == old).values(leaf_index=new))


def _change_checkpoint_root(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    latest = latest_checkpoint(conn)
    assert latest is not None
    lines = latest.note.split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()
    conn.execute(
        update(_C).where(_C.c.tree_size == latest.tree_size).values(note="\n".join(lines), root_hash=bytes(32))
    )


def _insert_smaller_checkpoint(conn: Connection, seqs: dict[int, int], signer: NoteSigner) -> None:
    """Worst case: signed with the real key, later than the real latest, for fewer leaves."""
    size, later = 6, FIXED_NOW + timedelta(hours=1)
    checkpoint = Checkpoint(signer.name, size, stored_root(conn, size), later)
    conn.execute(
        insert(_C).values(
            tree_size=size,
            root_hash=checkpoint.root_hash,
            signed_at=later,
            key_id=signer.verifier.key_id.hex(),
            note=sign_checkpoint(checkpoint, signer),
        )
    )


def _roll_back_to_first_checkpoint(conn: Connection, seqs: dict[int, int], _: NoteSigner) -> None:
    """Truncate everything after the first checkpoint, consistently: leaves, nodes, entries, checkpoints."""
    keep = 5
    conn.execute(delete(_C).where(_C.c.tree_size > keep))
    for level, index in conn.execute(select(_N.c.level, _N.c.node_index)).all():
        if (index + 1) << level > keep:
            conn.execute(delete(_N).where(_N.c.level == level, _N.c.node_index == index))
    conn.execute(delete(_L).where(_L.c.leaf_index >= keep))
    conn.execute(delete(_A).where(_A.c.seq.in_([s for i, s in seqs.items() if i >= keep])))


@dataclass(frozen=True)
class Tamper:
    name: str
    apply: Callable[[Connection, dict[int, int], NoteSigner], None]
    verify_code: str
    first_bad_leaf: int | None
    resident_code: str
    bundle_code: str | None  # a proof of leaf 3 made after the tampering, checked offline
    only_with_held_checkpoint: bool = False


TAMPERS = [
    Tamper("edit purpose", _edit("purpose", "oversight_case"), "entry_edited", 3, "inclusion_failed", "leaf_mismatch"),
    Tamper("edit detail", _edit("detail", "person.read!"), "entry_edited", 3, "inclusion_failed", "leaf_mismatch"),
    Tamper("edit actor", _edit("actor", "registrar-bob"), "entry_edited", 3, "inclusion_failed", "leaf_mismatch"),
    Tamper("delete entry", _delete_entry, "entry_deleted", 3, "chain_broken", "unknown_entry"),
    # The stored head is not part of the leaf: only the chain recomputation catches it.
    Tamper("edit a stored chain head", _edit_chain_head, "chain_broken", 3, "chain_broken", "proof_valid"),
    # Ana's leaf 3 now holds Luis's entry: her entry at leaf 4 no longer continues her chain.
    Tamper("swap contents", _swap_contents, "entry_edited", 3, "chain_broken", "leaf_mismatch"),
    Tamper("swap leaf indexes", _swap_leaf_indexes, "entries_reordered", 3, "chain_broken", "leaf_mismatch"),
    Tamper("change checkpoint root", _change_checkpoint_root, "bad_signature", None, "bad_signature", "bad_signature"),
    # The forged smaller checkpoint is never served (the service serves the largest), so the resident
    # is unaffected; `audit verify` reports it.
    Tamper(
        "insert smaller checkpoint", _insert_smaller_checkpoint, "checkpoint_shrinks", None, "verified", "proof_valid"
    ),
    # Rolling back consistently looks like a smaller honest log to `audit verify` unless it is given a
    # checkpoint kept earlier; the resident's receipt is such a checkpoint.
    Tamper(
        "roll back to an earlier checkpoint",
        _roll_back_to_first_checkpoint,
        "leaves_missing",
        5,
        "checkpoint_shrinks",
        "proof_valid",
        only_with_held_checkpoint=True,
    ),
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.name for t in TAMPERS])
def test_tampering_is_detected_by_audit_verify_and_by_the_residents_check(
    tamper: Tamper,
    uow_for: UowFor,
    log_engine: Engine,
    env: dict[str, str],
    signer: NoteSigner,
    integrator: Integrator,
    tmp_path: Path,
) -> None:
    town = build_town(uow_for, integrator.run_once)
    clean = audit(env, "verify")
    assert clean.exit_code == 0, clean.output
    with log_engine.connect() as conn:
        seqs = leaf_seqs(conn)
        receipt = verify_resident_log(resident_log(conn, town.ana), signer.verifier).receipt
        latest = latest_checkpoint(conn)
    assert receipt is not None and receipt.entries_seen == 4 and latest is not None
    held = tmp_path / "held-checkpoint.txt"
    held.write_text(latest.note, encoding="utf-8")

    with log_engine.begin() as conn:
        tamper.apply(conn, seqs, signer)

    plain = audit(env, "verify")
    with_held = audit(env, "verify", "--against", str(held))
    checked = [with_held] if tamper.only_with_held_checkpoint else [plain, with_held]
    if tamper.only_with_held_checkpoint:
        assert plain.exit_code == 0, "a consistent rollback is invisible without a checkpoint kept earlier"
    for result in checked:
        assert result.exit_code == 1, result.output
        assert f"({tamper.verify_code})" in result.output
        if tamper.first_bad_leaf is not None:
            assert f"first bad leaf {tamper.first_bad_leaf}" in result.output
    assert len(with_held.output.strip().splitlines()) == 1

    with log_engine.connect() as conn:
        assert resident_check(conn, town.ana, signer, receipt) == tamper.resident_code
        if tamper.bundle_code is not None:
            try:
                code = check_proof_bundle(prove_entry(conn, 3, signer.verifier), signer.verifier).code
            except DomainError as refused:
                code = refused.code
            assert code == tamper.bundle_code


def test_an_untouched_log_verifies_with_exit_0_and_a_one_line_summary(
    uow_for: UowFor, env: dict[str, str], integrator: Integrator
) -> None:
    build_town(uow_for, integrator.run_once)
    result = audit(env, "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verified 8 entries against checkpoint size 8 (root ")
    assert len(result.output.strip().splitlines()) == 1


def test_the_cli_integrates_shows_the_checkpoint_and_verifies_with_a_pinned_key(
    uow_for: UowFor, env: dict[str, str], signer: NoteSigner
) -> None:
    with uow_for("enrollment") as uow:
        create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001"))
    assert audit(env, "checkpoint").exit_code == 1
    integrated = audit(env, "integrate")
    assert (integrated.exit_code, integrated.output) == (0, "integrated 1 entries; signed tree size 1\n")
    shown = audit(env, "checkpoint")
    assert shown.exit_code == 0 and shown.output.startswith("civicard.example/log\n1\n")
    vkey = audit(env, "public-key").output.strip()
    assert vkey == signer.verifier.to_vkey()
    assert audit(env, "verify", "--public-key", vkey).exit_code == 0
    raw = base64.b64encode(signer.verifier.public_key).decode()
    assert audit(env, "verify", "--public-key", raw).exit_code == 0
    other = NoteSigner.from_seed(signer.name, b"\x01" * 32).verifier.to_vkey()
    refused = audit(env, "verify", "--public-key", other)
    assert refused.exit_code == 1 and "(bad_signature)" in refused.output


# --------------------------------------------------------------------------- the integrator


def _entry(detail: str, person: str | None = None) -> AccessEntry:
    subject = Subject.person(person) if person else None
    return AccessEntry(FIXED_NOW, "registrar-ana", "registrar", "enrollment", "read", subject, ("identity",), detail)


def test_a_late_committing_lower_seq_gets_the_next_leaf_and_no_index_is_skipped(
    db: Database, log_engine: Engine, integrator: Integrator, signer: NoteSigner
) -> None:
    if db.backend == "postgresql":  # two real transactions; the one with the lower seq commits last
        early, late = log_engine.connect(), log_engine.connect()
        early.begin()
        SqlAccessLog(early).append([_entry("first seq")])
        with late.begin():
            SqlAccessLog(late).append([_entry("second seq")])
        assert integrator.run_once() == 1
        early.commit()
        early.close()
        late.close()
    else:  # SQLite has one writer at a time: a lower seq can only arrive late if written explicitly
        with log_engine.begin() as conn:
            SqlAccessLog(conn).append([_entry("placeholder"), _entry("second seq")])
            conn.execute(delete(_A).where(_A.c.detail == "placeholder"))
        assert integrator.run_once() == 1
        with log_engine.begin() as conn:
            conn.execute(
                insert(_A).values(
                    seq=1,
                    occurred_at=FIXED_NOW,
                    actor="x",
                    role="registrar",
                    purpose="enrollment",
                    action="read",
                    categories="",
                    detail="first seq",
                )
            )
    assert integrator.run_once() == 1
    with log_engine.connect() as conn:
        order = conn.execute(
            select(_L.c.leaf_index, _A.c.detail, _A.c.seq)
            .join(_A, _A.c.seq == _L.c.entry_seq)
            .order_by(_L.c.leaf_index)
        ).all()
        assert [(i, d) for i, d, _ in order] == [(0, "second seq"), (1, "first seq")]
        assert order[0].seq > order[1].seq
        assert verify_stored_log(conn, signer.verifier).ok


def test_a_straggler_far_behind_the_newest_seq_is_folded_by_the_cycling_sweep(
    log_engine: Engine, signer: NoteSigner, clock: Clock
) -> None:
    integrator = Integrator(log_engine, signer, clock, lookback=0, sweep_window=2)
    with log_engine.begin() as conn:
        SqlAccessLog(conn).append([_entry(f"e{i}") for i in range(6)])
    assert integrator.run_once() == 6
    with log_engine.begin() as conn:  # committed long after it took a seq below everything folded so far
        conn.execute(
            insert(_A).values(
                seq=-5,
                occurred_at=FIXED_NOW,
                actor="x",
                role="registrar",
                purpose="enrollment",
                action="read",
                categories="",
                detail="straggler",
            )
        )
    folded = [integrator.run_once() for _ in range(6)]
    assert sum(folded) == 1 and folded[0] == 0  # not by the recent-rows poll, but within one sweep pass
    with log_engine.begin() as conn:
        conn.execute(
            insert(_A).values(
                seq=-7,
                occurred_at=FIXED_NOW,
                actor="x",
                role="registrar",
                purpose="enrollment",
                action="read",
                categories="",
                detail="imported",
            )
        )
    assert integrator.run_once(full=True) == 1  # what `civicard audit integrate` does after a bulk import
    with log_engine.connect() as conn:
        placed = conn.execute(
            select(_A.c.detail, _L.c.leaf_index).join(_A, _A.c.seq == _L.c.entry_seq).where(_A.c.seq < 0)
        ).all()
        assert sorted(placed) == [("imported", 7), ("straggler", 6)]
        assert verify_stored_log(conn, signer.verifier).ok


def test_two_integrators_running_at_once_never_assign_a_leaf_twice(
    log_engine: Engine, signer: NoteSigner, clock: Clock
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        for i in range(60):
            with log_engine.begin() as conn:
                SqlAccessLog(conn).append([_entry(f"w{i}", f"{i % 5:032x}")])
        stop.set()

    def integrate(integrator: Integrator) -> None:
        try:
            while not stop.is_set():
                integrator.run_once()
                time.sleep(0.002)
            integrator.run_once()
        except BaseException as exc:
            errors.append(exc)

    integrators = [Integrator(log_engine, signer, clock, batch_size=4) for _ in range(2)]
    threads = [threading.Thread(target=write)] + [threading.Thread(target=integrate, args=(i,)) for i in integrators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    integrators[0].run_once()
    with log_engine.connect() as conn:
        leaves = conn.execute(select(_L.c.leaf_index, _L.c.entry_seq)).all()
        assert sorted(i for i, _ in leaves) == list(range(60))
        assert len({s for _, s in leaves}) == 60
        report = verify_stored_log(conn, signer.verifier)
        assert (report.ok, report.entries, report.checkpoint_size) == (True, 60, 60), report.message


def test_the_background_integrator_signs_new_entries_within_a_second(log_engine: Engine, signer: NoteSigner) -> None:
    integrator = Integrator(log_engine, signer, Clock())
    integrator.start(interval=0.05)
    try:
        with log_engine.begin() as conn:
            SqlAccessLog(conn).append([_entry("now")])
        committed = time.monotonic()
        size = 0
        while size < 1 and time.monotonic() - committed < 5:
            time.sleep(0.01)
            with log_engine.connect() as conn:
                latest = latest_checkpoint(conn)
                size = latest.tree_size if latest else 0
        lag = time.monotonic() - committed
    finally:
        integrator.stop()
    assert size == 1 and lag < 1.0 and integrator.last_error is None


def test_entries_without_a_salt_get_one_before_they_become_public(log_engine: Engine, integrator: Integrator) -> None:
    person = "ab" * 16
    with log_engine.begin() as conn:  # as the bulk importer writes them: no salt
        conn.execute(
            insert(_A).values(
                occurred_at=FIXED_NOW,
                actor="x",
                role="system",
                purpose="bulk_import",
                action="write",
                subject_person_id=person,
                categories="identity",
                detail="d",
            )
        )
    assert integrator.run_once() == 1
    with log_engine.connect() as conn:
        salt = conn.execute(select(_A.c.subject_salt)).scalar_one()
        bundle = prove_entry(conn, 0, integrator.signer.verifier)
    assert len(salt) == 32 and bundle.entry.subject_salt == salt
    assert person not in json.dumps(bundle.to_json()["public_leaf"])


def test_a_checkpoint_smaller_than_the_latest_is_never_stored(
    log_engine: Engine, integrator: Integrator, signer: NoteSigner
) -> None:
    with log_engine.begin() as conn:
        SqlAccessLog(conn).append([_entry(f"e{i}") for i in range(4)])
    integrator.run_once()
    with log_engine.begin() as conn:
        smaller = Checkpoint(signer.name, 3, stored_root(conn, 3), FIXED_NOW + timedelta(hours=1))
        with pytest.raises(DomainError) as refused:
            record_checkpoint(conn, sign_checkpoint(smaller, signer), signer.verifier, signer.name)
        assert refused.value.code == "checkpoint_shrinks"
        wrong_root = Checkpoint(signer.name, 4, bytes(32), FIXED_NOW)
        with pytest.raises(DomainError) as mismatched:
            record_checkpoint(conn, sign_checkpoint(wrong_root, signer), signer.verifier, signer.name)
        assert mismatched.value.code == "root_mismatch"
        assert [c.tree_size for c in conn.execute(select(_C.c.tree_size))] == [4]


def test_a_clock_stepping_back_does_not_make_honest_checkpoints_look_shrunk(
    log_engine: Engine, signer: NoteSigner
) -> None:
    for hours in (0, -1):
        with log_engine.begin() as conn:
            SqlAccessLog(conn).append([_entry(f"at {hours}")])
        Integrator(log_engine, signer, Clock.fixed(FIXED_NOW + timedelta(hours=hours))).run_once()
    with log_engine.connect() as conn:
        report = verify_stored_log(conn, signer.verifier)
        times = [c.signed_at for c in conn.execute(select(_C.c.signed_at).order_by(_C.c.tree_size))]
    assert report.ok, report.message
    assert len(times) == 2 and times[0] == times[1]


def test_public_consistency_proofs_refuse_shrinking_and_out_of_range_sizes(
    log_engine: Engine, integrator: Integrator
) -> None:
    with log_engine.begin() as conn:
        SqlAccessLog(conn).append([_entry(f"e{i}") for i in range(5)])
    integrator.run_once()
    with log_engine.connect() as conn:
        for old, new, code in ((4, 2, "checkpoint_shrinks"), (-1, 3, "invalid_tree_size"), (2, 6, "invalid_tree_size")):
            with pytest.raises(DomainError) as refused:
                consistency_between(conn, old, new)
            assert refused.value.code == code
        assert consistency_between(conn, 3).new_size == 5


# --------------------------------------------------------------------------- stored proofs = in-memory proofs


@pytest.fixture
def stored_tree(log_engine: Engine, signer: NoteSigner, clock: Clock) -> MerkleTree:
    """70 entries folded in uneven batches; returns the in-memory tree of the same leaves."""
    integrator = Integrator(log_engine, signer, clock, batch_size=13)
    for count in (1, 2, 30, 37):
        with log_engine.begin() as conn:
            SqlAccessLog(conn).append([_entry(f"e{i}", f"{i % 7:032x}" if i % 4 else None) for i in range(count)])
        integrator.run_once()
    tree = MerkleTree()
    with log_engine.connect() as conn:  # the leaves recomputed here from the rows, independently of the store
        rows = conn.execute(
            select(_A, _L.c.chain_prev).join(_L, _L.c.entry_seq == _A.c.seq).order_by(_L.c.leaf_index)
        ).all()
    for row in rows:
        entry = LogEntry(
            row.seq,
            row.occurred_at,
            row.actor,
            row.role,
            row.purpose,
            row.action,
            categories_from_column(row.categories),
            row.detail,
            row.subject_person_id,
            row.subject_household_id,
            row.subject_salt,
        )
        tree.append_leaf_hash(entry_leaf_hash(entry, None if row.chain_prev is None else bytes(row.chain_prev)))
    assert tree.size == 70
    return tree


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stored_proofs_equal_in_memory_proofs_and_verify(
    data: st.DataObject, stored_tree: MerkleTree, log_engine: Engine
) -> None:
    tree = stored_tree
    size = data.draw(st.integers(1, tree.size), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    with log_engine.connect() as conn:
        path = stored_inclusion_proof(conn, index, size)
        consistency = stored_consistency_proof(conn, old, size)
        assert stored_root(conn, size) == tree.root(size)
    assert path == tree.inclusion_proof(index, size)
    assert verify_inclusion(tree.leaf(index), index, size, path, tree.root(size))
    assert consistency == tree.consistency_proof(old, size)
    assert verify_consistency(old, size, tree.root(old), tree.root(size), consistency)


# --------------------------------------------------------------------------- the resident


def _rebuild_from_scratch(engine: Engine, signer: NoteSigner, clock: Clock) -> None:
    """What whoever controls the database *and* the signing key can do: drop the tree and re-fold."""
    with engine.begin() as conn:
        for table in (_C, _N, _L):
            conn.execute(delete(table))
    Integrator(engine, signer, clock).run_once()


def test_a_resident_detects_a_deleted_entry_even_when_the_tree_is_rebuilt_and_re_signed(
    uow_for: UowFor,
    log_engine: Engine,
    signer: NoteSigner,
    clock: Clock,
    integrator: Integrator,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """An attacker controlling the database and the signing key deletes one of Ana's entries and
    rebuilds and re-signs the whole tree, so the stored log is self-consistent again.

    Detected: `audit verify` alone passes (nothing stored contradicts itself), but given a checkpoint
    kept earlier it fails; Ana's client fails on the consistency proof from the checkpoint in her
    receipt (`tree_rewritten`), and even with only her chain head (no checkpoint) on `entry_missing`.
    Not detected: deleting an entry of Ana's that she has never seen, at a leaf beyond every
    checkpoint she holds — the rebuilt tree extends her old one, and her chain up to her receipt
    is intact. Only a monitor keeping every published checkpoint sees that rewrite.
    """
    town = build_town(uow_for, integrator.run_once)
    with log_engine.connect() as conn:
        receipt = verify_resident_log(resident_log(conn, town.ana), signer.verifier).receipt
        seqs = leaf_seqs(conn)
        old_note = latest_checkpoint(conn).note  # type: ignore[union-attr]
    assert receipt is not None and (receipt.tree_size, receipt.entries_seen) == (8, 4)
    (tmp_path / "old.txt").write_text(old_note, encoding="utf-8")

    with log_engine.begin() as conn:  # delete Ana's second entry (leaf 3), then two more reads happen
        conn.execute(delete(_L))
        conn.execute(delete(_A).where(_A.c.seq == seqs[3]))
    for _ in range(2):
        with uow_for("card_service") as uow:
            get_person(uow, town.luis)
    _rebuild_from_scratch(log_engine, signer, clock)

    assert audit(env, "verify").exit_code == 0
    held = audit(env, "verify", "--against", str(tmp_path / "old.txt"))
    assert held.exit_code == 1 and "(root_mismatch)" in held.output and "first bad leaf 0" in held.output
    with log_engine.connect() as conn:
        shown = resident_log(conn, town.ana, since_tree_size=receipt.tree_size)
        assert shown.tree_size == 9 and shown.chain_ok  # internally consistent again
        assert verify_resident_log(shown, signer.verifier).ok  # a first-time visitor sees nothing wrong
        assert verify_resident_log(shown, signer.verifier, receipt).code == "tree_rewritten"
        chain_only = ResidentReceipt(0, bytes.fromhex(_EMPTY), receipt.entries_seen, receipt.chain_head)
        assert verify_resident_log(resident_log(conn, town.ana, 0), signer.verifier, chain_only).code == (
            "entry_missing"
        )

    # The limit: Ana gets a new entry, it is deleted before she looks, and the tree is rebuilt.
    with log_engine.connect() as conn:
        receipt = verify_resident_log(resident_log(conn, town.ana), signer.verifier).receipt
    assert receipt is not None
    with uow_for("card_service") as uow:
        get_person(uow, town.ana)
    integrator.run_once()
    with log_engine.begin() as conn:
        newest = conn.execute(select(_A.c.seq).order_by(_A.c.seq.desc()).limit(1)).scalar_one()
        conn.execute(delete(_L))
        conn.execute(delete(_A).where(_A.c.seq == newest))
    _rebuild_from_scratch(log_engine, signer, clock)
    with log_engine.connect() as conn:
        assert resident_check(conn, town.ana, signer, receipt) == "verified"


_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_resident_sees_plain_entries_with_proofs_and_pending_ones_without(
    uow_for: UowFor, log_engine: Engine, signer: NoteSigner, integrator: Integrator
) -> None:
    town = build_town(uow_for, integrator.run_once)
    with uow_for("card_service") as uow:
        get_person(uow, town.ana)  # not integrated yet
    with log_engine.connect() as conn:
        shown = resident_log(conn, town.ana)
    assert [e.leaf_index for e in shown.entries] == [1, 3, 4, 7, None]
    assert [e.entry.detail for e in shown.entries] == ["person.enrolled"] + ["person.read"] * 4
    first = shown.entries[0]
    assert first.chain_prev is None and first.chain_ok and first.entry.actor == "registrar-ana"
    assert plain_entry(first.entry)["subject_person_id"] == town.ana
    verdict = verify_resident_log(shown, signer.verifier)
    assert verdict.ok and [v.code for v in verdict.entries] == ["verified"] * 4 + ["pending"]
    again = json.loads(json.dumps(shown.to_json()))
    assert again["entries"][4]["status"] == "pending" and again["entries"][4]["inclusion_proof"] is None


# --------------------------------------------------------------------------- prove → check-proof


def test_prove_then_check_proof_round_trips_through_the_cli_with_exit_codes(
    uow_for: UowFor, env: dict[str, str], integrator: Integrator, signer: NoteSigner, tmp_path: Path
) -> None:
    build_town(uow_for, integrator.run_once)
    proof = tmp_path / "proof.json"
    made = audit(env, "prove", "--entry", "3", "--out", str(proof))
    assert made.exit_code == 0, made.output
    valid = runner.invoke(audit_app, ["check-proof", str(proof)])  # offline: no database settings at all
    assert valid.exit_code == 0 and valid.output.startswith("proof valid: entry 3 is in the log of size 8")
    pinned = runner.invoke(audit_app, ["check-proof", str(proof), "--public-key", signer.verifier.to_vkey()])
    assert pinned.exit_code == 0, pinned.output
    other = NoteSigner.from_seed(signer.name, b"\x02" * 32).verifier.to_vkey()
    untrusted = runner.invoke(audit_app, ["check-proof", str(proof), "--public-key", other])
    assert untrusted.exit_code == 1 and "(untrusted_key)" in untrusted.output

    document = json.loads(proof.read_text(encoding="utf-8"))
    for change, code in (
        (lambda d: d["entry"].update(purpose="oversight_case"), "leaf_mismatch"),
        (lambda d: d["inclusion_proof"].reverse(), "inclusion_failed"),
        (lambda d: d.update(leaf_index=4), "inclusion_failed"),
        (lambda d: d.update(checkpoint=d["checkpoint"].replace("\n8\n", "\n9\n")), "bad_signature"),
        (lambda d: d.update(version=7), "unsupported_version"),
    ):
        tampered = json.loads(json.dumps(document))
        change(tampered)
        proof.write_text(json.dumps(tampered), encoding="utf-8")
        result = runner.invoke(audit_app, ["check-proof", str(proof)])
        assert result.exit_code == 1 and f"({code})" in result.output, (code, result.output)
    proof.write_text("{not json", encoding="utf-8")
    assert runner.invoke(audit_app, ["check-proof", str(proof)]).exit_code == 1

    assert runner.invoke(audit_app, ["check-proof"]).exit_code == 2
    assert runner.invoke(audit_app, ["check-proof", str(tmp_path / "missing.json")]).exit_code == 2
    assert audit(env, "prove").exit_code == 2
    assert audit(env, "prove", "--entry", "-1").exit_code == 2
    unknown = audit(env, "prove", "--entry", "99")
    assert unknown.exit_code == 1 and "(unknown_entry)" in unknown.output
    printed = audit(env, "prove", "--entry", "0")
    assert printed.exit_code == 0 and json.loads(printed.output)["leaf_index"] == 0

"""SQLAlchemy Core tables: the registry and the access log, exactly as fields.yaml allows.

Migrations (adapters/db/migrations) are the only way this schema is created; a test checks that
the migrated schema equals this metadata and that both equal the allow-list.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)
CODE = String(40)
Timestamp = DateTime(timezone=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")


def _version_columns(table: str) -> list[Column[object]]:
    """Bookkeeping shared by every dated, versioned fact table."""
    return [
        Column("id", ID, primary_key=True),
        Column("valid_from", Date, nullable=False),
        Column("recorded_at", Timestamp, nullable=False),
        Column("recorded_by", String(120), nullable=False),
        Column("reason", Text, nullable=False),
        Column("supersedes_id", ID, ForeignKey(f"{table}.id"), nullable=True),
    ]


persons = Table(
    "persons",
    metadata,
    Column("id", ID, primary_key=True),
    Column("given_names", String(200), nullable=False),
    Column("first_surname", String(200), nullable=False),
    Column("second_surname", String(200), nullable=False, server_default=""),
    Column("birth_date", Date, nullable=False),
    Column("birth_place", String(200), nullable=False),
    Column("sex", String(1), nullable=False),
    Column("address_line", String(300), nullable=False),
    Column("municipality", CODE, nullable=False),
    Column("region", CODE, nullable=False),
    Column("postcode", String(20), nullable=False),
    Column("phone", String(40), nullable=True),
    Column("national_id", String(40), nullable=True, index=True),
    Column("photo_ref", String(200), nullable=True),
    Column("search_key", Text, nullable=False),
    Column("enrolled_at", Timestamp, nullable=False),
    Column("enrolled_by", String(120), nullable=False),
    # active | held (an enrollment waiting for a duplicate reviewer) | merged (an alias of `merged_into`)
    # | deceased (a registrar recorded the death; the record is kept, registry/life_events.py)
    # | erased (its details removed under the retention policy; adapters/db/retention_store.py)
    Column("record_status", String(10), nullable=False, server_default="active"),
    Column("merged_into", ID, ForeignKey("persons.id"), nullable=True),
    Column("deceased_on", Date, nullable=True),  # set with record_status 'deceased' (migration 0011)
    Index("ix_persons_first_surname_birth_date", "first_surname", "birth_date"),
)

person_corrections = Table(
    "person_corrections",
    metadata,
    Column("id", ID, primary_key=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("field", String(40), nullable=False),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=True),
    Column("corrected_at", Timestamp, nullable=False),
    Column("corrected_by", String(120), nullable=False),
    Column("reason", Text, nullable=False),
)

households = Table(
    "households",
    metadata,
    Column("id", ID, primary_key=True),
    Column("region", CODE, nullable=False, index=True),
    Column("municipality", CODE, nullable=False),
    Column("address_line", String(300), nullable=False),
    Column("postcode", String(20), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(120), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", ID, primary_key=True),
    Column("household_id", ID, ForeignKey("households.id"), nullable=False, index=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("relationship", CODE, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("recorded_at", Timestamp, nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("ended_by", String(120), nullable=True),
    Column("end_reason", Text, nullable=True),
    # A person is in at most one household at a time: enforced by the database, not only by code.
    Index(
        "uq_memberships_current_person",
        "person_id",
        unique=True,
        sqlite_where=text("valid_to IS NULL"),
        postgresql_where=text("valid_to IS NULL"),
    ),
)

employment = Table(
    "employment",
    metadata,
    *_version_columns("employment"),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("status", CODE, nullable=False),
)

incomes = Table(
    "incomes",
    metadata,
    *_version_columns("incomes"),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("source", CODE, nullable=False),
    Column("monthly_amount_minor", BigInteger, nullable=False),
)

properties = Table(
    "properties",
    metadata,
    *_version_columns("properties"),
    Column("household_id", ID, ForeignKey("households.id"), nullable=False, index=True),
    Column("kind", CODE, nullable=False),
    Column("value_minor", BigInteger, nullable=False),
)

health_needs = Table(
    "health_needs",
    metadata,
    *_version_columns("health_needs"),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("kind", CODE, nullable=False),
    Column("code", CODE, nullable=False),
    Column("degree_percent", Integer, nullable=True),
    Column("present", Boolean, nullable=False),
)

benefits_received = Table(
    "benefits_received",
    metadata,
    *_version_columns("benefits_received"),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("benefit", CODE, nullable=False),
    Column("monthly_amount_minor", BigInteger, nullable=False),
)

access_log = Table(
    "access_log",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("occurred_at", Timestamp, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("role", String(40), nullable=False),
    Column("purpose", String(60), nullable=False),
    Column("action", String(10), nullable=False),
    Column("subject_person_id", ID, nullable=True, index=True),
    Column("subject_household_id", ID, nullable=True, index=True),
    Column("categories", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    # Random per entry: public leaves carry SHA-256(salt ‖ subject id), never the id itself.
    Column("subject_salt", String(32), nullable=False, server_default=""),
    # Erasure (retention, migration 0013): the leaf's own subject and chain commitments, kept when
    # the subject id and salt are shredded so the leaf can still be recomputed; `erasure_id` groups
    # the erased subject's chain for verification without naming them.
    Column("erasure_id", ID, nullable=True),
    Column("erased_subject", String(64), nullable=True),
    Column("erased_chain", String(64), nullable=True),
    # On PostgreSQL, fixed runs of seqs (migration 0015; partitions made ahead by db/log_partitions.py).
    postgresql_partition_by="RANGE (seq)",
)

# The verifiable log (RFC 9162). Entries are appended by request transactions; one integrator
# assigns leaf indexes in its own order, stores every complete subtree hash, chains each
# subject's entries, and signs checkpoints. Proofs are read from stored nodes, never rebuilt.
log_leaves = Table(
    "log_leaves",
    metadata,
    Column("leaf_index", Sequence64, primary_key=True, autoincrement=False),
    Column("entry_seq", Sequence64, ForeignKey("access_log.seq"), nullable=False, unique=True),
    Column("chain_prev", LargeBinary(32), nullable=True),
    Column("chain_head", LargeBinary(32), nullable=True),
    Column("integrated_at", Timestamp, nullable=False),
)

log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", SmallInteger, nullable=False),
    Column("node_index", Sequence64, nullable=False, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("level", "node_index", name="pk_log_nodes"),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("tree_size", Sequence64, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("signed_at", Timestamp, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("note", Text, nullable=False),
)

# Staff accounts, sessions (staff and residents) and sign-in throttling; vendor terminals and their request nonces.
staff_accounts = Table(
    "staff_accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("username", String(60), nullable=False, unique=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(40), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("totp_secret_enc", LargeBinary, nullable=True),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", Timestamp, nullable=True),
    Column("disabled_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(120), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("principal_kind", String(10), nullable=False),
    Column("principal_id", ID, nullable=False, index=True),
    Column("role", String(40), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp, nullable=True),
)

sign_in_throttle = Table(
    "sign_in_throttle",
    metadata,
    Column("bucket", String(120), primary_key=True),
    Column("window_start", Timestamp, nullable=False),
    Column("attempts", Integer, nullable=False),
)

terminals = Table(
    "terminals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("label", String(120), nullable=False),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("registered_at", Timestamp, nullable=False),
    Column("registered_by", String(120), nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("outlet_id", ID, ForeignKey("outlets.id", name="fk_terminals_outlet_id_outlets"), nullable=True),
    Column("role", String(12), nullable=False, server_default="counter"),
)

terminal_nonces = Table(
    "terminal_nonces",
    metadata,
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("seen_at", Timestamp, nullable=False, index=True),
    PrimaryKeyConstraint("terminal_id", "nonce", name="pk_terminal_nonces"),
)

FACT_TABLES: dict[str, Table] = {t.name: t for t in (employment, incomes, properties, health_needs, benefits_received)}

# Tables whose rows are about a person or household: reading or writing them needs an access context.
PERSONAL_TABLES: tuple[str, ...] = (
    "persons",
    "person_corrections",
    "households",
    "memberships",
    *FACT_TABLES,
    "cards",
    "card_pins",
    "duplicate_candidates",
    "person_merges",
    "person_match_keys",
    "decision_inputs",
    "decisions",
    "entitlements",
    "appeals",
    "correction_requests",
    "approval_requests",
    "redemptions",
    "ledger_lines",
    "offline_receipts",
)

# Cards (identity/cards.py). A card row links a random handle and a status-list slot to a person;
# the token is not stored (Ed25519 is deterministic: re-signing the same claims gives the same text).
cards = Table(
    "cards",
    metadata,
    Column("id", ID, primary_key=True),
    Column("handle", String(11), nullable=False, unique=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("status_index", BigInteger, nullable=False, unique=True),
    Column("kid", SmallInteger, nullable=False),
    Column("issued_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("issued_by", String(120), nullable=False),
    Column("status", String(10), nullable=False),
    Column("status_reason", CODE, nullable=True),
    Column("status_changed_at", Timestamp, nullable=True),
    Column("status_changed_by", String(120), nullable=True),
    Column("replaces_card_id", ID, ForeignKey("cards.id"), nullable=True),
)

card_pins = Table(
    "card_pins",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("pin_hash", String(80), nullable=False),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("locked", Boolean, nullable=False, server_default=text("false")),
    Column("set_at", Timestamp, nullable=False),
    Column("set_by", String(120), nullable=False),
)

# Every published version of the card status list: the signed list and the signed delta from the
# version before, exactly as served at the public endpoints (so a terminal can catch up step by step).
status_list_versions = Table(
    "status_list_versions",
    metadata,
    Column("version", Sequence64, primary_key=True, autoincrement=False),
    Column("published_at", Timestamp, nullable=False),
    Column("signed_list", LargeBinary, nullable=False),
    Column("signed_delta", LargeBinary, nullable=True),
)

# Duplicate review (dedup/review.py, dedup/merging.py). A candidate is one unordered pair of persons,
# stored with the smaller id on the left so a pair is queued (and a "different" decision kept) once.
duplicate_candidates = Table(
    "duplicate_candidates",
    metadata,
    Column("id", ID, primary_key=True),
    Column("person_id_l", ID, ForeignKey("persons.id"), nullable=False),
    Column("person_id_r", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("match_probability", Float, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("source", String(10), nullable=False),
    Column("status", String(10), nullable=False, index=True),
    Column("raised_at", Timestamp, nullable=False),
    Column("raised_by", String(120), nullable=False),
    Column("decided_at", Timestamp, nullable=True),
    Column("decided_by", String(120), nullable=True),
    Column("decision_note", Text, nullable=True),
    UniqueConstraint("person_id_l", "person_id_r"),
    CheckConstraint("person_id_l < person_id_r", name="ck_duplicate_candidates_ordered_pair"),
)

# One row per merge, with what it changed so an undo restores exactly that (nothing is deleted).
person_merges = Table(
    "person_merges",
    metadata,
    Column("id", ID, primary_key=True),
    Column("candidate_id", ID, ForeignKey("duplicate_candidates.id"), nullable=True, index=True),
    Column("survivor_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("merged_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("merged_at", Timestamp, nullable=False),
    Column("merged_by", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("ended_membership_id", ID, ForeignKey("memberships.id"), nullable=True),
    Column("revoked_card_id", ID, ForeignKey("cards.id"), nullable=True),
    Column("replacement_card_id", ID, ForeignKey("cards.id"), nullable=True),
    Column("undone_at", Timestamp, nullable=True),
    Column("undone_by", String(120), nullable=True),
    Column("undo_reason", Text, nullable=True),
    Column("restored_membership_id", ID, ForeignKey("memberships.id"), nullable=True),
)

# Duplicate matching on enrollment: each person's blocking keys (normalised, "2:perez|1980-03-05"),
# so candidates for a new enrollment are found by index, never by scanning the registry.
person_match_keys = Table(
    "person_match_keys",
    metadata,
    Column("person_id", ID, ForeignKey("persons.id"), primary_key=True),
    Column("match_key", String(300), primary_key=True),
    Index("ix_person_match_keys_key", "match_key"),
)

# How common each normalised name is in the registry (a snapshot `civicard dedup frequencies`
# refreshes), for the model's term-frequency adjustment: a shared rare surname is stronger evidence.
name_frequencies = Table(
    "name_frequencies",
    metadata,
    Column("column_name", String(40), primary_key=True),
    Column("value", String(300), primary_key=True),
    Column("frequency", Float, nullable=False),
)


# Programs (programs/): the item catalogue, the register of rule versions, benefit periods,
# cycle runs, and per period the households' rule inputs, decisions and entitlements. On
# PostgreSQL the per-period tables are partitioned by period (migration 0006).
PERIOD = String(7)
BY_PERIOD = "LIST (period)"

items = Table(
    "items",
    metadata,
    Column("code", CODE, primary_key=True),
    Column("name_es", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("unit", CODE, nullable=False),
    Column("kind", CODE, nullable=False),
    Column("atc_code", String(10), nullable=True),
    Column("updated_at", Timestamp, nullable=False),
)

program_versions = Table(
    "program_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("program", CODE, nullable=False),
    Column("version", String(40), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("title_es", String(300), nullable=False),
    Column("title_en", String(300), nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("source", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("tests_passed", Integer, nullable=False),
    Column("impact", Text, nullable=False),
    Column("proposed_by", String(120), nullable=False),
    Column("proposed_at", Timestamp, nullable=False),
    Column("proposal_note", Text, nullable=False),
    Column("decided_by", String(120), nullable=True),
    Column("decided_at", Timestamp, nullable=True),
    Column("decision_note", Text, nullable=True),
    Column("retired_by", String(120), nullable=True),
    Column("retired_at", Timestamp, nullable=True),
    UniqueConstraint("program", "version", name="uq_program_versions_program_version"),
    UniqueConstraint("sha256", name="uq_program_versions_sha256"),
)

benefit_periods = Table(
    "benefit_periods",
    metadata,
    Column("period", PERIOD, primary_key=True),
    Column("status", String(10), nullable=False),
    Column("opened_at", Timestamp, nullable=False),
    Column("closed_at", Timestamp, nullable=True),
)

cycle_runs = Table(
    "cycle_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("period", PERIOD, ForeignKey("benefit_periods.period"), nullable=False, index=True),
    Column("programs", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("started_by", String(120), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    Column("households", Integer, nullable=False),
    Column("decisions_new", Integer, nullable=False),
    Column("decisions_changed", Integer, nullable=False),
    Column("entitlements_new", Integer, nullable=False),
    Column("output_path", Text, nullable=False),
    Column("error", Text, nullable=True),
)

decision_inputs = Table(
    "decision_inputs",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("household_id", ID, nullable=False),
    Column("inputs_sha256", String(64), nullable=False),
    Column("region", CODE, nullable=False),
    Column("inputs", Text, nullable=False),
    PrimaryKeyConstraint("period", "household_id", "inputs_sha256", name="pk_decision_inputs"),
    postgresql_partition_by=BY_PERIOD,
)

decisions = Table(
    "decisions",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("id", ID, nullable=False),
    Column("household_id", ID, nullable=False),
    Column("program", CODE, nullable=False),
    Column("program_version_id", ID, nullable=False),
    Column("rules_sha256", String(64), nullable=False),
    Column("inputs_sha256", String(64), nullable=False),
    Column("status", String(12), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("conditions", Text, nullable=False),
    Column("items", Text, nullable=False),
    Column("origin", String(12), nullable=False),
    Column("cycle_run_id", ID, nullable=True),
    Column("decided_at", Timestamp, nullable=False),
    Column("superseded_at", Timestamp, nullable=True),
    Column("superseded_by", ID, nullable=True),
    PrimaryKeyConstraint("period", "id", name="pk_decisions"),
    Index(
        "uq_decisions_current",
        "period",
        "household_id",
        "program",
        unique=True,
        sqlite_where=text("superseded_at IS NULL"),
        postgresql_where=text("superseded_at IS NULL"),
    ),
    Index("ix_decisions_household_id", "household_id"),
    postgresql_partition_by=BY_PERIOD,
)

entitlements = Table(
    "entitlements",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("id", ID, nullable=False),
    Column("household_id", ID, nullable=False),
    Column("program", CODE, nullable=False),
    Column("item_code", CODE, nullable=False),
    Column("granted", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("decision_id", ID, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("period", "id", name="pk_entitlements"),
    UniqueConstraint("period", "household_id", "program", "item_code", name="uq_entitlements_slot"),
    postgresql_partition_by=BY_PERIOD,
)

appeals = Table(
    "appeals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("period", PERIOD, nullable=False),
    Column("decision_id", ID, nullable=False, index=True),
    Column("household_id", ID, nullable=False, index=True),
    Column("program", CODE, nullable=False),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("filed_at", Timestamp, nullable=False),
    Column("decided_by", String(120), nullable=True),
    Column("decided_at", Timestamp, nullable=True),
    Column("outcome_note", Text, nullable=True),
    Column("new_decision_id", ID, nullable=True),
    Index(
        "uq_appeals_open_decision",
        "decision_id",
        unique=True,
        sqlite_where=text("status = 'open'"),
        postgresql_where=text("status = 'open'"),
    ),
)


# Distribution (distribution/): vendors and their outlets, prices by period, which outlet kinds
# serve which item kinds, redemptions with their ledger lines (partitioned by period on
# PostgreSQL), idempotency keys, offline receipts and settlements (migration 0007).
vendors = Table(
    "vendors",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("tax_id", String(40), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(120), nullable=False),
)

outlets = Table(
    "outlets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("vendor_id", ID, ForeignKey("vendors.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", CODE, nullable=False),
    Column("region", CODE, nullable=False),
    Column("municipality", CODE, nullable=False),
    Column("address_line", String(300), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("closed_at", Timestamp, nullable=True),
)

item_prices = Table(
    "item_prices",
    metadata,
    Column("item_code", CODE, ForeignKey("items.code"), nullable=False),
    Column("period", PERIOD, nullable=False),
    Column("reference_price_minor", BigInteger, nullable=False),
    Column("subsidized_price_minor", BigInteger, nullable=False),
    Column("set_at", Timestamp, nullable=False),
    Column("set_by", String(120), nullable=False),
    PrimaryKeyConstraint("item_code", "period", name="pk_item_prices"),
)

serving_rules = Table(
    "serving_rules",
    metadata,
    Column("outlet_kind", CODE, nullable=False),
    Column("item_kind", CODE, nullable=False),
    PrimaryKeyConstraint("outlet_kind", "item_kind", name="pk_serving_rules"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("key", String(80), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("state", String(10), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    PrimaryKeyConstraint("terminal_id", "key", name="pk_idempotency_keys"),
)

redemptions = Table(
    "redemptions",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("id", ID, nullable=False),
    Column("household_id", ID, nullable=False),
    Column("card_id", ID, nullable=False),
    Column("terminal_id", ID, nullable=False),
    Column("outlet_id", ID, nullable=False),
    Column("vendor_id", ID, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("attested_by", ID, nullable=True),
    Column("idempotency_key", String(80), nullable=True),
    Column("total_minor", BigInteger, nullable=False),
    Column("subsidy_minor", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("device_time", Timestamp, nullable=True),
    PrimaryKeyConstraint("period", "id", name="pk_redemptions"),
    Index("ix_redemptions_household_id", "household_id"),
    Index("ix_redemptions_vendor_id", "vendor_id", "period"),
    postgresql_partition_by=BY_PERIOD,
)

ledger_lines = Table(
    "ledger_lines",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("id", ID, nullable=False),
    Column("redemption_id", ID, nullable=False),
    Column("entitlement_id", ID, nullable=False),
    Column("household_id", ID, nullable=False),
    Column("program", CODE, nullable=False),
    Column("item_code", CODE, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("reference_price_minor", BigInteger, nullable=False),
    Column("subsidized_price_minor", BigInteger, nullable=False),
    Column("subsidy_minor", BigInteger, nullable=False),
    Column("vendor_id", ID, nullable=False),
    Column("outlet_id", ID, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("period", "id", name="pk_ledger_lines"),
    Index("ix_ledger_lines_redemption_id", "redemption_id"),
    Index("ix_ledger_lines_vendor_id", "vendor_id", "period"),
    postgresql_partition_by=BY_PERIOD,
)

offline_receipts = Table(
    "offline_receipts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("period", PERIOD, nullable=False),
    Column("payload", Text, nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("status", String(10), nullable=False),
    Column("redemption_id", ID, nullable=True),
    Column("conflict", Text, nullable=True),
    Column("reviewed_by", String(120), nullable=True),
    Column("reviewed_at", Timestamp, nullable=True),
    UniqueConstraint("terminal_id", "seq", name="uq_offline_receipts_terminal_id_seq"),
)

settlements = Table(
    "settlements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("vendor_id", ID, ForeignKey("vendors.id"), nullable=False),
    Column("period", PERIOD, nullable=False),
    Column("redemptions", Integer, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("subsidy_minor", BigInteger, nullable=False),
    Column("ledger_sha256", String(64), nullable=False),
    Column("settled_at", Timestamp, nullable=False),
    Column("settled_by", String(120), nullable=False),
    UniqueConstraint("vendor_id", "period", name="uq_settlements_vendor_id_period"),
)

# Refusals per period, outlet and reason code, for the exclusion report: counts only, nothing
# about the card or person refused (migration 0008).
refusal_counts = Table(
    "refusal_counts",
    metadata,
    Column("period", PERIOD, nullable=False),
    Column("outlet_id", ID, nullable=False),
    Column("code", CODE, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("period", "outlet_id", "code", name="pk_refusal_counts"),
)

# A resident's request to correct a recorded fact, and the reviewer's answer (migration 0009).
correction_requests = Table(
    "correction_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False, index=True),
    Column("household_id", ID, nullable=True),
    Column("category", CODE, nullable=False),
    Column("details", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("filed_at", Timestamp, nullable=False),
    Column("answered_by", String(120), nullable=True),
    Column("answered_at", Timestamp, nullable=True),
    Column("answer_note", Text, nullable=True),
    Index("ix_correction_requests_queue", "status", "filed_at", "id"),
)

# Four-eyes approvals (governance/approvals.py, migration 0010_approvals): what one account asked
# for and the second account's decision. The payload is canonical JSON of ids, roles and codes
# only; at most one request per subject (a card, a staff account) waits at a time.
approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", CODE, nullable=False),
    Column("subject_key", String(80), nullable=False),
    Column("payload", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(120), nullable=False),
    Column("requested_role", CODE, nullable=False),
    Column("requested_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("status", String(10), nullable=False),
    Column("decided_by", String(120), nullable=True),
    Column("decided_role", CODE, nullable=True),
    Column("decided_at", Timestamp, nullable=True),
    Column("decision_note", Text, nullable=True),
    Index("ix_approval_requests_queue", "status", "requested_at", "id"),
    Index(
        "uq_approval_requests_pending_subject",
        "subject_key",
        unique=True,
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# Life events (registry/life_events.py, migration 0011_life_events): deaths, births, household
# splits and merges, moves. One row an event, recorded in the same transaction as the change;
# `details` is canonical JSON of ids and codes only (who moved, from which municipality to which).
life_events = Table(
    "life_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", CODE, nullable=False),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=True, index=True),
    Column("household_id", ID, ForeignKey("households.id"), nullable=True, index=True),
    Column("other_household_id", ID, ForeignKey("households.id"), nullable=True, index=True),
    Column("effective_on", Date, nullable=False),
    Column("document_ref", String(60), nullable=True),
    Column("recorded_at", Timestamp, nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("details", Text, nullable=False),
)

# Retention and erasure (transparency/retention.py, adapters/db/retention_store.py, migration
# 0013_retention): one row per erased person — when, under which rule, by whom, and the person only
# as a tagged SHA-256 of their id (the same digest the erasure journal outside the database holds).
erasures = Table(
    "erasures",
    metadata,
    Column("id", ID, primary_key=True),
    Column("erased_at", Timestamp, nullable=False),
    Column("rule", CODE, nullable=False),
    Column("erased_by", String(120), nullable=False),
    Column("subject_digest", String(64), nullable=False, unique=True),
    Column("log_entries", Integer, nullable=False),
    Column("records", Integer, nullable=False),
)

# Key custody (governance/key_custody.py, migration 0012_key_custody): one row per generation of
# the card-issuer and log-checkpoint keys, plus one `root` row holding the root key's fingerprint.
# Keys themselves are derived from the root key and never stored; `fingerprint` is public (of the
# root: an HMAC under a derived key; of a generation: a hash of its public key).
key_generations = Table(
    "key_generations",
    metadata,
    Column("purpose", String(20), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("state", String(12), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("retired_at", Timestamp, nullable=True),
    Column("reason", Text, nullable=True),
    Column("approval_id", ID, nullable=True),
    PrimaryKeyConstraint("purpose", "generation", name="pk_key_generations"),
)

# Cycles started from the program pages (adapters/db/cycle_job_store.py): stage and counts, so any
# server worker answers the progress poll; `slot` is 'cycle' while one runs (unique: one at a time
# across workers) and NULL once it has ended. Counts and codes only, no personal data.
cycle_jobs = Table(
    "cycle_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("period", PERIOD, nullable=False),
    Column("started_by", String(120), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("slot", String(10), nullable=True, unique=True),
    Column("stage", String(20), nullable=False),
    Column("done", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("heartbeat_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    Column("report", Text, nullable=True),
    Column("error_code", String(60), nullable=True),
    Column("error_message", Text, nullable=True),
)

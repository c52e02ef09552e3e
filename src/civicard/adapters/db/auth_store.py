"""Staff accounts, sign-in, sessions and vendor terminals in the database: one transaction per call.

What this writes: staff_accounts, sessions, sign_in_throttle, terminals, terminal_nonces. What it
does not write: the access log. Every call returns (or raises with `details`) enough for the
caller to log the event: who, which account or terminal, from which address, and why it failed.
`details` of a refused sign-in name the real reason (unknown_user, wrong_password, disabled) for
the log only; the response must show the code alone, so nobody can probe which usernames exist.

Sign-in refusals are decided inside the transaction, committed (failure counters and throttle
windows must persist), and only then raised.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, bindparam, case, delete, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.identity import terminal_auth
from civicard.identity.principals import Principal
from civicard.identity.sessions import (
    MAX_TOKEN_LENGTH,
    SessionPolicy,
    hash_session_token,
    new_csrf_token,
    new_session_token,
)
from civicard.identity.staff import (
    DEFAULT_LOCKOUT,
    MAX_PASSWORD_LENGTH,
    LockoutPolicy,
    PasswordHashing,
    StaffAccount,
    TotpSecretBox,
    check_display_name,
    check_password_policy,
    check_staff_role,
    check_totp_secret,
    check_username,
    match_totp,
    new_totp_secret,
    normalise_username,
    role_needs_totp,
    totp_provisioning_uri,
)
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthenticated
from civicard.shared.ids import is_id, new_id
from civicard.shared.keys import RootKey


@dataclass(frozen=True)
class ThrottlePolicy:
    """Sign-in attempts per client address per fixed window (successes count too)."""

    attempts_per_window: int = 20
    window: timedelta = timedelta(minutes=5)


class NewStaffAccount(NamedTuple):
    account: StaffAccount
    totp_uri: str | None  # shown once: it contains the secret
    totp_secret: str | None


class SignedIn(NamedTuple):
    principal: Principal
    session_token: str  # goes in the session cookie; only its hash is stored
    csrf_token: str


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class Terminal:
    id: str
    label: str
    registered_at: datetime
    registered_by: str
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class PruneReport:
    throttle_windows: int
    terminal_nonces: int
    sessions: int


class AuthStore:
    """The database side of authentication. Construct once (bootstrap) and share; it holds no connection."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        root_key: RootKey,
        *,
        passwords: PasswordHashing | None = None,
        session_policy: SessionPolicy | None = None,
        lockout: LockoutPolicy = DEFAULT_LOCKOUT,
        throttle: ThrottlePolicy | None = None,
        clock_skew: timedelta = terminal_auth.CLOCK_SKEW,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.passwords = passwords or PasswordHashing()
        self.session_policy = session_policy or SessionPolicy()
        self.lockout = lockout
        self.throttle = throttle or ThrottlePolicy()
        self.clock_skew = clock_skew
        self._totp_box = TotpSecretBox.from_root_key(root_key)
        self._nonces_pruned: dict[str, datetime] = {}  # terminal id → when its old nonces were last pruned

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    # --- staff accounts ---------------------------------------------------------------------------

    def create_staff_account(
        self, username: str, display_name: str, role: str, password: str, by: str, *, totp_secret: str | None = None
    ) -> NewStaffAccount:
        """Create an account; for a role that needs TOTP, also its secret (random unless given) and URI."""
        name = check_username(username)
        role = check_staff_role(role)
        shown_name = check_display_name(display_name)
        check_password_policy(password, name)
        secret: str | None = None
        if role_needs_totp(role):
            secret = check_totp_secret(totp_secret) if totp_secret is not None else new_totp_secret()
        elif totp_secret is not None:
            raise InvalidInput("totp_not_applicable", f"A {role} account has no second factor.")
        password_hash = self.passwords.hash(password)  # slow: outside the transaction
        account = StaffAccount(new_id(), name, shown_name, role, self._now(), by)
        row = {
            "id": account.id,
            "username": name,
            "display_name": shown_name,
            "role": role,
            "password_hash": password_hash,
            "totp_secret_enc": self._totp_box.seal(secret, account.id) if secret else None,
            "failed_logins": 0,
            "created_at": account.created_at,
            "created_by": by,
        }
        with self.engine.connect() as conn:
            if _account_row(conn, name) is not None:
                raise _username_taken(name)
            try:
                conn.execute(insert(t.staff_accounts).values(**row))
            except IntegrityError:
                raise _username_taken(name) from None
            conn.commit()
        uri = totp_provisioning_uri(secret, name) if secret else None
        return NewStaffAccount(account, uri, secret)

    def disable_staff_account(self, username: str, by: str) -> StaffAccount:
        """Disable an account and end its open sessions. `by` is for the caller's log entry."""
        name = normalise_username(username)
        now = self._now()
        with self.engine.connect() as conn:
            row = _account_row(conn, name, for_update=True)
            if row is None:
                raise NotFound("account_not_found", f"There is no staff account '{name}'.", username=name)
            if row.disabled_at is not None:
                raise Conflict("account_already_disabled", f"The account '{name}' is already disabled.", username=name)
            conn.execute(update(t.staff_accounts).where(t.staff_accounts.c.id == row.id).values(disabled_at=now))
            _end_sessions(conn, "staff", row.id, now)
            conn.commit()
        return _account(row, disabled_at=now)

    def list_staff_accounts(self) -> list[StaffAccount]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.staff_accounts).order_by(t.staff_accounts.c.username)).all()
        return [_account(r) for r in rows]

    # --- sign-in ----------------------------------------------------------------------------------

    def sign_in(self, username: str, password: str, totp_code: str | None, client_address: str) -> SignedIn:
        """Password (+ TOTP for program_admin/oversight) → a new session.

        Refusals: `too_many_attempts` (this address, with retry_after_seconds), `account_locked`
        (with retry_after_seconds), `sign_in_failed` (unknown user, wrong password or disabled — one
        code for all three), `totp_required` (password right, code missing; not counted as a
        failure), `totp_invalid` (counted as a failure, like a wrong password).
        """
        now = self._now()
        with self.engine.connect() as conn:
            outcome = self._attempt_sign_in(
                conn, normalise_username(username), password, totp_code, client_address, now
            )
            conn.commit()
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def count_sign_in_attempt(self, client_address: str) -> None:
        """Count one sign-in attempt from this address (residents' card + PIN tries too); refuses
        past the limit, so one address cannot spray PINs across many cards (`too_many_attempts`)."""
        now = self._now()
        with self.engine.connect() as conn:
            refusal = self._address_limit(conn, client_address, now, {})
            conn.commit()
        if refusal is not None:
            raise refusal

    def _address_limit(
        self, conn: Connection, client: str, now: datetime, seen: dict[str, str]
    ) -> Unauthenticated | None:
        """Count one attempt in the address's window; the refusal once the window is full."""
        attempts, window_start = _bump_window(conn, _address_bucket(client), now, self.throttle.window)
        if attempts <= self.throttle.attempts_per_window:
            return None
        retry = _seconds(window_start + self.throttle.window - now)
        return Unauthenticated(
            "too_many_attempts",
            f"Too many sign-in attempts from this address; try again in {retry} s.",
            retry_after_seconds=retry,
            **seen,
        )

    def _attempt_sign_in(
        self, conn: Connection, name: str, password: str, totp_code: str | None, client: str, now: datetime
    ) -> SignedIn | DomainError:
        seen = {"username": name, "client_address": client}
        # The throttle write comes first: on SQLite it takes the write lock, so the rest is serialised.
        refusal = self._address_limit(conn, client, now, seen)
        if refusal is not None:
            return refusal
        row = _account_row(conn, name, for_update=True)
        candidate = password[: MAX_PASSWORD_LENGTH + 1]  # longer than any stored password: cannot match
        if row is None:
            self.passwords.verify_nothing(candidate)
            return _sign_in_failed("unknown_user", seen)
        seen["account_id"] = row.id
        locked_until = _utc_or_none(row.locked_until)
        if locked_until is not None and locked_until > now:
            retry = _seconds(locked_until - now)
            return Unauthenticated(
                "account_locked",
                f"This account is locked after repeated failures; try again in {retry} s.",
                retry_after_seconds=retry,
                **seen,
            )
        password_ok = self.passwords.verify(row.password_hash, candidate)
        if row.disabled_at is not None:
            return _sign_in_failed("disabled", seen)
        if not password_ok:
            return self._record_failure(conn, row.id, now, _sign_in_failed("wrong_password", seen))
        if role_needs_totp(row.role):
            refused = self._check_totp(conn, row, totp_code, now, seen)
            if refused is not None:
                return refused
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if self.passwords.needs_rehash(row.password_hash):
            values["password_hash"] = self.passwords.hash(candidate)
        conn.execute(update(t.staff_accounts).where(t.staff_accounts.c.id == row.id).values(**values))
        principal = Principal("staff", row.id, row.role, row.display_name)
        token, csrf = _open_session(conn, principal, now)
        return SignedIn(principal, token, csrf)

    def _check_totp(
        self, conn: Connection, row: Row[Any], code: str | None, now: datetime, seen: dict[str, str]
    ) -> DomainError | None:
        if not code:
            return Unauthenticated("totp_required", "Enter the 6-digit code from your authenticator app.", **seen)
        if row.totp_secret_enc is None:  # a TOTP role without a secret cannot sign in (fail closed)
            return self._record_failure(conn, row.id, now, _totp_invalid(seen))
        secret = self._totp_box.open(row.totp_secret_enc, row.id)
        bucket = f"totp:{row.id}"
        last_step = conn.execute(
            select(t.sign_in_throttle.c.attempts).where(t.sign_in_throttle.c.bucket == bucket)
        ).scalar_one_or_none()
        step = match_totp(secret, code, now, after_step=last_step)
        if step is None:
            return self._record_failure(conn, row.id, now, _totp_invalid(seen))
        # Remember the accepted step (in the throttle table's counter) so the same code is not accepted twice.
        conn.execute(
            _upsert(
                conn, {"bucket": bucket, "window_start": now, "attempts": step}, {"window_start": now, "attempts": step}
            )
        )
        return None

    def _record_failure(self, conn: Connection, account_id: str, now: datetime, error: DomainError) -> DomainError:
        failed = conn.execute(
            update(t.staff_accounts)
            .where(t.staff_accounts.c.id == account_id)
            .values(failed_logins=t.staff_accounts.c.failed_logins + 1)
            .returning(t.staff_accounts.c.failed_logins)
        ).scalar_one()
        lock = self.lockout.lock_duration(failed)
        if lock:
            conn.execute(
                update(t.staff_accounts).where(t.staff_accounts.c.id == account_id).values(locked_until=now + lock)
            )
        error.details.update(failed_logins=failed, locked_for_seconds=_seconds(lock))
        return error

    # --- sessions ---------------------------------------------------------------------------------

    def open_resident_session(self, person_id: str) -> SignedIn:
        """A session for a resident. ONLY for an authenticator that has verified card and PIN.

        This is the one way a resident session is made; today nothing calls it outside tests,
        after `CardPinSignIn` (adapters/db/resident_sign_in.py) has checked the card and PIN.
        """
        if not is_id(person_id):
            raise InvalidInput("invalid_person_id", "A person id is 32 lowercase hex characters.")
        principal = Principal("resident", person_id, "resident", "")
        with self.engine.connect() as conn:
            token, csrf = _open_session(conn, principal, self._now())
            conn.commit()
        return SignedIn(principal, token, csrf)

    def resolve_session(self, token: str) -> ActiveSession:
        """The principal behind a session cookie, or Unauthenticated `session_expired` / `session_invalid`.

        Expired sessions are ended on the spot; live ones have last_seen_at refreshed (at most once
        per touch interval). A staff session dies with its account (disabled or role changed).
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _session_invalid()
        now = self._now()
        with self.engine.connect() as conn:
            row = conn.execute(select(t.sessions).where(t.sessions.c.token_hash == hash_session_token(token))).first()
            if row is None or row.ended_at is not None:
                raise _session_invalid()
            created, last_seen = as_utc(row.created_at), as_utc(row.last_seen_at)
            reason = self.session_policy.expiry_reason(created, last_seen, now)
            principal = None if reason else _session_principal(conn, row)
            if reason or principal is None:
                conn.execute(update(t.sessions).where(t.sessions.c.token_hash == row.token_hash).values(ended_at=now))
                conn.commit()
                if reason:
                    raise Unauthenticated("session_expired", "The session has ended; sign in again.", reason=reason)
                raise _session_invalid()
            if self.session_policy.needs_touch(last_seen, now):
                conn.execute(
                    update(t.sessions).where(t.sessions.c.token_hash == row.token_hash).values(last_seen_at=now)
                )
                conn.commit()
                last_seen = now
        return ActiveSession(principal, row.csrf_token, created, last_seen)

    def sign_out(self, token: str) -> bool:
        """End the session; False if there was no open session with that token."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return False
        with self.engine.connect() as conn:
            ended = conn.execute(
                update(t.sessions)
                .where(t.sessions.c.token_hash == hash_session_token(token), t.sessions.c.ended_at.is_(None))
                .values(ended_at=self._now())
            ).rowcount
            conn.commit()
        return bool(ended)

    # --- vendor terminals -------------------------------------------------------------------------

    def register_terminal(self, label: str, public_key: bytes, by: str) -> Terminal:
        """Register a terminal's raw 32-byte Ed25519 public key; the returned id goes into its requests."""
        shown = " ".join(label.split())
        if not 1 <= len(shown) <= 120:
            raise InvalidInput("invalid_label", "A terminal label is 1–120 characters.")
        terminal_auth.load_public_key(public_key)
        terminal = Terminal(new_id(), shown, self._now(), by)
        with self.engine.connect() as conn:
            conn.execute(
                insert(t.terminals).values(
                    id=terminal.id,
                    label=shown,
                    public_key=public_key,
                    registered_at=terminal.registered_at,
                    registered_by=by,
                )
            )
            conn.commit()
        return terminal

    def revoke_terminal(self, terminal_id: str, by: str) -> Terminal:
        """Revoke a terminal: its signatures are refused from now on. `by` is for the caller's log entry."""
        now = self._now()
        with self.engine.connect() as conn:
            row = conn.execute(select(t.terminals).where(t.terminals.c.id == terminal_id).with_for_update()).first()
            if row is None:
                raise NotFound("terminal_not_found", "There is no terminal with that id.", terminal_id=terminal_id)
            if row.revoked_at is not None:
                raise Conflict("terminal_already_revoked", "The terminal is already revoked.", terminal_id=terminal_id)
            conn.execute(update(t.terminals).where(t.terminals.c.id == terminal_id).values(revoked_at=now))
            conn.commit()
        return _terminal(row, revoked_at=now)

    def verify_terminal_request(
        self,
        terminal_id: str,
        method: str,
        target: str,
        body: bytes,
        timestamp: int,
        nonce: str,
        signature: bytes,
        conn: Connection | None = None,
        *,
        allow_revoked: bool = False,
    ) -> Principal:
        """A signed request from a registered, unrevoked terminal, fresh and never seen → its principal.

        The nonce is recorded in the transaction — its own, or the caller's `conn` (the caller then
        commits it with its own first writes: one transaction less per request). The (terminal,
        nonce) primary key makes a replay fail even when both copies arrive at once. A terminal's
        nonces older than any fresh request are pruned at most once a minute per process.
        `allow_revoked` accepts a revoked terminal's signature (only for handing in its offline
        receipts, which are then kept for review).
        """
        if conn is None:
            with self.engine.connect() as own:
                principal = self.verify_terminal_request(
                    terminal_id, method, target, body, timestamp, nonce, signature, own, allow_revoked=allow_revoked
                )
                own.commit()
            return principal
        terminal_auth.check_request_shape(method, nonce)
        now = self._now()
        row = None
        if is_id(terminal_id):
            row = conn.execute(_TERMINAL_BY_ID, {"id": terminal_id}).first()
        if row is None:
            raise Unauthenticated("terminal_unknown", "This terminal is not registered.", terminal_id=terminal_id)
        if row.revoked_at is not None and not allow_revoked:
            raise Unauthenticated("terminal_revoked", "This terminal has been revoked.", terminal_id=terminal_id)
        terminal_auth.check_fresh(timestamp, now, self.clock_skew)
        message = terminal_auth.canonical_request(method, target, body, timestamp, nonce, terminal_id)
        terminal_auth.verify_signature(row.public_key, signature, message)
        # ON CONFLICT DO NOTHING rather than catching the duplicate: on PostgreSQL a failed INSERT
        # would abort the caller's transaction.
        seen = conn.execute(
            _NEW_NONCE[conn.dialect.name],
            {"terminal_id": terminal_id, "nonce": nonce, "seen_at": now},
            execution_options={"preserve_rowcount": True},  # SQLAlchemy keeps INSERT rowcounts only on request
        ).rowcount
        if seen != 1:
            raise Unauthenticated("terminal_replayed", "This request was already received.", terminal_id=terminal_id)
        last = self._nonces_pruned.get(terminal_id)
        if last is None or now - last >= NONCE_PRUNE_EVERY:
            self._nonces_pruned[terminal_id] = now
            conn.execute(
                delete(t.terminal_nonces).where(
                    t.terminal_nonces.c.terminal_id == terminal_id,
                    t.terminal_nonces.c.seen_at < now - self._nonce_retention(),
                )
            )
        return Principal("terminal", terminal_id, "vendor", row.label)

    def _nonce_retention(self) -> timedelta:
        return max(terminal_auth.NONCE_RETENTION, 2 * self.clock_skew + timedelta(minutes=1))

    # --- housekeeping -----------------------------------------------------------------------------

    def prune_expired(self) -> PruneReport:
        """Delete rows that can no longer matter: past throttle windows, old nonces, long-dead sessions."""
        now = self._now()
        session_cutoff = now - self.session_policy.absolute_timeout - timedelta(days=1)
        with self.engine.connect() as conn:
            windows = conn.execute(
                delete(t.sign_in_throttle).where(t.sign_in_throttle.c.window_start < now - self.throttle.window)
            ).rowcount
            nonces = conn.execute(
                delete(t.terminal_nonces).where(t.terminal_nonces.c.seen_at < now - self._nonce_retention())
            ).rowcount
            old_sessions = conn.execute(delete(t.sessions).where(t.sessions.c.created_at < session_cutoff)).rowcount
            conn.commit()
        return PruneReport(windows, nonces, old_sessions)


# --- rows and helpers ------------------------------------------------------------------------------

NONCE_PRUNE_EVERY = timedelta(minutes=1)
# ON CONFLICT DO NOTHING rather than catching the duplicate: on PostgreSQL a failed INSERT would
# abort the caller's transaction. One statement per dialect, built once.
_NEW_NONCE = {
    "postgresql": postgresql.insert(t.terminal_nonces).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(t.terminal_nonces).on_conflict_do_nothing(),
}
_TERMINAL_BY_ID = select(t.terminals.c.label, t.terminals.c.public_key, t.terminals.c.revoked_at).where(
    t.terminals.c.id == bindparam("id")
)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _seconds(span: timedelta) -> int:
    return max(0, math.ceil(span.total_seconds()))


def _account_row(conn: Connection, username: str, for_update: bool = False) -> Row[Any] | None:
    query = select(t.staff_accounts).where(t.staff_accounts.c.username == username)
    return conn.execute(query.with_for_update() if for_update else query).first()


def _account(row: Row[Any], disabled_at: datetime | None = None) -> StaffAccount:
    return StaffAccount(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        disabled_at=disabled_at or _utc_or_none(row.disabled_at),
    )


def _terminal(row: Row[Any], revoked_at: datetime | None = None) -> Terminal:
    revoked = revoked_at or _utc_or_none(row.revoked_at)
    return Terminal(row.id, row.label, as_utc(row.registered_at), row.registered_by, revoked)


def _username_taken(name: str) -> Conflict:
    return Conflict("username_taken", f"The username '{name}' is taken.", username=name)


def _sign_in_failed(reason: str, seen: dict[str, str]) -> Unauthenticated:
    # One code and one message whatever the reason; the reason is only in details, for the log.
    return Unauthenticated("sign_in_failed", "Wrong username or password.", **{**seen, "reason": reason})


def _totp_invalid(seen: dict[str, str]) -> Unauthenticated:
    return Unauthenticated("totp_invalid", "The code is wrong or was already used; wait for the next one.", **seen)


def _session_invalid() -> Unauthenticated:
    return Unauthenticated("session_invalid", "You are not signed in.")


def _address_bucket(client: str) -> str:
    client = client.strip() or "unknown"
    if len(client) > 100:
        client = hashlib.sha256(client.encode()).hexdigest()
    return f"addr:{client}"


def _upsert(conn: Connection, values: dict[str, Any], on_conflict: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT (bucket) DO UPDATE on sign_in_throttle, atomic on SQLite and PostgreSQL."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(t.sign_in_throttle).values(**values)
    return stmt.on_conflict_do_update(index_elements=[t.sign_in_throttle.c.bucket], set_=on_conflict)


def _bump_window(conn: Connection, bucket: str, now: datetime, window: timedelta) -> tuple[int, datetime]:
    """Count one attempt in `bucket`'s fixed window (a new window once the old one is over)."""
    c = t.sign_in_throttle.c
    expired = c.window_start <= now - window
    stmt = _upsert(
        conn,
        {"bucket": bucket, "window_start": now, "attempts": 1},
        {
            # SET expressions read the row as it was, so both CASEs see the old window.
            "attempts": case((expired, 1), else_=c.attempts + 1),
            "window_start": case((expired, literal(now, c.window_start.type)), else_=c.window_start),
        },
    ).returning(c.attempts, c.window_start)
    attempts, start = conn.execute(stmt).one()
    return int(attempts), as_utc(start)


def _open_session(conn: Connection, principal: Principal, now: datetime) -> tuple[str, str]:
    token, csrf = new_session_token(), new_csrf_token()
    conn.execute(
        insert(t.sessions).values(
            token_hash=hash_session_token(token),
            principal_kind=principal.kind,
            principal_id=principal.id,
            role=principal.role,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
        )
    )
    return token, csrf


def _end_sessions(conn: Connection, kind: str, principal_id: str, now: datetime) -> None:
    conn.execute(
        update(t.sessions)
        .where(t.sessions.c.principal_kind == kind, t.sessions.c.principal_id == principal_id)
        .where(t.sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


def _session_principal(conn: Connection, row: Row[Any]) -> Principal | None:
    """Who a live session belongs to, or None if that principal may no longer act."""
    if row.principal_kind == "resident":
        return Principal("resident", row.principal_id, "resident", "")
    if row.principal_kind != "staff":
        return None
    account = conn.execute(select(t.staff_accounts).where(t.staff_accounts.c.id == row.principal_id)).first()
    if account is None or account.disabled_at is not None or account.role != row.role:
        return None
    return Principal("staff", account.id, account.role, account.display_name)

"""PostgreSQL backups with the client tools: `pg_dump -Fc` of civicard's schema, `pg_restore` back.

The dump runs inside a REPEATABLE READ transaction's exported snapshot, so whatever the caller
reads in that transaction (the manifest's facts) describes exactly what was dumped. `pg_restore`
can only recreate a schema under the name it was dumped from, so a restore moves the target schema
aside, restores into the dumped name in one transaction, renames it to the target's name and only
then drops the old contents; if pg_restore fails, the target is put back as it was.
Passwords reach the tools in PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from civicard.adapters.db.engine import make_engine
from civicard.shared.errors import Conflict, InvalidInput, Unavailable
from civicard.transparency.backups import Manifest

Progress = Callable[[str, int, int], None]
T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# pg_restore --list lines that create or comment on the schema itself: the restore makes the schema.
_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA - |COMMENT - SCHEMA |ACL - SCHEMA )")


def existing_schema(conn: Connection) -> str | None:
    """The schema civicard's tables live in (the first existing one on the search path)."""
    found = conn.execute(text("SELECT current_schema()")).scalar()
    return None if found is None else str(found)


def target_schema(conn: Connection) -> str:
    """The schema a restore fills: the current one, or the first named on the search path."""
    name = existing_schema(conn)
    if name is None:
        path = str(conn.execute(text("SHOW search_path")).scalar_one())
        name = next((p.strip().strip('"') for p in path.split(",") if p.strip() not in ("", '"$user"')), None)
    return _checked_name(name)


def _checked_name(name: str | None) -> str:
    if name is None or not _SCHEMA_NAME.fullmatch(name):
        raise InvalidInput(
            "unsupported_schema", f"Schema {name!r}: backups support lower-case schema names (letters, digits, _)."
        )
    return name


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable("tool_missing", f"{name} is not installed (Debian package postgresql-client).")
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for the tools, and their environment with the password."""
    parsed = make_url(url)
    words: dict[str, object] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "dbname": parsed.database,
        **{k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()},
    }
    conninfo = " ".join(f"{k}={_quoted(str(v))}" for k, v in words.items() if v is not None)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    return conninfo, env


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    # The executable comes from shutil.which and every argument from settings or our own files.
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        reason = next((line for line in done.stderr.splitlines() if line.strip()), f"exit status {done.returncode}")
        raise Conflict(f"{what.replace('-', '_')}_failed", f"{what} failed: {reason}")
    return done.stdout


def dump(url: str, part: Path, progress: Progress, read_facts: Callable[[Connection, str], T]) -> T:
    """`pg_dump -Fc` of the current schema into `part`; returns `read_facts` read in the same snapshot."""
    pg_dump = _tool("pg_dump")
    conninfo, env = _libpq(url)
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            schema = _checked_name(existing_schema(conn))
            facts = read_facts(conn, schema)
            progress("dump database", 0, 1)
            args = [pg_dump, "--format=custom", f"--schema={schema}", f"--snapshot={snapshot}", f"--file={part}"]
            _run([*args, f"--dbname={conninfo}"], env, "pg_dump")
            progress("dump database", 1, 1)
            conn.rollback()
    finally:
        engine.dispose()
    return facts


def restore(url: str, archive: Path, manifest: Manifest, work: Path, progress: Progress) -> None:
    """Replace the target schema's contents with the dump, atomically for anyone who looks after."""
    pg_restore = _tool("pg_restore")
    conninfo, env = _libpq(url)
    dumped = _checked_name(manifest.schema)
    listing = _run([pg_restore, "--list", str(archive)], env, "pg_restore")
    entries = work / "restore.list"
    entries.write_text("".join(f"{line}\n" for line in listing.splitlines() if not _SCHEMA_ENTRY.match(line)))
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            q = conn.dialect.identifier_preparer.quote
            target = target_schema(conn)
            aside = _move_aside(conn, target, dumped)
            conn.execute(text(f"CREATE SCHEMA {q(dumped)}"))
            progress("restore database", 0, 1)
            try:
                options = ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges"]
                _run(
                    [pg_restore, *options, f"--use-list={entries}", f"--dbname={conninfo}", str(archive)],
                    env,
                    "pg_restore",
                )
            except Conflict:
                conn.execute(text(f"DROP SCHEMA {q(dumped)} CASCADE"))
                if aside is not None:
                    conn.execute(text(f"ALTER SCHEMA {q(aside)} RENAME TO {q(target)}"))
                raise
            if dumped != target:
                conn.execute(text(f"ALTER SCHEMA {q(dumped)} RENAME TO {q(target)}"))
            if aside is not None:
                conn.execute(text(f"DROP SCHEMA {q(aside)} CASCADE"))
            progress("restore database", 1, 1)
    finally:
        engine.dispose()


def _move_aside(conn: Connection, target: str, dumped: str) -> str | None:
    """Rename the target schema out of the way (kept until the restore succeeds); None if absent."""
    schemas = set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
    if dumped != target and dumped in schemas:
        raise Conflict(
            "schema_in_use",
            f"The backup's schema '{dumped}' already exists in the target database beside '{target}'; "
            "restore into another database or drop it first.",
        )
    if target not in schemas:
        return None
    aside = f"restore_aside_{secrets.token_hex(4)}"
    q = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"ALTER SCHEMA {q(target)} RENAME TO {q(aside)}"))
    return aside

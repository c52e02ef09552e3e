"""`civicard audit`: fold, sign, show, verify and prove entries of the access log; check proofs offline.

Exit codes as everywhere in the CLI: 0 success, 1 failed or not verified (one-line reason), 2 usage.
`check-proof` needs no database, no key and no network: a resident's advocate can run it anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from civicard.adapters.db.log_store import latest_checkpoint, prove_entry, verify_stored_log
from civicard.transparency.checkpoints import DEFAULT_ORIGIN, VerifierKey, VerifierKeyring
from civicard.transparency.proofs import check_proof_json

audit_app = typer.Typer(
    help="The verifiable access log (RFC 9162): integrate, checkpoint, verify, prove, check-proof.",
    no_args_is_help=True,
)

_VKEY = re.compile(r"[^+\s]+\+[0-9a-fA-F]{8}\+\S+")
PublicKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="The log's key to trust: a verifier key 'name+id+base64' (see `audit public-key`) or the raw "
        "Ed25519 key in base64. After a checkpoint-key rotation, repeat it for each generation "
        "(`audit public-key --all`).",
    ),
]


def _cli() -> ModuleType:
    """The main CLI module, imported late because it registers this sub-app."""
    from civicard.adapters.cli import main

    return main


def pinned_keys(texts: list[str]) -> VerifierKey:
    """The keys given with --public-key as one verifier: the last one given, accepting the others too."""
    keys = [parse_public_key(text) for text in texts]
    *earlier, last = keys
    return VerifierKeyring(last.name, last.public_key, tuple(earlier)) if earlier else last


def parse_public_key(text: str, name: str = DEFAULT_ORIGIN) -> VerifierKey:
    """A verifier-key string, or a raw base64 Ed25519 key taken to be `name`'s."""
    if _VKEY.fullmatch(text.strip()):
        return VerifierKey.from_vkey(text)
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _cli().fail("--public-key is neither a verifier key nor base64") from None
    if len(raw) != 32:
        raise _cli().fail("--public-key must be a 32-byte Ed25519 key")
    return VerifierKey(name, raw)


@audit_app.command("integrate")
def integrate() -> None:
    """Fold pending entries into the tree and sign a checkpoint now (e.g. after a bulk import)."""
    cli = _cli()
    with cli.container() as built:
        folded = cli.run_checked(lambda: built.integrator.run_once(full=True))
        with built.engine.connect() as conn:
            latest = latest_checkpoint(conn)
    size = latest.tree_size if latest else 0
    typer.echo(f"integrated {folded} entries; signed tree size {size}")


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Print the latest signed checkpoint (a C2SP signed note) — what monitors and residents keep."""
    from civicard.adapters.backup import publish_checkpoint

    cli = _cli()
    with cli.container() as built, built.engine.connect() as conn:
        latest = latest_checkpoint(conn)
    if latest is None:
        raise cli.fail("no checkpoint yet (run `civicard audit integrate`)")
    publish_checkpoint(built, latest.note)
    typer.echo(latest.note, nl=False)


@audit_app.command("public-key")
def public_key(
    every: Annotated[
        bool, typer.Option("--all", help="Also the earlier key generations, which signed older checkpoints.")
    ] = False,
) -> None:
    """Print the log's verifier key (name+key ID+base64 key), to publish and to pin."""
    with _cli().container() as built:
        verifier = built.log_signer.verifier
        for key in verifier.generations() if every else (verifier,):
            typer.echo(key.to_vkey())


@audit_app.command("verify")
def verify(
    key_text: PublicKeyOption = None,
    against: Annotated[
        Path | None,
        typer.Option(help="A checkpoint note kept earlier: the log must still extend it.", exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Recompute the whole stored log against its signed checkpoints; exit 1 at the first bad entry."""
    cli = _cli()
    held = against.read_text(encoding="utf-8") if against else None
    with cli.container() as built:
        key = pinned_keys(key_text) if key_text else built.log_signer.verifier
        with built.engine.connect() as conn:
            report = cli.run_checked(lambda: verify_stored_log(conn, key, against=held))
    if not report.ok:
        where = f"; first bad leaf {report.first_bad_leaf}" if report.first_bad_leaf is not None else ""
        raise cli.fail(f"{report.message} ({report.code}){where}")
    pending = f"; {report.pending} entries pending integration" if report.pending else ""
    typer.echo(report.message + pending)


@audit_app.command("prove")
def prove(
    entry: Annotated[int, typer.Option("--entry", help="The leaf index of the entry.", min=0)],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the proof here instead of stdout.")] = None,
) -> None:
    """Write the offline proof (JSON) that entry N is in the signed log."""
    cli = _cli()
    with cli.container() as built, built.engine.connect() as conn:
        key = built.log_signer.verifier
        bundle = cli.run_checked(lambda: prove_entry(conn, entry, key))
    document = json.dumps(bundle.to_json(), indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        typer.echo(document, nl=False)
    else:
        out_file.write_text(document, encoding="utf-8")
        typer.echo(f"wrote the proof of entry {entry} to {out_file}")


@audit_app.command("check-proof")
def check_proof(
    proof_file: Annotated[Path, typer.Argument(help="A proof from `audit prove`.", exists=True, dir_okay=False)],
    key_text: PublicKeyOption = None,
) -> None:
    """Check a proof offline: entry → leaf → inclusion → root → signed checkpoint (exit 0 valid, 1 not)."""
    cli = _cli()
    try:
        document = json.loads(proof_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise cli.fail(f"{proof_file} is not a JSON proof") from None
    pinned = pinned_keys(key_text) if key_text else None
    verdict = check_proof_json(document, pinned)
    if not verdict.ok:
        raise cli.fail(f"proof invalid: {verdict.message} ({verdict.code})")
    typer.echo(f"proof valid: {verdict.message}")
    if pinned is None:
        cli.console.print("note: the key came from the proof itself; pin the published key with --public-key")

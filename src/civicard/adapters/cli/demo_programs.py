"""The demo town's program register: the item catalogue and every published (or retired) demo rule file,
proposed by one demo program administrator and approved by the other — through the real services."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console

from civicard.adapters.cli.programs import propose_text, staff_account
from civicard.adapters.db.register_store import SqlProgramRegister
from civicard.adapters.publication import publication_uow
from civicard.bootstrap import Container
from civicard.programs import publishing
from civicard.programs.testing import rule_files

_CHECKOUT_RULEPACKS = Path(__file__).resolve().parents[4] / "rulepacks"  # src/civicard/adapters/cli → repo
PROPOSER = "administradora"
APPROVER = "aprobador"
DEMO_NOTE = "demo town: the rule file as shipped"


def demo_rulepacks() -> Path:
    """./rulepacks when the demo runs from a checkout's root, else the checkout this module lives in."""
    here = Path("rulepacks")
    return here if (here / "items.yaml").is_file() else _CHECKOUT_RULEPACKS


def publish_demo_programs(container: Container, console: Console, root: Path | None = None) -> int:
    """Load the catalogue, then propose + approve (+ retire) each demo file whose `status` says so.

    Idempotent: a version already in the register is left as it is. Returns how many versions
    were registered now. Needs the demo accounts (`ensure_demo_accounts`).
    """
    root = root or demo_rulepacks()
    proposer = staff_account(container, PROPOSER)
    approver = staff_account(container, APPROVER)
    catalogue = (root / "items.yaml").read_text(encoding="utf-8")
    with publication_uow(container, proposer) as uow:
        if set((yaml.safe_load(catalogue) or {}).get("items") or {}) - uow.register.item_codes():
            count = publishing.load_catalogue(uow, catalogue, proposer)
            console.print(f"Item catalogue: {count} items.", highlight=False)
    files = []
    for path in rule_files(root):
        source = path.read_text(encoding="utf-8")
        status = (yaml.safe_load(source) or {}).get("status")
        if status in ("published", "retired"):
            files.append((path, source, status))
    # Oldest first, so each preview compares with the version before it.
    files.sort(key=lambda f: str((yaml.safe_load(f[1]) or {}).get("effective_from")))
    registered = 0
    for path, source, status in files:
        pack = publishing.parse_source(source)
        with container.engine.connect() as conn:
            if SqlProgramRegister(conn).find(pack.program, pack.version) is not None:
                continue
        proposal = propose_text(container, source, proposer, DEMO_NOTE)
        with publication_uow(container, approver) as uow:
            publishing.approve(uow, proposal.version.id, approver, DEMO_NOTE)
        if status == "retired":
            with publication_uow(container, approver) as uow:
                publishing.retire(uow, proposal.version.id, approver, "demo town: retired as shipped")
        registered += 1
        console.print(f"Program {pack.program} {pack.version}: {status} ({path.name}).", highlight=False)
    return registered

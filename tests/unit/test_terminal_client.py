"""The terminal client offline: never beyond a cap or what remains, a durable queue, signed receipts,
and rule files' offline caps."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicard.distribution.offline import (
    Bundle,
    bundle_keyring,
    bundle_signing_key,
    card_key,
    outlet_bundle_key,
    parse_receipt,
    sign_bundle,
    verify_receipt,
)
from civicard.distribution.sales import BasketLine, Refused
from civicard.identity.cards import CardKeys
from civicard.identity.credentials import CardClaims, issue_token, new_handle
from civicard.identity.status_list import INVALID, StatusList, new_token, sign_status_list
from civicard.programs.expressions import InvalidRule
from civicard.programs.rulepack import rulepack_from_dict
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey
from civicard.terminal.client import BUNDLE_KEYS_PATH, BUNDLE_PATH, CARD_KEYS_PATH, RECEIPTS_PATH, TerminalClient

ROOT = RootKey(hashlib.sha256(b"civicard terminal client tests").digest())
CARD_KEYS = CardKeys.derive(ROOT)
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
PERIOD = "2026-11"
OUTLET = "0" * 32
TERMINAL = "a" * 32
CAPS = {"RICE-1KG": 1, "OIL-1L": 2}
ITEMS = ("RICE-1KG", "OIL-1L", "BEANS-1KG")
RULES = Path(__file__).resolve().parents[2] / "rulepacks"


@dataclass
class Card:
    handle: str
    index: int
    token: str


def make_card(index: int) -> Card:
    handle = new_handle()
    claims = CardClaims(handle, index, NOW - timedelta(days=30), NOW + timedelta(days=365))
    return Card(handle, index, issue_token(claims, CARD_KEYS.current))


@dataclass
class Server:
    """What the terminal downloads: card keys, the bundle keys and one bundle; receipts it receives."""

    known: list[list[Card]]  # households (groups) the bundle lists, with their cards
    remaining: list[dict[str, int]]
    revoked: set[int] = field(default_factory=set)
    list_age: timedelta = timedelta(0)
    received: list[dict[str, Any]] = field(default_factory=list)

    def bundle(self) -> bytes:
        status = StatusList.empty(64)
        for index in self.revoked:
            status.set(index, INVALID)
        signed_list = sign_status_list(new_token(status, "/v1/status-list", 1, NOW - self.list_age), CARD_KEYS.current)
        key = outlet_bundle_key(ROOT, OUTLET, PERIOD)
        cards = {card_key(key, c.handle): g for g, household in enumerate(self.known) for c in household}
        bundle = Bundle(
            PERIOD, OUTLET, NOW, datetime(2026, 12, 1, tzinfo=UTC), key, cards, tuple(self.remaining), CAPS, signed_list
        )
        return sign_bundle(bundle, bundle_signing_key(ROOT))

    def get(self, path: str) -> bytes:
        return {
            CARD_KEYS_PATH: CARD_KEYS.keyring.cose_key_set(),
            BUNDLE_KEYS_PATH: bundle_keyring(ROOT).cose_key_set(),
            BUNDLE_PATH: self.bundle(),
        }[path]

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        assert path == RECEIPTS_PATH
        self.received.extend(body["receipts"])
        results = [
            {"index": i, "status": "applied", "reason": None, "transaction_id": None}
            for i in range(len(body["receipts"]))
        ]
        return {"results": results}


def open_terminal(directory: Path, server: Server, key: Ed25519PrivateKey | None = None) -> TerminalClient:
    client = TerminalClient.open(directory)
    client.home.store_key(key or Ed25519PrivateKey.generate())
    client.configure("http://server.invalid", TERMINAL)
    client.sync(server, NOW)
    return client


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- caps and remaining are never exceeded ----------------------------------------------------------

basket_st = st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(1, 3)), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    remaining=st.lists(st.fixed_dictionaries({i: st.integers(0, 4) for i in ITEMS}), min_size=1, max_size=2),
    attempts=st.lists(st.tuples(st.integers(0, 4), basket_st), min_size=1, max_size=14),
)
def test_offline_sales_never_exceed_a_cap_or_what_remains(
    remaining: list[dict[str, int]], attempts: list[tuple[int, list[tuple[str, int]]]]
) -> None:
    known = [[make_card(2 * g), make_card(2 * g + 1)] for g in range(len(remaining))]  # two cards a household
    strangers = [make_card(40 + i) for i in range(2)]
    cards = [c for household in known for c in household] + strangers
    with tempfile.TemporaryDirectory() as tmp, open_terminal(Path(tmp), Server(known, remaining)) as client:
        for which, lines in attempts:
            card = cards[which % len(cards)]
            try:
                client.redeem(card.token, [BasketLine(i, q) for i, q in lines], NOW)
            except Refused as refused:
                assert refused.code in {"offline_cap_exceeded", "insufficient_remaining", "not_entitled"}
        sold: dict[str, dict[str, int]] = {}
        for r in client.queue():
            body = json.loads(r.payload)
            for item, qty in body["items"].items():
                sold.setdefault(body["card"], {}).setdefault(item, 0)
                sold[body["card"]][item] += qty
    for card in strangers:
        for item in ITEMS:
            assert sold.get(card.handle, {}).get(item, 0) <= CAPS.get(item, 0)
    for household, left in zip(known, remaining, strict=True):
        for item in ITEMS:
            assert sum(sold.get(c.handle, {}).get(item, 0) for c in household) <= left[item]


def test_a_cap_counts_what_this_terminal_already_sold_the_card(tmp_path: Path) -> None:
    card = make_card(3)
    with open_terminal(tmp_path, Server([], [])) as client:
        client.redeem(card.token, [BasketLine("OIL-1L", 1)], NOW)
        with pytest.raises(Refused) as refused:
            client.redeem(card.token, [BasketLine("OIL-1L", 2)], NOW)
        sale = client.redeem(card.token, [BasketLine("OIL-1L", 1)], NOW)
    assert refused.value.code == "offline_cap_exceeded"
    assert (sale.source, sale.left) == ("caps", {"OIL-1L": 0})


def test_with_a_stale_status_list_a_known_card_gets_no_more_than_the_caps(tmp_path: Path) -> None:
    card = make_card(1)
    server = Server([[card]], [{"RICE-1KG": 5}], list_age=timedelta(days=8))
    with open_terminal(tmp_path, server) as client:
        with pytest.raises(Refused) as refused:
            client.redeem(card.token, [BasketLine("RICE-1KG", 2)], NOW)
        sale = client.redeem(card.token, [BasketLine("RICE-1KG", 1)], NOW)
    assert refused.value.code == "insufficient_remaining" and sale.source == "remaining"


def test_a_revoked_card_or_an_unknown_typed_number_is_refused_offline_and_nothing_is_queued(tmp_path: Path) -> None:
    revoked, known = make_card(5), make_card(6)
    with open_terminal(tmp_path, Server([[known]], [{"RICE-1KG": 2}], revoked={5})) as client:
        with pytest.raises(DomainError) as card_revoked:
            client.redeem(revoked.token, [BasketLine("RICE-1KG", 1)], NOW)
        with pytest.raises(DomainError) as typed:
            client.redeem(new_handle(), [BasketLine("RICE-1KG", 1)], NOW)
        assert client.queue() == []
        sale = client.redeem(known.handle, [BasketLine("RICE-1KG", 1)], NOW)  # typed, but the bundle lists it
    assert (card_revoked.value.code, typed.value.code) == ("card_revoked", "card_scan_required")
    assert sale.source == "remaining"


# --- the queue ------------------------------------------------------------------------------------


def test_the_queue_survives_closing_and_reopening_and_syncs_in_order(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    server = Server([], [])
    card = make_card(9)
    client = open_terminal(tmp_path, server, key)
    client.redeem(card.token, [BasketLine("RICE-1KG", 1)], NOW)
    client.redeem(card.token, [BasketLine("OIL-1L", 2)], NOW)
    client.close()
    with TerminalClient.open(tmp_path) as reopened:
        assert [r.seq for r in reopened.queue()] == [1, 2]
        assert reopened.status(NOW).queued == 2
        report = reopened.sync(server, NOW + timedelta(minutes=1))
        assert (report.sent, report.applied) == (2, 2)
        assert reopened.queue() == [] and reopened.status(NOW).last_sync is not None
    payloads = [_b64(r["payload"]) for r in server.received]
    receipts = [parse_receipt(p) for p in payloads]
    assert [(r.seq, r.items, r.card, r.terminal_id) for r in receipts] == [
        (1, {"RICE-1KG": 1}, card.handle, TERMINAL),
        (2, {"OIL-1L": 2}, card.handle, TERMINAL),
    ]
    public = key.public_key().public_bytes_raw()
    for sent, payload in zip(server.received, payloads, strict=True):
        verify_receipt(public, payload, _b64(sent["signature"]))  # raises if not the device's signature


def test_a_tampered_bundle_on_disk_is_not_used(tmp_path: Path) -> None:
    with open_terminal(tmp_path, Server([], [])) as client:
        raw = bytearray(client.store.get("bundle") or b"")
        raw[-1] ^= 1
        client.store.put({"bundle": bytes(raw)})
        with pytest.raises(DomainError) as refused:
            client.redeem(make_card(2).token, [BasketLine("RICE-1KG", 1)], NOW)
    assert refused.value.code == "offline_bundle_bad_signature"


# --- offline caps in rule files -------------------------------------------------------------------


def _food() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((RULES / "food_basket" / "2026.1.yaml").read_text(encoding="utf-8"))
    return copy.deepcopy(raw)


def test_published_rule_files_set_offline_caps_for_items_they_grant() -> None:
    pack = rulepack_from_dict(_food())
    assert pack.offline_caps["RICE-1KG"] == 1 and set(pack.offline_caps) <= {i.item for i in pack.items}


@pytest.mark.parametrize(
    ("caps", "code"),
    [
        ({"INSULIN-NPH-10ML": 1}, "invalid_offline_cap"),  # not an item this program grants
        ({"RICE-1KG": -1}, "invalid_offline_cap"),
        ({"RICE-1KG": 1.5}, "invalid_offline_cap"),
        ({"RICE-1KG": True}, "invalid_offline_cap"),
        ([1], "invalid_rule_file"),
    ],
)
def test_an_offline_cap_must_be_a_whole_number_for_a_granted_item(caps: Any, code: str) -> None:
    raw = _food() | {"offline_caps": caps}
    with pytest.raises(InvalidRule) as refused:
        rulepack_from_dict(raw)
    assert refused.value.code == code


def test_offline_caps_are_part_of_a_versions_hash() -> None:
    raw = _food()
    changed = raw | {"offline_caps": {**raw["offline_caps"], "RICE-1KG": 2}}
    assert rulepack_from_dict(raw).sha256 != rulepack_from_dict(changed).sha256

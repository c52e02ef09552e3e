"""Cards: issue, replace, suspend, reinstate, revoke, print, publish the status list, and card PINs.

A card is a random handle (`new_handle`), a random slot in the status list and a signed token
(`issue_token`) — the token is not stored: Ed25519 signatures are deterministic, so re-signing a
card's stored claims reproduces its QR text exactly (reprints need no copy of the token).

Status list slots are drawn at random from `STATUS_LIST_CAPACITY` and never reused, so a slot
says nothing about when, where or in which order a card was issued (the draft's privacy advice).
At 2**26 (67 M) slots a 2-bit list is 16 MiB raw and compresses to well under the 500 kB budget
at 30 M cards with 1 % revoked (zeros cost almost nothing); the random draw needs ~2 tries at 45 %
load. Changing the capacity starts a list of another size: terminals then fetch it whole.

Every status change republishes the list in the same transaction as the change, with a signed
delta from the previous version; revoked cards stay listed (their slots are never reused).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal, Protocol

from civicard.identity.card_print import CardFace, render_cards
from civicard.identity.credentials import (
    CardClaims,
    IssuerKey,
    Keyring,
    issue_token,
    new_handle,
    parse_handle,
    parse_sign1,
)
from civicard.identity.pins import (
    PinCounter,
    PinOutcome,
    check_new_pin,
    check_pin,
    hash_pin,
    pin_pepper,
    reset_pin_lock,
)
from civicard.identity.status_list import (
    INVALID,
    SUSPENDED,
    StatusList,
    diff,
    new_token,
    sign_delta,
    sign_status_list,
    verify_status_list,
)
from civicard.registry.model import Person
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from civicard.shared.ids import is_id, new_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, AccessLog, Subject, disclose, record_change

# Without any key generation recorded (governance/key_custody.py), kid 1 signs and is the only one published.
ISSUER_KID = 1
PUBLISHED_KIDS = (1,)
STATUS_LIST_CAPACITY = 2**26
CARD_VALIDITY = timedelta(days=5 * 365)
STATUS_LIST_URI = "/v1/status-list"
MAX_SLOT_DRAWS = 32
CARD_SERVICE = "card_service"
CardStatus = Literal["valid", "suspended", "revoked"]
LISTED_STATUS = {"suspended": SUSPENDED, "revoked": INVALID}
# Reason codes, never free text: they reach logs and the public status history without personal detail.
REVOKE_REASONS = frozenset(
    {"lost", "stolen", "damaged", "deceased", "fraud", "holder_request", "data_changed", "duplicate"}
)
# Not a reason a clerk gives: only an approved compromise rotation sets it (revoke_cards_signed_by).
KEY_COMPROMISED = "key_compromised"
SUSPEND_REASONS = frozenset({"reported_missing", "investigation", "holder_request"})
REINSTATE_REASONS = frozenset({"found", "investigation_closed", "holder_request"})
_STATUS_ACTIONS = {"valid": "card.reinstated", "suspended": "card.suspended", "revoked": "card.revoked"}


@dataclass(frozen=True)
class CardPolicy:
    """What varies between deployments and tests: the list's size and URI, the card lifetime."""

    status_list_capacity: int = STATUS_LIST_CAPACITY
    card_validity: timedelta = CARD_VALIDITY
    status_list_uri: str = STATUS_LIST_URI


DEFAULT_POLICY = CardPolicy()


@dataclass(frozen=True)
class CardKeys:
    """Issuer keys by kid and the PIN pepper, all derived from the root key and held only in memory.

    `issuers` holds every published generation (the current one and those retired while cards they
    signed are in circulation); a compromised generation is left out, so its cards stop verifying.
    """

    issuers: dict[int, IssuerKey]
    current_kid: int
    pepper: bytes = field(repr=False)

    @classmethod
    def derive(cls, root_key: RootKey, current_kid: int = ISSUER_KID, kids: Iterable[int] = PUBLISHED_KIDS) -> CardKeys:
        issuers = {kid: IssuerKey.derive(root_key, kid) for kid in {*kids, current_kid}}
        return cls(issuers, current_kid, pin_pepper(root_key))

    @property
    def current(self) -> IssuerKey:
        return self.issuers[self.current_kid]

    @cached_property
    def keyring(self) -> Keyring:
        """The public keys to publish (`/v1/keys`, `civicard cards keys`); parsed once per key set."""
        return Keyring.of(self.issuers.values())


@dataclass(frozen=True)
class Card:
    id: str
    handle: str
    person_id: str
    status_index: int
    kid: int
    issued_at: datetime
    expires_at: datetime
    issued_by: str
    status: CardStatus = "valid"
    status_reason: str | None = None
    status_changed_at: datetime | None = None
    status_changed_by: str | None = None
    replaces_card_id: str | None = None

    def claims(self) -> CardClaims:
        return CardClaims(self.handle, self.status_index, self.issued_at, self.expires_at)


@dataclass(frozen=True)
class StoredPin:
    pin_hash: str
    counter: PinCounter


@dataclass(frozen=True)
class PublishedStatusList:
    version: int
    published_at: datetime
    signed_list: bytes
    signed_delta: bytes | None


@dataclass(frozen=True)
class IssuedCard:
    card: Card
    token: str


@dataclass(frozen=True)
class CardTransfer:
    """What `transfer_card` did: the alias's card it revoked and the survivor's successor, if any."""

    revoked: Card | None
    issued: IssuedCard | None


class CardStore(Protocol):
    def add(self, card: Card) -> None: ...
    def by_handle(self, handle: str, for_update: bool = False) -> Card | None: ...
    def by_id(self, card_id: str, for_update: bool = False) -> Card | None: ...
    def current_of_person(self, person_id: str) -> Card | None: ...
    def slot_taken(self, index: int) -> bool: ...
    def save_status(self, card: Card) -> None: ...
    def listed_statuses(self) -> list[tuple[int, str]]: ...
    def live_signed_by(self, kid: int) -> list[Card]:
        """Cards not revoked whose token the issuer key `kid` signs."""
        ...

    def pin(self, card_id: str, for_update: bool = False) -> StoredPin | None: ...
    def save_pin(self, card_id: str, pin_hash: str, at: datetime, by: str) -> None: ...
    def save_pin_counter(self, card_id: str, counter: PinCounter) -> None: ...
    def clear_pin(self, card_id: str) -> None:
        """Forget the card's PIN (hash and counter): the card is as if none had been set."""
        ...

    def latest_status_list(self, for_update: bool = False) -> PublishedStatusList | None: ...
    def add_status_list(self, published: PublishedStatusList) -> None: ...


class PersonLookup(Protocol):
    def get(self, person_id: str) -> Person | None: ...


class CardUnitOfWork(Protocol):
    """One transaction; nothing is stored until `commit`."""

    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def persons(self) -> PersonLookup: ...
    @property
    def cards(self) -> CardStore: ...
    @property
    def access_log(self) -> AccessLog: ...

    def commit(self) -> None: ...


def card_token(card: Card, keys: CardKeys) -> str:
    """The card's QR text, re-signed from its stored claims (identical to the one first issued)."""
    issuer = keys.issuers.get(card.kid)
    if issuer is None:
        raise Unavailable("issuer_key_retired", "This card's signing key is retired; replace the card.")
    return issue_token(card.claims(), issuer)


def issue_card(
    uow: CardUnitOfWork, keys: CardKeys, person_id: str, pin: str | None = None, policy: CardPolicy = DEFAULT_POLICY
) -> IssuedCard:
    """A first card for an enrolled person (optionally with the PIN they chose at the desk)."""
    _require_card_service(uow)
    person = _require_issuable(_require_person(uow, person_id))
    if uow.cards.current_of_person(person_id) is not None:
        raise Conflict("card_exists", "This person already has a card; replace it instead of issuing a second.")
    issued = _new_card(uow, keys, person, pin, policy, replaces=None)
    if uow.cards.latest_status_list(for_update=True) is None:
        _publish(uow, keys, policy)
    _log(uow, person_id, "card.issued", issued.card)
    uow.commit()
    return issued


def replace_card(
    uow: CardUnitOfWork,
    keys: CardKeys,
    handle: str,
    reason: str,
    pin: str | None = None,
    policy: CardPolicy = DEFAULT_POLICY,
) -> IssuedCard:
    """Revoke the old card and issue its successor in one transaction: never two live cards, never none."""
    _require_card_service(uow)
    old = _require_card(uow, handle, for_update=True)
    if old.status == "revoked":
        raise Conflict("card_revoked", "This card is already revoked; issue a new card for the person instead.")
    person = _require_issuable(_require_person(uow, old.person_id))
    _change_status(uow, old, "revoked", _reason(reason, REVOKE_REASONS))
    issued = _new_card(uow, keys, person, pin, policy, replaces=old.id)
    _publish(uow, keys, policy)
    _log(uow, person.id, "card.replaced", issued.card, old)
    uow.commit()
    return issued


def revoke_card(
    uow: CardUnitOfWork, keys: CardKeys, handle: str, reason: str, policy: CardPolicy = DEFAULT_POLICY
) -> Card:
    """Final: a revoked card never becomes valid again."""
    return _set_status(uow, keys, handle, "revoked", _reason(reason, REVOKE_REASONS), policy)


def suspend_card(
    uow: CardUnitOfWork, keys: CardKeys, handle: str, reason: str, policy: CardPolicy = DEFAULT_POLICY
) -> Card:
    return _set_status(uow, keys, handle, "suspended", _reason(reason, SUSPEND_REASONS), policy)


def reinstate_card(
    uow: CardUnitOfWork, keys: CardKeys, handle: str, reason: str, policy: CardPolicy = DEFAULT_POLICY
) -> Card:
    return _set_status(uow, keys, handle, "valid", _reason(reason, REINSTATE_REASONS), policy)


def transfer_card(
    uow: CardUnitOfWork,
    keys: CardKeys,
    from_person_id: str,
    to_person_id: str,
    reason: str,
    policy: CardPolicy = DEFAULT_POLICY,
) -> CardTransfer:
    """Inside the caller's transaction (no commit): revoke `from`'s current card and, if `to` has
    none, issue `to` its successor (`replaces_card_id` links them) — merging two records of one person.

    The successor has no PIN: a PIN hash is bound to its card's handle, so the holder chooses a new
    one at the desk. The caller authorises the work (a merge runs under `duplicate_review`).
    """
    current = uow.cards.current_of_person(from_person_id)
    if current is None:
        return CardTransfer(None, None)
    old = _require_card(uow, current.handle, for_update=True)
    revoked = _change_status(uow, old, "revoked", _reason(reason, REVOKE_REASONS))
    issued = None
    if uow.cards.current_of_person(to_person_id) is None:
        issued = _new_card(uow, keys, _require_person(uow, to_person_id), None, policy, replaces=old.id)
    _publish(uow, keys, policy)
    _log(uow, from_person_id, "card.revoked", revoked)
    if issued is not None:
        _log(uow, to_person_id, "card.replaced", issued.card, old)
    return CardTransfer(revoked, issued)


def revoke_person_cards(
    uow: CardUnitOfWork, keys: CardKeys, person_id: str, reason: str, policy: CardPolicy = DEFAULT_POLICY
) -> list[Card]:
    """Inside the caller's transaction (no commit): revoke every card of the person that is not
    revoked yet, and publish the status list once if any was. The caller authorises the work
    (a death is recorded under `life_event`)."""
    code = _reason(reason, REVOKE_REASONS)
    revoked: list[Card] = []
    while (current := uow.cards.current_of_person(person_id)) is not None:
        card = _change_status(uow, _require_card(uow, current.handle, for_update=True), "revoked", code)
        _log(uow, person_id, "card.revoked", card)
        revoked.append(card)
    if revoked:
        _publish(uow, keys, policy)
    return revoked


def revoke_cards_signed_by(
    uow: CardUnitOfWork, keys: CardKeys, kid: int, approval_id: str, policy: CardPolicy = DEFAULT_POLICY
) -> list[Card]:
    """Inside the caller's transaction (no commit): revoke every card still valid or suspended whose
    token the issuer key `kid` signed (`key_compromised`), and publish the list signed by `keys.current`.

    Runs as the second half of an approved compromise rotation (purpose `four_eyes`): the entries
    name the holder but no registry category, like a cleared PIN — a card is a credential. Holders
    get a new card at the desk (`issue_card` once the old one is revoked).
    """
    revoked = []
    for found in uow.cards.live_signed_by(kid):
        card = _change_status(uow, _require_card(uow, found.handle, for_update=True), "revoked", KEY_COMPROMISED)
        detail = f"card.revoked card={card.id} reason={KEY_COMPROMISED} approval={approval_id}"
        record_change(uow.access_log, uow.context, [Subject.person(card.person_id)], [], detail, uow.clock.now())
        revoked.append(card)
    if uow.cards.latest_status_list() is not None:
        _publish(uow, keys, policy)
    return revoked


def publish_status_list(
    uow: CardUnitOfWork, keys: CardKeys, policy: CardPolicy = DEFAULT_POLICY
) -> PublishedStatusList:
    """A fresh signed version even without changes: terminals treat a list older than 7 days as stale."""
    published = _publish(uow, keys, policy)
    uow.commit()
    return published


def print_cards(uow: CardUnitOfWork, keys: CardKeys, person_ids: Sequence[str]) -> bytes:
    """One PDF page per person's current card, for a batch at the printer; each read is logged."""
    _require_card_service(uow)
    faces = []
    for person_id in person_ids:
        person = _require_person(uow, person_id)
        card = uow.cards.current_of_person(person_id)
        if card is None or card.status != "valid":
            raise Conflict("no_valid_card", f"Person '{person_id}' has no valid card to print; issue one first.")
        disclose(
            uow.access_log,
            uow.context,
            [Subject.person(person_id)],
            ["identity"],
            f"card.printed card={card.id}",
            uow.clock.now(),
        )
        faces.append(CardFace(person.full_name, card.handle, card_token(card, keys), card.expires_at.date()))
    if not faces:
        raise InvalidInput("no_cards", "There are no cards to print.")
    pdf = render_cards(faces)
    uow.commit()
    return pdf


def set_card_pin(uow: CardUnitOfWork, keys: CardKeys, handle: str, pin: str) -> None:
    """The PIN chosen at card pickup (when none was set at enrollment)."""
    _require_card_service(uow)
    card = _require_card(uow, handle, for_update=True)
    if uow.cards.pin(card.id) is not None:
        raise Conflict("pin_already_set", "This card already has a PIN; a registrar can reset it in person.")
    _store_pin(uow, keys, card, _require_person(uow, card.person_id), pin)
    _log(uow, card.person_id, "card.pin_set", card)
    uow.commit()


def reset_card_pin(uow: CardUnitOfWork, keys: CardKeys, handle: str, new_pin: str) -> None:
    """A registrar's in-person change of a PIN that is not locked.

    A locked PIN is refused (`pin_reset_needs_approval`): a lock means someone tried five wrong
    PINs, so unlocking takes a second person. The registrar asks (four-eyes kind `pin_reset`,
    governance/kinds.py); a second registrar or reviewer approves, which clears the PIN
    (`clear_locked_pin`); the holder then chooses a new one at the desk (`set_card_pin`).
    """
    _require_card_service(uow)
    card = _require_card(uow, handle, for_update=True)
    stored = uow.cards.pin(card.id, for_update=True)
    if stored is not None and stored.counter.locked:
        raise Forbidden(
            "pin_reset_needs_approval",
            "This PIN is locked: ask a second registrar or reviewer to approve unlocking it, "
            "then the holder chooses a new PIN.",
        )
    _store_pin(uow, keys, card, _require_person(uow, card.person_id), new_pin)
    _log(uow, card.person_id, "card.pin_reset", card)
    uow.commit()


def locked_pin_card(uow: CardUnitOfWork, handle: str) -> Card:
    """The card behind `handle` if its PIN is locked: what a registrar names when asking for a
    second person's approval to unlock it. Runs under the caller's purpose (`four_eyes`)."""
    return _require_locked_pin(uow, _require_card(uow, handle))


def card_with_locked_pin(uow: CardUnitOfWork, card_id: str, for_update: bool = False) -> Card:
    """Like `locked_pin_card`, by the card's id (what a `pin_reset` request stores)."""
    card = uow.cards.by_id(card_id, for_update) if is_id(card_id) else None
    if card is None:
        raise NotFound("unknown_card", "No card with this id.")
    return _require_locked_pin(uow, card, for_update)


def clear_locked_pin(uow: CardUnitOfWork, card_id: str, approval_id: str) -> Card:
    """Inside the approver's transaction (no commit): forget the card's locked PIN.

    The card is then as at pickup, without a PIN: the holder chooses a new one at a registrar's
    desk (`set_card_pin`) and until then PIN use is refused (`pin_not_set`). Clearing rather than
    unlocking gives nobody five fresh guesses at the old PIN, and no PIN or hash ever travels
    through the approval request.
    """
    card = card_with_locked_pin(uow, card_id, for_update=True)
    uow.cards.clear_pin(card.id)
    detail = f"card.pin_cleared card={card.id} approval={approval_id}"
    # No category: the PIN is a credential, not a fact about the holder (a PIN check logs none either).
    record_change(uow.access_log, uow.context, [Subject.person(card.person_id)], [], detail, uow.clock.now())
    return card


def attempt_card_pin(uow: CardUnitOfWork, keys: CardKeys, handle: str, pin: str, tries_used: int) -> PinOutcome:
    """One PIN attempt within a transaction (`tries_used` earlier attempts); the counter commits either way.

    A card that is not valid is refused before the PIN counts. The caller raises on refusal
    (`outcome.raise_if_refused()`) after this returns, so a wrong PIN is never rolled back.
    """
    card = _require_card(uow, handle, for_update=True)
    if card.status != "valid":
        raise Forbidden(f"card_{card.status}", f"This card is {card.status}.")
    if card.expires_at <= uow.clock.now():
        raise Forbidden("card_expired", "This card has expired.")
    stored = uow.cards.pin(card.id, for_update=True)
    if stored is None:
        raise Conflict("pin_not_set", "No PIN has been set for this card; set one at a registrar's desk.")
    outcome = check_pin(keys.pepper, card.handle, pin, stored.pin_hash, stored.counter, tries_used)
    if outcome.counter != stored.counter:
        uow.cards.save_pin_counter(card.id, outcome.counter)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(card.person_id)],
        [],
        f"card.pin_checked card={card.id} outcome={outcome.code}",
        uow.clock.now(),
    )
    uow.commit()
    return outcome


def _new_card(
    uow: CardUnitOfWork, keys: CardKeys, person: Person, pin: str | None, policy: CardPolicy, replaces: str | None
) -> IssuedCard:
    now = uow.clock.now().replace(microsecond=0)  # the token holds whole seconds; re-signing must match
    card = Card(
        new_id(),
        new_handle(),
        person.id,
        _free_slot(uow, policy),
        keys.current_kid,
        now,
        now + policy.card_validity,
        uow.context.actor.id,
        replaces_card_id=replaces,
    )
    token = card_token(card, keys)
    uow.cards.add(card)
    if pin is not None:
        _store_pin(uow, keys, card, person, pin)
    return IssuedCard(card, token)


def _free_slot(uow: CardUnitOfWork, policy: CardPolicy) -> int:
    for _ in range(MAX_SLOT_DRAWS):
        index = secrets.randbelow(policy.status_list_capacity)
        if not uow.cards.slot_taken(index):
            return index
    raise Unavailable("status_list_full", "No free status-list slot was found; the list needs a larger capacity.")


def _store_pin(uow: CardUnitOfWork, keys: CardKeys, card: Card, person: Person, pin: str) -> None:
    birth = person.birth_date
    avoid = (f"{birth.year}", birth.strftime("%d%m"), birth.strftime("%m%d"), birth.strftime("%d%m%y"))
    check_new_pin(pin, avoid)
    uow.cards.save_pin(card.id, hash_pin(keys.pepper, card.handle, pin), uow.clock.now(), uow.context.actor.id)
    uow.cards.save_pin_counter(card.id, reset_pin_lock())


def _set_status(
    uow: CardUnitOfWork, keys: CardKeys, handle: str, status: CardStatus, reason: str, policy: CardPolicy
) -> Card:
    _require_card_service(uow)
    card = _require_card(uow, handle, for_update=True)
    allowed = {"revoked": ("valid", "suspended"), "suspended": ("valid",), "valid": ("suspended",)}[status]
    if card.status not in allowed:
        raise Conflict(f"card_{card.status}", f"A {card.status} card cannot become {status}.")
    changed = _change_status(uow, card, status, reason)
    _publish(uow, keys, policy)
    _log(uow, card.person_id, _STATUS_ACTIONS[status], card)
    uow.commit()
    return changed


def _change_status(uow: CardUnitOfWork, card: Card, status: CardStatus, reason: str) -> Card:
    changed = replace(
        card,
        status=status,
        status_reason=reason,
        status_changed_at=uow.clock.now(),
        status_changed_by=uow.context.actor.id,
    )
    uow.cards.save_status(changed)
    return changed


def _publish(uow: CardUnitOfWork, keys: CardKeys, policy: CardPolicy) -> PublishedStatusList:
    """The list as the cards table says now, signed, with a delta from the version before (same size only)."""
    latest = uow.cards.latest_status_list(for_update=True)  # serialises publishers on PostgreSQL
    status = StatusList.empty(policy.status_list_capacity)
    for index, card_status in uow.cards.listed_statuses():
        status.set(index, LISTED_STATUS[card_status])
    now = uow.clock.now()
    token = new_token(status, policy.status_list_uri, latest.version + 1 if latest else 1, now)
    delta = None
    # A list signed by a key no longer published (compromised) gets no delta: terminals fetch the new list whole.
    if latest is not None and keys.keyring.get(parse_sign1(latest.signed_list, "status_list").kid) is not None:
        held = verify_status_list(latest.signed_list, keys.keyring)
        if (held.uri, held.status.size) == (token.uri, status.size):
            delta = sign_delta(diff(held, token), keys.current, now)
    published = PublishedStatusList(token.version, now, sign_status_list(token, keys.current), delta)
    uow.cards.add_status_list(published)
    return published


def _require_card_service(uow: CardUnitOfWork) -> None:
    """Issuing, printing, status changes and PIN setting are desk work under the card_service purpose."""
    if uow.context.purpose != CARD_SERVICE:
        raise Forbidden("purpose_not_allowed", f"Card work is done under the '{CARD_SERVICE}' purpose.")


def _reason(code: str, allowed: frozenset[str]) -> str:
    if code not in allowed:
        raise InvalidInput("invalid_reason", f"The reason is one of: {', '.join(sorted(allowed))}.")
    return code


def _require_person(uow: CardUnitOfWork, person_id: str) -> Person:
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    return person


def _require_issuable(person: Person) -> Person:
    """Held and merged records get no card: a reviewer settles the first, the second is an alias."""
    if person.record_status == "held":
        raise Conflict(
            "person_held_for_review",
            "This enrollment is held for a duplicate reviewer; issue the card once it is settled.",
        )
    if person.record_status == "merged":
        raise Conflict("person_merged", f"This record was merged into '{person.merged_into}'; use that record.")
    if person.record_status == "deceased":
        raise Conflict("person_deceased", "This person's death is recorded; no card is issued.")
    return person


def _require_locked_pin(uow: CardUnitOfWork, card: Card, for_update: bool = False) -> Card:
    if card.status == "revoked":
        raise Conflict("card_revoked", "This card is revoked; issue a new card instead of unlocking its PIN.")
    stored = uow.cards.pin(card.id, for_update)
    if stored is None or not stored.counter.locked:
        raise Conflict("pin_not_locked", "This card's PIN is not locked; a registrar changes it at the desk.")
    return card


def _require_card(uow: CardUnitOfWork, handle: str, for_update: bool = False) -> Card:
    card = uow.cards.by_handle(parse_handle(handle), for_update)
    if card is None:
        raise NotFound("unknown_card", "No card with this handle.")
    return card


def _log(uow: CardUnitOfWork, person_id: str, action: str, card: Card, old: Card | None = None) -> None:
    detail = f"{action} card={card.id}" + (f" replaces={old.id}" if old else "")
    record_change(uow.access_log, uow.context, [Subject.person(person_id)], ["identity"], detail, uow.clock.now())

"""Card handles, issuer keys and the card token: a CWT in a COSE_Sign1 (Ed25519), Base45 text in the QR.

Token layout (RFC 8392 CWT, RFC 9052 COSE_Sign1, RFC 9285 Base45), "CC1:" + Base45 of
`18([<<{1: -8, 4: h'<kid>'}>>, {}, <<claims>>, signature])`, claims (integer keys, no personal data):

    2 (sub)       the card handle, 11 characters (canonical form, see `parse_handle`)
    4 (exp)       expiry, unix seconds
    6 (iat)       issued at, unix seconds
    -65537        index of the card in the status list (civicard private claim, RFC 8392 §9.1 private-use range)
    -65538        token format version (1)

The IETF status claim (65535: {"status_list": {"idx", "uri"}}) costs ~16 bytes more, ~45 with its
required uri, past the 126-byte budget of a version-9 QR at level Q; so the index is a private
claim and terminals know the list's URI out of band. A token is 116–120 bytes (≤ 184 characters).

Issuer keys: kid n (one byte) signs with the Ed25519 key whose seed is
`root_key.derive("identity:issuer:<n>")` — nothing to store, back up or leak from the database.
Rotation (governance/key_custody.py, `civicard keys rotate issuer`): issue with n + 1 and keep n in
the published keyring until the last card signed with n expires; then drop it. A compromised kid is
dropped at once, its cards are revoked and their holders get new ones.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any

import cbor2
import numpy as np
from base45 import b45encode  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from cwt import COSE, COSEKey

from civicard.shared.errors import Forbidden, InvalidInput, Unauthenticated
from civicard.shared.keys import RootKey

QR_PREFIX, FORMAT_VERSION = "CC1:", 1
MAX_TOKEN_BYTES, MAX_TOKEN_CHARS = 126, 189  # QR version 9 at level Q: 189 alphanumeric characters
CLAIM_SUB, CLAIM_EXP, CLAIM_IAT = 2, 4, 6
CLAIM_STATUS_INDEX, CLAIM_FORMAT = -65537, -65538
ALG_EDDSA, HDR_ALG, HDR_KID, COSE_SIGN1_TAG = -8, 1, 4, 18
HANDLE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
HANDLE_RANDOM_CHARS = 10  # 50 random bits, then one check character
_HANDLE_VALUE = {ch: i for i, ch in enumerate(HANDLE_ALPHABET)}
_HANDLE_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
_HANDLE = re.compile(f"[{HANDLE_ALPHABET}]{{{HANDLE_RANDOM_CHARS + 1}}}")
# RFC 9285 alphabet value of each byte; 255 marks a character outside it
_B45_VALUE = bytes("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".find(chr(c)) % 256 for c in range(256))
_B45_WEIGHTS = np.array([1, 45, 45 * 45], dtype=np.uint32)
# What reading untrusted CBOR can raise (cbor2's errors are not ValueErrors).
UNREADABLE = (cbor2.CBORError, ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)


def new_handle() -> str:
    """10 random Crockford characters + 1 check character; never derived from the person id."""
    body = "".join(secrets.choice(HANDLE_ALPHABET) for _ in range(HANDLE_RANDOM_CHARS))
    return body + _check_char(body)


def _check_char(body: str) -> str:
    """Luhn mod 32 over the alphabet: catches any one wrong character and almost every swap of neighbours."""
    total, factor = 0, 2
    for ch in reversed(body):
        addend = factor * _HANDLE_VALUE[ch]
        total += addend // 32 + addend % 32
        factor = 3 - factor
    return HANDLE_ALPHABET[-total % 32]


def parse_handle(text: str) -> str:
    """A handle as a person types it (any case, dashes, O for 0, I/L for 1) → its canonical 11 characters."""
    candidate = text.upper().translate(_HANDLE_ALIASES)
    if not _HANDLE.fullmatch(candidate) or _check_char(candidate[:-1]) != candidate[-1]:
        raise InvalidInput("card_handle_invalid", "A card handle is 11 letters and digits; check for a typing mistake.")
    return candidate


def format_handle(handle: str) -> str:  # the printed form, in groups read aloud: K7M2-QXR9-TZD
    return f"{handle[:4]}-{handle[4:8]}-{handle[8:]}"


def kid_bytes(kid: int) -> bytes:
    if not 0 <= kid <= 255:
        raise InvalidInput("issuer_kid_invalid", "An issuer key id is a number from 0 to 255.")
    return bytes([kid])


@dataclass(frozen=True)
class IssuerKey:
    """One generation of the card-signing key. Its private half exists only in memory."""

    kid: int
    private_key: Ed25519PrivateKey

    @classmethod
    def derive(cls, root_key: RootKey, kid: int) -> IssuerKey:
        seed = root_key.derive(f"identity:issuer:{kid_bytes(kid)[0]}", 32)
        return cls(kid, Ed25519PrivateKey.from_private_bytes(seed))

    @cached_property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @cached_property
    def cose_key(self) -> Any:  # cwt's COSEKeyInterface: kty OKP, kid, alg EdDSA, crv Ed25519, x, d
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return COSEKey.new({1: 1, 2: kid_bytes(self.kid), 3: ALG_EDDSA, -1: 6, -2: self.public_bytes, -4: seed})

    def __repr__(self) -> str:
        return f"IssuerKey(kid={self.kid}, <secret>)"


class Keyring:
    """The public keys a verifier accepts, by kid, parsed once (terminals verify thousands of cards)."""

    def __init__(self, keys: Mapping[bytes, bytes]) -> None:
        self.raw = dict(keys)
        self._keys = {kid: Ed25519PublicKey.from_public_bytes(pub) for kid, pub in self.raw.items()}

    @classmethod
    def of(cls, issuer_keys: Iterable[IssuerKey]) -> Keyring:
        return cls({kid_bytes(k.kid): k.public_bytes for k in issuer_keys})

    def get(self, kid: bytes) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def cose_key_set(self) -> bytes:
        """The COSE_KeySet (RFC 9052 §7) to publish: any COSE library can verify cards with it."""
        # kty OKP, kid, alg EdDSA, key_ops [verify], crv Ed25519, x
        return cbor2.dumps([{1: 1, 2: k, 3: ALG_EDDSA, 4: [2], -1: 6, -2: x} for k, x in sorted(self.raw.items())])

    @classmethod
    def from_cose_key_set(cls, data: bytes) -> Keyring:
        try:
            entries = cbor2.loads(data)
            if type(entries) is not list:
                raise TypeError("a COSE_KeySet is an array")
            keys = {e[2]: e[-2] for e in entries if e[1] == 1 and e[-1] == 6 and e[3] == ALG_EDDSA}
            if not all(type(kid) is bytes and type(pub) is bytes for kid, pub in keys.items()):
                raise TypeError("kid and x must be byte strings")
            return cls(keys)
        except UNREADABLE as exc:
            raise InvalidInput("key_set_malformed", "The key set is not a COSE_KeySet of Ed25519 keys.") from exc

    def jwks(self) -> dict[str, Any]:
        """The same keys as a JWK Set (RFC 8037 OKP keys); `kid` is the base64url of the COSE kid."""
        return {"keys": [_jwk(kid, pub) for kid, pub in sorted(self.raw.items())]}


def _jwk(kid: bytes, pub: bytes) -> dict[str, str]:
    b64 = base64.urlsafe_b64encode
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": b64(kid).decode().rstrip("="),
        "x": b64(pub).decode().rstrip("="),
    }


@dataclass(frozen=True, slots=True)
class Sign1:
    """A structurally checked, not yet verified COSE_Sign1."""

    kid: bytes
    headers: dict[int, Any]
    protected: bytes
    payload: bytes
    signature: bytes


_cose = cache(COSE.new)


def sign1(payload: bytes, key: IssuerKey, extra_headers: Mapping[int, Any] | None = None) -> bytes:
    """Sign with cwt; the kid goes in the protected header so it is covered by the signature."""
    protected = {HDR_ALG: ALG_EDDSA, HDR_KID: kid_bytes(key.kid), **(extra_headers or {})}
    signed = _cose().encode_and_sign(payload, key.cose_key, protected=protected, unprotected={})
    if not isinstance(signed, bytes):
        raise TypeError("cwt returned a CBOR tag object instead of bytes")
    return signed


def parse_sign1(raw: bytes, subject: str) -> Sign1:
    """Check the shape byte for byte: tag 18, canonical CBOR, EdDSA, a kid, nothing unprotected, nothing after."""
    try:
        outer = cbor2.loads(raw)
        if not (isinstance(outer, cbor2.CBORTag) and outer.tag == COSE_SIGN1_TAG and cbor2.dumps(outer) == raw):
            raise ValueError("not a canonical tagged COSE_Sign1")
        protected, unprotected, payload, signature = outer.value
        headers = cbor2.loads(protected)
        kid = headers.get(HDR_KID) if type(headers) is dict else None
        if not (
            type(protected) is type(payload) is type(signature) is type(kid) is bytes
            and unprotected == {}
            and type(unprotected) is dict
            and headers[HDR_ALG] == ALG_EDDSA
            and len(signature) == 64
        ):
            raise ValueError("unexpected COSE_Sign1 content")
    except UNREADABLE as exc:
        raise InvalidInput(f"{subject}_malformed", f"The {subject.replace('_', ' ')} cannot be read.") from exc
    return Sign1(kid, headers, protected, payload, signature)


def verify_sign1(message: Sign1, keyring: Keyring, subject: str) -> None:
    """Signature check of RFC 9052 §4.4: Sig_structure = ["Signature1", protected, external_aad, payload]."""
    public_key = keyring.get(message.kid)
    if public_key is None:
        raise Unauthenticated(f"{subject}_unknown_kid", f"The {subject.replace('_', ' ')} is signed by an unknown key.")
    to_be_signed = cbor2.dumps(["Signature1", message.protected, b"", message.payload])
    try:
        public_key.verify(message.signature, to_be_signed)
    except InvalidSignature:
        raise Unauthenticated(f"{subject}_bad_signature", "The signature does not verify.") from None


@dataclass(frozen=True, slots=True)
class CardClaims:
    """What a card's QR says; whole seconds (the token stores unix seconds)."""

    handle: str
    status_index: int
    issued_at: datetime
    expires_at: datetime
    format_version: int = FORMAT_VERSION


ParsedToken = Sign1


def issue_token(claims: CardClaims, key: IssuerKey) -> str:
    """The exact text the QR holds. Refuses anything over the QR budget rather than print a bigger code."""
    if parse_handle(claims.handle) != claims.handle or not 0 <= claims.status_index < 2**32:
        raise InvalidInput("card_claims_invalid", "The handle must be canonical and the status index 0 … 2³²−1.")
    if claims.expires_at <= claims.issued_at:
        raise InvalidInput("card_claims_invalid", "A card must expire after it is issued.")
    payload = cbor2.dumps(
        {
            CLAIM_SUB: claims.handle,
            CLAIM_EXP: int(claims.expires_at.timestamp()),
            CLAIM_IAT: int(claims.issued_at.timestamp()),
            CLAIM_STATUS_INDEX: claims.status_index,
            CLAIM_FORMAT: claims.format_version,
        }
    )
    raw = sign1(payload, key)
    text = QR_PREFIX + bytes(b45encode(raw)).decode("ascii")
    if len(raw) > MAX_TOKEN_BYTES or len(text) > MAX_TOKEN_CHARS:
        raise InvalidInput("token_too_large", f"The token is {len(raw)} bytes; a card QR holds {MAX_TOKEN_BYTES}.")
    return text


def token_bytes(text: str) -> bytes:
    """The COSE bytes inside a token's text; garbage → token_malformed."""
    body = text.strip()
    if not body.startswith(QR_PREFIX) or len(body) > 4 * MAX_TOKEN_CHARS:
        raise InvalidInput("token_malformed", "This is not a civicard card code.")
    try:
        raw = b45decode(body[len(QR_PREFIX) :])
    except ValueError:
        raise InvalidInput("token_malformed", "The card code is damaged or incomplete.") from None
    return raw


def b45decode(text: str) -> bytes:
    """Strict RFC 9285 decoding, vectorised: the base45 package's loop was 11 % of a terminal check."""
    values = text.encode("ascii").translate(_B45_VALUE)
    whole = len(values) - len(values) % 3
    if 255 in values or len(values) % 3 == 1:
        raise ValueError("not Base45")
    triples = np.frombuffer(values, dtype=np.uint8, count=whole).reshape(-1, 3) @ _B45_WEIGHTS
    tail = values[-2] + 45 * values[-1] if whole < len(values) else 0
    if (whole and int(triples.max()) > 0xFFFF) or tail > 0xFF:
        raise ValueError("Base45 value out of range")
    return triples.astype(">u2").tobytes() + (bytes([tail]) if whole < len(values) else b"")


def decode_token(text: str) -> ParsedToken:
    """Parse without verifying (what a terminal reads before choosing the key by kid)."""
    return parse_sign1(token_bytes(text), "token")


def verify_token(text: str, keyring: Keyring, now: datetime) -> CardClaims:
    """decode → kid in keyring → signature → claims → expiry. The status bit is the caller's next step."""
    message = decode_token(text)
    verify_sign1(message, keyring, "token")
    claims = _card_claims(message.payload)
    if claims.expires_at <= now:
        raise Forbidden("card_expired", "This card has expired.", expired_at=claims.expires_at.isoformat())
    return claims


def _card_claims(payload: bytes) -> CardClaims:
    try:
        raw = cbor2.loads(payload)
        if raw[CLAIM_FORMAT] != FORMAT_VERSION:
            raise InvalidInput("token_unsupported_version", "This card uses a newer format; update the terminal.")
        handle, exp, iat, index = raw[CLAIM_SUB], raw[CLAIM_EXP], raw[CLAIM_IAT], raw[CLAIM_STATUS_INDEX]
        ok = type(handle) is str and _HANDLE.fullmatch(handle) and all(type(v) is int for v in (exp, iat, index))
        if not ok or len(raw) != 5 or index < 0:
            raise ValueError("unexpected claims")
        issued_at, expires_at = datetime.fromtimestamp(iat, UTC), datetime.fromtimestamp(exp, UTC)
    except (*UNREADABLE, OSError) as exc:
        raise InvalidInput("token_malformed", "The card code's content cannot be read.") from exc
    return CardClaims(handle, index, issued_at, expires_at, FORMAT_VERSION)

"""Card checks at the terminal, status-list sizes and token sizes.

    python bench/card_bench.py [--quick] [--cards N] [--repeats R] [--json PATH]

Runs pinned to one core. Each rate is measured in the same run as its reference, in alternating
rounds (median of `--repeats`), so a busy machine slows both alike:
  * terminal check from the scanned text (decode → kid → Ed25519 → expiry → status bit against a
    list of `--cards` cards), against raw `cryptography` Ed25519 verifications of the same bytes;
  * the same from PNG images, decode included: the card rendered at 150 dpi, and a synthetic
    camera frame (640 × 480, card rotated 4°, blur, noise); reference: zxing-cpp alone on the
    already decoded image;
  * status-list size for 30 M cards (1 and 2 bits a card; 0.1 %, 1 %, 10 % revoked; the signed
    CWT), and a signed delta of 6,000 revocations;
  * token size over random cards (bytes, Base45 characters, QR version at level Q).
Prints markdown tables; --json writes the figures for bench/run_all.py (bench/figures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cbor2
import numpy as np
import pypdfium2 as pdfium
import segno
import zxingcpp
from figures import Figures
from PIL import Image, ImageFilter

from civicard.identity.card_print import CardFace, render_card
from civicard.identity.credentials import (
    CardClaims,
    IssuerKey,
    Keyring,
    decode_token,
    issue_token,
    new_handle,
    parse_sign1,
    token_bytes,
)
from civicard.identity.status_list import (
    INVALID,
    SUSPENDED,
    StatusList,
    diff,
    new_token,
    sign_delta,
    sign_status_list,
)
from civicard.identity.terminal_check import OfflineVerifier, read_qr
from civicard.shared.keys import RootKey

KEY = IssuerKey.derive(RootKey(hashlib.sha256(b"card bench").digest()), 1)
RING = Keyring.of([KEY])
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
URI = "https://civicard.example/status/1"
FULL_CARDS = 30_000_000
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


def rate(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def paired(first: Callable[[], float], second: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median rates of two measurements taken in alternating rounds."""
    a, b = [], []
    for _ in range(repeats):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def make_tokens(count: int, cards: int, rng: random.Random) -> list[str]:
    return [
        issue_token(CardClaims(new_handle(), rng.randrange(cards), NOW, NOW + timedelta(days=1_800)), KEY)
        for _ in range(count)
    ]


def make_status(cards: int, revoked: float, rng: random.Random, bits: int = 2) -> StatusList:
    status = StatusList.empty(cards, bits)
    for index in rng.sample(range(cards), int(cards * revoked)):
        status.set(index, INVALID)
    return status


def bench_text(cards: int, checks: int, repeats: int, rng: random.Random, figures: Figures) -> list[str]:
    tokens = make_tokens(1_000, cards, rng)
    held = new_token(make_status(cards, 0.01, rng), URI, 1, NOW)
    terminal = OfflineVerifier(RING, held)
    messages = [decode_token(t) for t in tokens]
    signed = [(m.signature, cbor2.dumps(["Signature1", m.protected, b"", m.payload])) for m in messages]
    public = RING.get(b"\x01")
    assert public is not None
    work = [tokens[i % len(tokens)] for i in range(checks)]
    raw = [signed[i % len(signed)] for i in range(checks)]

    def check_all() -> None:
        for text in work:
            terminal.check(text, NOW)

    def verify_all() -> None:
        for signature, data in raw:
            public.verify(signature, data)

    def decode_all() -> None:
        for text in work:
            decode_token(text)

    results = Counter(terminal.check(t, NOW).code for t in tokens)
    checks_per_s, raw_per_s = paired(lambda: rate(check_all, checks), lambda: rate(verify_all, checks), repeats)
    decode_per_s = rate(decode_all, checks)
    figures.add("terminal check from scanned text", checks_per_s, "/s", "raw Ed25519 verify", raw_per_s)
    figures.add("decode only (Base45 → COSE, no signature)", decode_per_s, "/s")
    return [
        f"### Terminal check from the scanned text ({checks:,} checks × {repeats}, {len(tokens):,} distinct cards, "
        f"list of {cards:,} cards at 1 % revoked; outcomes of the distinct cards: {dict(results)})",
        "",
        "| measurement | per second | µs each | vs raw Ed25519 |",
        "|---|---:|---:|---:|",
        f"| full check (text → signature → expiry → status bit) | {checks_per_s:,.0f} | {1e6 / checks_per_s:.1f} "
        f"| {checks_per_s / raw_per_s:.2f} |",
        f"| reference: raw Ed25519 verify (cryptography) | {raw_per_s:,.0f} | {1e6 / raw_per_s:.1f} | 1.00 |",
        f"| decode only (Base45 → COSE structure, no signature) | {decode_per_s:,.0f} | {1e6 / decode_per_s:.1f} | |",
        "",
        f"Target ≥ 5,000/s: {'met' if checks_per_s >= 5_000 else 'NOT met'}.",
        "",
    ]


def camera_frame(card: Image.Image, rng: np.random.Generator) -> Image.Image:
    frame = Image.new("L", (640, 480), 90)
    tilted = card.rotate(4, expand=True, fillcolor=90)
    frame.paste(tilted, ((640 - tilted.width) // 2, (480 - tilted.height) // 2))
    noisy = np.asarray(frame, dtype=np.int16) + rng.normal(0, 8, (480, 640)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bench_images(cards: int, rounds: int, repeats: int, rng: random.Random, figures: Figures) -> list[str]:
    tokens = make_tokens(20, cards, rng)
    renders = [
        pdfium.PdfDocument(render_card(CardFace("Ana Pérez", new_handle(), t)))[0]
        .render(scale=150 / 72, grayscale=True)
        .to_pil()
        for t in tokens
    ]
    noise = np.random.default_rng(7)
    kinds = {
        "card PNG, 150 dpi (506 × 319)": renders,
        "camera frame PNG, 640 × 480, rotated, noisy": [camera_frame(r, noise) for r in renders],
    }
    terminal = OfflineVerifier(RING, new_token(make_status(cards, 0.01, rng), URI, 1, NOW))
    lines = [
        f"### Terminal check from a PNG image ({len(tokens)} cards × {rounds} rounds × {repeats})",
        "",
        "| image | PNG bytes | checks/s (PNG decode + zxing + check) | ms each | reference: zxing alone/s "
        "| ratio | PNG decode alone, ms | all decoded |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, images in kinds.items():
        lines.append(image_row(kind, images, tokens, terminal, rounds, repeats, figures))
    return [
        *lines,
        "",
        "Target ≥ 400/s from a PNG photo. A terminal's camera hands zxing raw frames (no PNG): "
        "the 'zxing alone' column is that path.",
        "",
    ]


def image_row(
    kind: str,
    images: list[Image.Image],
    tokens: list[str],
    terminal: OfflineVerifier,
    rounds: int,
    repeats: int,
    figures: Figures,
) -> str:
    pngs = [png_bytes(i) for i in images]
    decoded = [Image.open(io.BytesIO(p)).convert("L") for p in pngs]
    ok = all(read_qr(p) == t and terminal.check_image(p, NOW).claims for p, t in zip(pngs, tokens, strict=True))
    count = rounds * len(pngs)

    def check_all() -> None:
        for _ in range(rounds):
            for png in pngs:
                terminal.check_image(png, NOW)

    def zxing_all() -> None:
        for _ in range(rounds):
            for image in decoded:
                zxingcpp.read_barcode(image, formats=QR_ONLY)

    def png_decode_all() -> None:
        for _ in range(rounds):
            for png in pngs:
                Image.open(io.BytesIO(png)).load()

    full, alone = paired(lambda: rate(check_all, count), lambda: rate(zxing_all, count), repeats)
    png_only = rate(png_decode_all, count)
    size = statistics.median(len(p) for p in pngs)
    figures.add(f"check from a {kind}", full, "/s", "zxing alone", alone)
    return (
        f"| {kind} | {size:,.0f} | {full:,.0f} | {1e3 / full:.2f} | {alone:,.0f} | {full / alone:.2f} "
        f"| {1e3 / png_only:.2f} | {'yes' if ok else 'NO'} |"
    )


def bench_status_lists(cards: int, rng: random.Random, figures: Figures) -> list[str]:
    lines = [
        f"### Status list for {cards:,} cards (zlib level 9)",
        "",
        "| revoked | bits | lst (zlib) kB | signed CWT kB | compress s |",
        "|---:|---:|---:|---:|---:|",
    ]
    kilobytes: dict[tuple[float, int], float] = {}
    for revoked in (0.001, 0.01, 0.1):
        picks = np.array(rng.sample(range(cards), int(cards * revoked)), dtype=np.int64)
        for bits in (1, 2):
            status = StatusList.empty(cards, bits)
            per_byte = 8 // bits
            data = np.zeros(len(status.data), dtype=np.uint8)  # numpy only to place 3 M bits quickly
            np.bitwise_or.at(data, picks // per_byte, (INVALID << ((picks % per_byte) * bits)).astype(np.uint8))
            status.data[:] = data.tobytes()
            started = time.perf_counter()
            signed = sign_status_list(new_token(status, URI, 1, NOW), KEY)
            seconds = time.perf_counter() - started
            lst = len(cbor2.loads(parse_sign1(signed, "status_list").payload)[65533]["lst"])
            lines.append(f"| {revoked:.1%} | {bits} | {lst / 1000:,.0f} | {len(signed) / 1000:,.0f} | {seconds:.2f} |")
            kilobytes[revoked, bits] = lst / 1000
    figures.add(
        f"status list of {cards:,} cards, 2 bits a card, 1 % revoked",
        kilobytes[0.01, 2],
        "kB",
        "1 bit a card",
        kilobytes[0.01, 1],
        better="lower",
    )
    mixed = make_status(cards, 0.01, rng)
    for index in rng.sample(range(cards), cards // 1_000):
        mixed.set(index, SUSPENDED)  # may overwrite a few revoked cards; sizes barely move
    mixed_lst = len(mixed.to_claim()["lst"])
    lines.append(f"| 1.0% + 0.1% suspended | 2 | {mixed_lst / 1000:,.0f} | | |")
    base = new_token(make_status(cards, 0.01, rng), URI, 1, NOW)
    after = base.status.copy()
    for index in rng.sample(range(cards), 6_000):
        after.set(index, INVALID)
    delta = sign_delta(diff(base, new_token(after, URI, 2, NOW)), KEY, NOW)
    figures.add("signed delta for 6,000 revocations", len(delta) / 1000, "kB", better="lower")
    lines += [
        "",
        f"Signed delta for 6,000 new revocations: {len(delta) / 1000:.1f} kB. Target: 2-bit list at 1 % "
        "revoked ≤ 500 kB at 30 M cards.",
        "",
    ]
    return lines


def bench_token_sizes(count: int, rng: random.Random) -> list[str]:
    sizes: Counter[int] = Counter()
    chars: Counter[int] = Counter()
    versions: Counter[object] = Counter()
    for _ in range(count):
        issued = NOW + timedelta(seconds=rng.randrange(0, 20 * 365 * 86_400))
        index = rng.choice([rng.randrange(24), rng.randrange(65_536), rng.randrange(FULL_CARDS), rng.randrange(2**32)])
        text = issue_token(CardClaims(new_handle(), index, issued, issued + timedelta(days=1_800)), KEY)
        sizes[len(token_bytes(text))] += 1
        chars[len(text)] += 1
        versions[segno.make_qr(text, error="q", mode="alphanumeric", mask=0, boost_error=False).version] += 1
    return [
        f"### Token sizes over {count:,} random cards (status index 0 … 2³²−1)",
        "",
        f"- bytes (COSE_Sign1): {dict(sorted(sizes.items()))} (budget 126)",
        f"- QR text characters incl. 'CC1:': {dict(sorted(chars.items()))} (budget 189)",
        f"- QR version at level Q: {dict(sorted(versions.items()))} (budget ≤ 9)",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small list and short runs (seconds)")
    parser.add_argument("--cards", type=int, default=None, help="status-list size for the checks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args()
    cards = args.cards or (1_000_000 if args.quick else FULL_CARDS)
    repeats = args.repeats or (3 if args.quick else 5)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = random.Random(20261115)
    print(
        f"# Card bench — {platform.python_version()}, {os.cpu_count()} cores (pinned to one), "
        f"load average at start {os.getloadavg()[0]:.2f}\n"
    )
    figures = Figures("card", facts={"cards in the terminal's list": cards, "repeats": repeats})
    for block in (
        bench_text(cards, 5_000 if args.quick else 20_000, repeats, rng, figures),
        bench_images(cards, 5 if args.quick else 25, repeats, rng, figures),
        bench_token_sizes(200 if args.quick else 2_000, rng),
        bench_status_lists(3_000_000 if args.quick else FULL_CARDS, rng, figures),
    ):
        print("\n".join(block), flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    figures.write(args.json)


if __name__ == "__main__":
    main()

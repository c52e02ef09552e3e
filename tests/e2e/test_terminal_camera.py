"""Camera QR scanning on the vendor terminal page, with Chromium's own fake camera (no JS mock).

Each test launches Debian Chromium with `--use-file-for-fake-video-capture`, so getUserMedia
returns a real MediaStream that films a YUV4MPEG2 file made here from a QR: the seeded card's
(drawn by `card_print.card_qr`, as on the printed card), or some other QR. The phone is 360 px wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import segno

import tests.e2e.test_terminal_page as terminal_page
from civicard.identity.card_print import card_qr
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer, _require_chromium
from tests.integration.distribution_fixtures import PIN, HeldCard, Till

pytestmark = pytest.mark.e2e
shop = terminal_page.shop  # this module's server gets the same grant, shop terminal and card
FILM_WIDTH, FILM_HEIGHT = 640, 480
QUIET_ZONE = 4  # modules of white around the symbol, as the QR standard asks
FILM_FRAMES = 3
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
# The policy the page must live under: no inline or eval'd script or style, camera frames from the browser only.
STRICT_CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; worker-src 'self' blob:; "
    "style-src 'self'"
)


def y4m_of(qr: segno.QRCode) -> bytes:
    """A few identical 4:2:0 frames of `qr` centred on white: black Y 16, white Y 235, chroma 128."""
    side = min(FILM_WIDTH, FILM_HEIGHT) * 9 // 10
    scale = side // (qr.symbol_size(scale=1, border=QUIET_ZONE)[0])
    symbol = np.array(list(qr.matrix_iter(scale=scale, border=QUIET_ZONE)), dtype=bool)
    luma = np.full((FILM_HEIGHT, FILM_WIDTH), 235, dtype=np.uint8)
    top, left = (FILM_HEIGHT - symbol.shape[0]) // 2, (FILM_WIDTH - symbol.shape[1]) // 2
    luma[top : top + symbol.shape[0], left : left + symbol.shape[1]] = np.where(symbol, 16, 235)
    chroma = bytes([128]) * (2 * (FILM_WIDTH // 2) * (FILM_HEIGHT // 2))
    header = f"YUV4MPEG2 W{FILM_WIDTH} H{FILM_HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode()
    return header + (b"FRAME\n" + luma.tobytes() + chroma) * FILM_FRAMES


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@contextmanager
def phone(playwright: Any, camera_args: list[str], *, grant_camera: bool = True) -> Iterator[Any]:
    """A 360 px page in a Chromium of its own, whose camera is whatever `camera_args` make it."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *camera_args]
    )
    try:
        context = browser.new_context(
            locale="es-ES", viewport={"width": 360, "height": 740}, permissions=["camera"] if grant_camera else []
        )
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
    finally:
        browser.close()


def filming(video: Path, qr: segno.QRCode) -> list[str]:
    video.write_bytes(y4m_of(qr))
    return [*FAKE_CAMERA, f"--use-file-for-fake-video-capture={video}"]


def open_terminal(page: Any, base_url: str, till: Till) -> None:
    """The terminal page served under STRICT_CSP (added here whatever the server sends), key imported."""

    def with_strict_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    page.route(f"{base_url}/terminal", with_strict_csp)
    page.goto(f"{base_url}/terminal")
    page.fill("#terminal-id", till.terminal_id)
    page.fill("#device-key", terminal_page.key_text(till))
    page.locator("[data-action=save-key]").click()
    page.locator("#setup-status[data-ready=true]").wait_for()


def test_the_camera_reads_the_card_qr_and_the_sale_goes_on_as_if_typed(
    live_server: LiveServer, shop: tuple[Till, HeldCard], playwright: Any, tmp_path: Path, screenshots: Path
) -> None:
    till, card = shop
    with phone(playwright, filming(tmp_path / "card.y4m", card_qr(card.token))) as page:
        open_terminal(page, live_server.base_url, till)
        scan = page.locator("[data-action=scan-start]")
        assert scan.is_visible() and scan.inner_text() == "Escanear con la cámara"
        scan.focus()
        page.keyboard.press("Enter")
        rice = page.locator("#basket .line[data-item='RICE-1KG']")
        rice.wait_for()
        assert page.input_value("#card-code") == card.token
        assert f"{terminal_page.GRANTED}" in rice.inner_text()
        # The camera is released once the card is read, and the PIN is next under the keyboard.
        assert page.locator("#camera-view").is_hidden()
        assert page.evaluate("document.querySelector('#camera-video').srcObject") is None
        assert page.evaluate("document.activeElement.id") == "pin"
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=str(screenshots / "terminal-camera-card-read.png"), full_page=True)

        page.keyboard.type(PIN)  # straight onto the focused PIN field
        assert page.input_value("#pin") == PIN
        rice.locator("[data-action=more]").click()
        page.locator("[data-action=sell]").click()
        receipt = page.locator("#receipt-step [data-field=receipt][data-code=redeemed]")
        receipt.wait_for()
        assert receipt.locator("tr[data-item='RICE-1KG'] [data-field=granted]").inner_text().startswith("1 ")


def test_a_qr_that_is_not_a_card_is_reported_and_the_camera_keeps_looking(
    live_server: LiveServer, shop: tuple[Till, HeldCard], playwright: Any, tmp_path: Path, screenshots: Path
) -> None:
    till, _ = shop
    menu = segno.make_qr("https://example.org/menu", error="q")
    with phone(playwright, filming(tmp_path / "menu.y4m", menu)) as page:
        open_terminal(page, live_server.base_url, till)
        page.locator("[data-action=scan-start]").click()
        page.locator("#message[data-code=qr_not_a_card]").wait_for()
        assert page.locator("#camera-view[data-scanning=true] video").is_visible()
        assert page.input_value("#card-code") == ""
        assert page.evaluate("document.querySelector('#camera-video').videoWidth") == 640
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=str(screenshots / "terminal-camera-not-a-card.png"), full_page=True)

        page.keyboard.press("Escape")  # focus is on the stop button while the camera is on
        assert page.locator("#camera-view").is_hidden()
        assert page.evaluate("document.querySelector('#camera-video').srcObject") is None
        assert page.evaluate("document.activeElement.dataset.action") == "scan-start"


@pytest.mark.parametrize(
    ("camera_args", "grant_camera", "code"),
    [
        pytest.param(["--use-fake-device-for-media-stream"], False, "camera_denied", id="permission-denied"),
        pytest.param(["--use-fake-device-for-media-stream=device-count=0"], True, "camera_missing", id="no-camera"),
    ],
)
def test_a_camera_that_cannot_open_says_why_and_leaves_typing_possible(
    live_server: LiveServer,
    shop: tuple[Till, HeldCard],
    playwright: Any,
    camera_args: list[str],
    grant_camera: bool,
    code: str,
) -> None:
    till, _ = shop
    with phone(playwright, camera_args, grant_camera=grant_camera) as page:
        open_terminal(page, live_server.base_url, till)
        page.locator("[data-action=scan-start]").click()
        page.locator(f"#message[data-code={code}]").wait_for()
        assert page.locator("#camera-view").is_hidden()
        assert page.locator("[data-action=scan-start]").is_visible()
        assert page.locator("#card-code").is_editable()

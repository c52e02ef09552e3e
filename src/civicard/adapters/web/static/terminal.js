// civicard vendor terminal: the device key stays in this browser — imported once as a
// non-extractable WebCrypto key kept in IndexedDB (no script can read its bytes back) — and every request
// is signed here with WebCrypto Ed25519 over the canonical request of identity/terminal_auth.py:
//   civicard-terminal-request-v1\nMETHOD\ntarget\nsha256(body) hex\ntimestamp\nnonce\nterminal id
// Camera scanning decodes video frames with the vendored npm package jsqr 1.4.0 (Apache-2.0;
// static/vendor/jsqr-1.4.0.js is its dist/jsQR.js unchanged, licence in vendor/jsqr-LICENSE.txt):
// plain JavaScript, no worker, no WebAssembly, no eval, so it runs under a CSP of script-src 'self'.
// It is loaded on the first press of the scan button only, so shops that type codes never fetch it.
"use strict";
(function () {
  const SCHEME = "civicard-terminal-request-v1";
  const PKCS8_ED25519_PREFIX = hexToBytes("302e020100300506032b657004220420");
  const CHECK = "/v1/terminal/card-check";
  const REDEEM = "/v1/redemptions";
  const QR_PREFIX = "CC1:";  // identity/credentials.py QR_PREFIX
  const DECODER_SRC = "/static/vendor/jsqr-1.4.0.js";
  // The rear camera when there is one (`ideal`, so a laptop's only camera still opens).
  const CAMERA = { audio: false, video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } } };
  const SCAN_INTERVAL_MS = 150;  // decoding runs on the main thread: a few frames a second is enough
  const SCAN_MAX_SIDE = 800;  // frames are scaled down to this before decoding; a card QR is version ≤ 9
  const enc = new TextEncoder();

  // The page's texts in its language (<html lang>, which the server sets from the reader's choice),
  // Spanish when the language is not one of these. One clear message per refusal code.
  const TEXTS = {
    es: {
      pin_wrong: (p) => `PIN incorrecto: quedan ${p.tries_left} intentos.`,
      pin_tries_exhausted: () => "Tres PIN incorrectos: empiece la compra de nuevo.",
      pin_locked: () => "PIN bloqueado: el titular debe ir a un registrador.",
      pin_not_set: () => "La tarjeta no tiene PIN: el titular debe ir a un registrador.",
      not_entitled: () => "El hogar no tiene derecho a estos artículos este periodo.",
      insufficient_remaining: () => "No queda suficiente cantidad este periodo.",
      item_not_allowed_here: () => "Este artículo no se puede entregar en este comercio.",
      unknown_item: () => "Artículo desconocido.",
      period_closed: () => "El periodo de beneficios está cerrado.",
      card_revoked: () => "Tarjeta revocada: no la acepte.",
      card_suspended: () => "Tarjeta suspendida.",
      card_expired: () => "Tarjeta vencida.",
      card_invalid: () => "Código de tarjeta no válido.",
      terminal_revoked: () => "Este terminal fue dado de baja.",
      terminal_bad_signature: () => "La clave del terminal no coincide: vuelva a importarla.",
      terminal_stale_request: () => "La hora del teléfono no es correcta.",
      too_many_attempts: (p) => `Demasiados intentos: espere ${p.retry_after_seconds || "unos"} segundos.`,
      request_in_progress: () => "La venta aún está en curso: pulse Vender de nuevo.",
      network: () => "Sin conexión: pulse Vender para reintentar (no se cobrará dos veces).",
      camera_denied: () => "Sin permiso para usar la cámara: permítalo en el navegador o escriba el código.",
      camera_missing: () => "No se encontró ninguna cámara: escriba el código.",
      camera_busy: () => "La cámara está en uso por otra aplicación.",
      camera_failed: () => "No se pudo abrir la cámara: escriba el código.",
      scanner_unavailable: () => "No se pudo cargar el lector de QR: escriba el código.",
      qr_not_a_card: () => "Este QR no es una tarjeta civicard: apunte al QR de la tarjeta.",
      key_invalid: () => "Clave no válida (32 bytes en base64).",
      pin_format: () => "El PIN tiene de 4 a 6 dígitos.",
      empty_basket: () => "Añada al menos un artículo.",
      no_key: () => "Sin clave",
      ready: (p) => `Terminal ${p.id} listo`,
      no_webcrypto: () => "Este navegador no permite firmar (WebCrypto).",
      camera_opening: () => "Abriendo la cámara…",
      camera_aim: () => "Apunte al código QR de la tarjeta",
      card_valid: (p) => `Tarjeta válida · periodo ${p.period}`,
      item_left: (p) => `quedan: ${p.remaining}`,
      fewer: (p) => `Menos ${p.item}`,
      more: (p) => `Más ${p.item}`,
      nothing_here: () => "Nada disponible aquí",
      receipt_head: () => ["Artículo", "Entregado", "Quedan", "Importe"],
      total: () => "Total:",
      transaction: (p) => `Transacción ${p.id} · ${p.period} · titular ${p.holder}`,
    },
    en: {
      pin_wrong: (p) => `Wrong PIN: ${p.tries_left} tries left.`,
      pin_tries_exhausted: () => "Three wrong PINs: start the purchase again.",
      pin_locked: () => "PIN locked: the holder must see a registrar.",
      pin_not_set: () => "The card has no PIN yet: the holder must see a registrar.",
      not_entitled: () => "The household is not entitled to these items this period.",
      insufficient_remaining: () => "Not enough left this period.",
      item_not_allowed_here: () => "This item cannot be handed over at this outlet.",
      unknown_item: () => "Unknown item.",
      period_closed: () => "The benefit period is closed.",
      card_revoked: () => "Card revoked: do not accept it.",
      card_suspended: () => "Card suspended.",
      card_expired: () => "Card expired.",
      card_invalid: () => "Invalid card code.",
      terminal_revoked: () => "This terminal has been revoked.",
      terminal_bad_signature: () => "The terminal key does not match: import it again.",
      terminal_stale_request: () => "The phone's clock is wrong.",
      too_many_attempts: (p) => `Too many attempts: wait ${p.retry_after_seconds || "a few"} seconds.`,
      request_in_progress: () => "The sale is still running: press Sell again.",
      network: () => "No connection: press Sell to retry (it will not be charged twice).",
      camera_denied: () => "Camera permission denied: allow it in the browser or type the code.",
      camera_missing: () => "No camera found: type the code.",
      camera_busy: () => "The camera is in use by another app.",
      camera_failed: () => "The camera could not be opened: type the code.",
      scanner_unavailable: () => "The QR reader could not be loaded: type the code.",
      qr_not_a_card: () => "This QR is not a civicard card: point at the card's QR.",
      key_invalid: () => "Invalid key (32 bytes, base64).",
      pin_format: () => "The PIN has 4 to 6 digits.",
      empty_basket: () => "Add at least one item.",
      no_key: () => "No key",
      ready: (p) => `Terminal ${p.id} ready`,
      no_webcrypto: () => "This browser cannot sign (WebCrypto).",
      camera_opening: () => "Opening the camera…",
      camera_aim: () => "Point at the card's QR code",
      card_valid: (p) => `Card valid · period ${p.period}`,
      item_left: (p) => `left: ${p.remaining}`,
      fewer: (p) => `Fewer ${p.item}`,
      more: (p) => `More ${p.item}`,
      nothing_here: () => "Nothing available here",
      receipt_head: () => ["Item", "Given", "Left", "Amount"],
      total: () => "Total:",
      transaction: (p) => `Transaction ${p.id} · ${p.period} · holder ${p.holder}`,
    },
  };
  const LANG = (document.documentElement.lang || "es").toLowerCase().split("-")[0];
  const T = TEXTS[LANG] || TEXTS.es;
  const t = (key, p) => T[key](p || {});

  const $ = (sel) => document.querySelector(sel);
  const state = { key: null, terminalId: "", token: "", items: [], basket: {}, pending: null };
  // `session` is the camera being opened or shown; a stale one is released when its awaits return.
  const camera = { session: null, decoder: null };

  function hexToBytes(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }
  function bytesToHex(buf) {
    return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function base64ToBytes(text) {
    let s = text.trim().replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/");
    s += "=".repeat((4 - (s.length % 4)) % 4);
    const bin = atob(s);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function base64url(buf) {
    let bin = "";
    new Uint8Array(buf).forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function randomToken(bytes) {
    return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
  }
  function money(minor) {
    return (minor / 100).toFixed(2);
  }

  async function importKey(b64) {
    const raw = base64ToBytes(b64);
    if (raw.length !== 32) throw new Error("key length");
    const pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_ED25519_PREFIX, 0);
    pkcs8.set(raw, 16);
    return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  }

  // Sign and send; `bodyText` is sent byte for byte as hashed.
  async function signedPost(target, bodyText, extraHeaders) {
    const body = enc.encode(bodyText);
    const digest = bytesToHex(await crypto.subtle.digest("SHA-256", body));
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = randomToken(24);
    const message = [SCHEME, "POST", target, digest, timestamp, nonce, state.terminalId].join("\n");
    const signature = await crypto.subtle.sign({ name: "Ed25519" }, state.key, enc.encode(message));
    const headers = Object.assign(
      {
        "Content-Type": "application/json",
        "X-Civicard-Terminal": state.terminalId,
        "X-Civicard-Timestamp": timestamp,
        "X-Civicard-Nonce": nonce,
        "X-Civicard-Signature": base64url(signature),
      },
      extraHeaders || {}
    );
    const response = await fetch(target, { method: "POST", headers, body, credentials: "omit", cache: "no-store" });
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = {}; }
    return { status: response.status, payload };
  }

  function show(id, visible) { $(id).hidden = !visible; }
  function say(code, payload) {
    const box = $("#message");
    if (!code) { box.hidden = true; box.textContent = ""; box.removeAttribute("data-code"); return; }
    const p = payload || {};
    const text = T[code] ? T[code](p) : `${p.detail || p.title || code}`;
    box.textContent = `${text} (${code})`;
    box.dataset.code = code;
    box.hidden = false;
  }

  // The CryptoKey itself is stored (structured clone): the raw key text is never kept.
  function keyStore(mode, action) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open("civicard-terminal", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("device");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const tx = open.result.transaction("device", mode);
        const request = action(tx.objectStore("device"));
        tx.oncomplete = () => { open.result.close(); resolve(request ? request.result : undefined); };
        tx.onerror = () => reject(tx.error);
      };
    });
  }

  async function loadStored() {
    let found = null;
    try { found = await keyStore("readonly", (store) => store.get("current")); } catch (e) { found = null; }
    if (!found || !found.id || !found.key) {
      $("#setup-status").textContent = t("no_key");
      show("#card-step", false);
      return;
    }
    state.key = found.key;
    state.terminalId = found.id;
    $("#terminal-id").value = found.id;
    $("#setup-status").textContent = t("ready", { id: found.id });
    $("#setup-status").dataset.ready = "true";
    show("#card-step", true);
  }

  async function saveKey(event) {
    event.preventDefault();
    const id = $("#terminal-id").value.trim();
    let key;
    try { key = await importKey($("#device-key").value.trim()); } catch (e) {
      say("key_invalid");
      return;
    }
    await keyStore("readwrite", (store) => store.put({ id: id, key: key }, "current"));
    $("#device-key").value = "";
    say(null);
    await loadStored();
  }

  async function forgetKey() {
    await keyStore("readwrite", (store) => store.delete("current"));
    state.key = null; state.terminalId = "";
    $("#setup-status").dataset.ready = "false";
    restart();
    await loadStored();
  }

  function loadDecoder() {
    if (window.jsQR) return Promise.resolve(window.jsQR);
    if (!camera.decoder) {
      camera.decoder = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = DECODER_SRC;
        script.onload = () => (window.jsQR ? resolve(window.jsQR) : reject(new Error("jsQR missing")));
        script.onerror = () => { camera.decoder = null; script.remove(); reject(new Error("jsQR not loaded")); };
        document.head.append(script);
      });
    }
    return camera.decoder;
  }

  function cameraRefusal(error) {
    const name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError") return "camera_denied";
    if (name === "NotFoundError" || name === "OverconstrainedError") return "camera_missing";
    if (name === "NotReadableError") return "camera_busy";
    return "camera_failed";
  }

  async function startCamera() {
    if (camera.session) return;
    const session = { stream: null, timer: 0, canvas: null, rejected: "" };
    camera.session = session;
    say(null);
    $("[data-action=scan-start]").hidden = true;
    $("#camera-view").hidden = false;
    $("[data-field=camera-hint]").textContent = t("camera_opening");
    $("[data-action=scan-stop]").focus();
    const decoder = loadDecoder().catch(() => null);  // fetched while the permission prompt is open
    try {
      session.stream = await navigator.mediaDevices.getUserMedia(CAMERA);
    } catch (error) {
      if (camera.session === session) { stopCamera(); say(cameraRefusal(error)); }
      return;
    }
    const jsQR = await decoder;
    if (camera.session !== session) { release(session); return; }
    if (!jsQR) { stopCamera(); say("scanner_unavailable"); return; }
    const video = $("#camera-video");
    video.srcObject = session.stream;
    try { await video.play(); } catch (error) {
      if (camera.session === session) { stopCamera(); say("camera_failed"); }
      return;
    }
    if (camera.session !== session) return;
    $("[data-field=camera-hint]").textContent = t("camera_aim");
    $("#camera-view").dataset.scanning = "true";
    scanFrame(session, jsQR);
  }

  function release(session) {
    clearTimeout(session.timer);
    if (session.stream) session.stream.getTracks().forEach((track) => track.stop());
  }

  function stopCamera() {
    const session = camera.session;
    camera.session = null;
    if (session) release(session);
    const view = $("#camera-view");
    const hadFocus = view.contains(document.activeElement);
    $("#camera-video").srcObject = null;
    view.hidden = true;
    delete view.dataset.scanning;
    const start = $("[data-action=scan-start]");
    start.hidden = false;
    if (hadFocus) start.focus();
  }

  function scanFrame(session, jsQR) {
    if (camera.session !== session) return;
    const video = $("#camera-video");
    let text = null;
    try { text = video.videoWidth ? decodeFrame(video, session, jsQR) : null; } catch (error) {
      stopCamera(); say("camera_failed"); return;  // never leave the camera on with nothing reading it
    }
    if (text !== null && acceptScan(session, text)) return;
    session.timer = setTimeout(scanFrame, SCAN_INTERVAL_MS, session, jsQR);
  }

  function decodeFrame(video, session, jsQR) {
    const scale = Math.min(1, SCAN_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    if (!session.canvas) session.canvas = document.createElement("canvas");
    const canvas = session.canvas;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0, width, height);
    // Cards are printed dark on light: skipping the inverted pass halves the work per frame.
    const found = jsQR(context.getImageData(0, 0, width, height).data, width, height, { inversionAttempts: "dontInvert" });
    return found ? found.data : null;
  }

  // The first civicard code ends the scan and goes through the typed-code flow; any other QR is
  // reported once and scanning goes on, so the shopkeeper can aim at the card's code instead.
  function acceptScan(session, text) {
    const code = text.trim();
    if (!code.startsWith(QR_PREFIX)) {
      if (code !== session.rejected) { session.rejected = code; say("qr_not_a_card"); }
      return false;
    }
    $("#card-code").value = code;
    $("#card-code").focus();
    checkCard();
    return true;
  }

  function restart() {
    stopCamera();
    state.token = ""; state.items = []; state.basket = {}; state.pending = null;
    $("#card-code").value = ""; $("#pin").value = "";
    say(null);
    ["#pin-step", "#basket-step", "#receipt-step"].forEach((s) => show(s, false));
    show("#card-step", Boolean(state.key));
  }

  function submitCard(event) {
    event.preventDefault();
    checkCard();
  }

  // The one card-check flow, for a typed code and a scanned one alike.
  async function checkCard() {
    stopCamera();
    say(null);
    state.token = $("#card-code").value.trim();
    state.pending = null;
    let answer;
    try { answer = await signedPost(CHECK, JSON.stringify({ card_token: state.token })); } catch (e) { say("network"); return; }
    const p = answer.payload;
    if (answer.status !== 200) { say(p.code || `http_${answer.status}`, p); return; }
    if (!p.card_valid || p.code !== "card_valid") { say(p.code, p); return; }
    if (p.pin_locked) { say("pin_locked", p); return; }
    state.items = p.items.filter((i) => i.remaining > 0);
    state.basket = {};
    $("[data-field=card-status]").textContent = t("card_valid", p);
    renderBasket();
    show("#pin-step", true); show("#basket-step", true); show("#receipt-step", false);
    $("#pin").value = "";
    $("#pin").focus();
  }

  function renderBasket() {
    const box = $("#basket");
    box.textContent = "";
    let total = 0;
    state.items.forEach((item) => {
      const qty = state.basket[item.item] || 0;
      if (item.unit_price_minor !== null) total += qty * item.unit_price_minor;
      const row = document.createElement("div");
      row.className = "line";
      row.dataset.item = item.item;
      row.dataset.remaining = String(item.remaining);
      const name = document.createElement("span");
      name.className = "name";
      const price = item.unit_price_minor === null ? "" : ` · ${money(item.unit_price_minor)}`;
      name.textContent = `${item.item} (${item.unit})${price} — ${t("item_left", item)}`;
      const minus = document.createElement("button");
      minus.type = "button"; minus.textContent = "−"; minus.dataset.action = "less";
      minus.setAttribute("aria-label", t("fewer", item));
      minus.disabled = qty === 0;
      minus.addEventListener("click", () => { state.basket[item.item] = Math.max(0, qty - 1); renderBasket(); });
      const out = document.createElement("output");
      out.textContent = String(qty); out.dataset.field = "quantity";
      const plus = document.createElement("button");
      plus.type = "button"; plus.textContent = "+"; plus.dataset.action = "more";
      plus.setAttribute("aria-label", t("more", item));
      plus.disabled = qty >= item.remaining;
      plus.addEventListener("click", () => { state.basket[item.item] = Math.min(item.remaining, qty + 1); renderBasket(); });
      row.append(name, minus, out, plus);
      box.append(row);
    });
    if (!state.items.length) box.textContent = t("nothing_here");
    $("[data-field=basket-total]").textContent = money(total);
  }

  async function sell() {
    say(null);
    const pin = $("#pin").value;
    if (!/^[0-9]{4,6}$/.test(pin)) { say("pin_format"); return; }
    const basket = Object.entries(state.basket).filter(([, q]) => q > 0).map(([item, quantity]) => ({ item, quantity }));
    if (!basket.length) { say("empty_basket"); return; }
    const bodyText = JSON.stringify({ card_token: state.token, pin, basket });
    // The same attempt retried after a network failure keeps its key; anything else is a new attempt.
    if (!state.pending || state.pending.bodyText !== bodyText) state.pending = { key: randomToken(18), bodyText };
    const pending = state.pending;
    let answer;
    try {
      answer = await signedPost(REDEEM, pending.bodyText, { "Idempotency-Key": pending.key });
    } catch (e) { say("network"); return; }
    const p = answer.payload;
    if (answer.status === 201) { state.pending = null; showReceipt(p); return; }
    if (answer.status === 422) state.pending = null;  // a final refusal: a new attempt gets a new key
    if (p.code === "pin_wrong" || p.code === "pin_tries_exhausted") { $("#pin").value = ""; state.pending = null; }
    say(p.code || `http_${answer.status}`, p);
  }

  function showReceipt(r) {
    const box = $("[data-field=receipt]");
    box.textContent = "";
    const table = document.createElement("table");
    const head = table.insertRow();
    t("receipt_head").forEach((h) => {
      const th = document.createElement("th"); th.textContent = h; head.append(th);
    });
    r.items.forEach((line) => {
      const tr = table.insertRow();
      tr.dataset.item = line.item;
      [[line.item, "item"], [`${line.granted} ${line.unit}`, "granted"], [String(line.remaining), "remaining"],
        [money(line.amount_minor), "amount"]].forEach(([text, field]) => {
        const td = tr.insertCell(); td.textContent = text; td.dataset.field = field;
      });
    });
    const total = document.createElement("p");
    total.innerHTML = "";
    total.append(`${t("total")} `);
    const strong = document.createElement("strong");
    strong.dataset.field = "total"; strong.textContent = money(r.total_minor);
    total.append(strong);
    const meta = document.createElement("p");
    meta.className = "muted";
    meta.dataset.field = "transaction";
    meta.textContent = t("transaction", { id: r.transaction_id, period: r.period, holder: r.holder });
    box.append(table, total, meta);
    box.dataset.code = r.code;
    ["#card-step", "#pin-step", "#basket-step"].forEach((s) => show(s, false));
    show("#receipt-step", true);
  }

  function pad(event) {
    const button = event.target.closest("button");
    if (!button) return;
    const pin = $("#pin");
    if (button.dataset.digit && pin.value.length < 6) pin.value += button.dataset.digit;
    if (button.dataset.action === "pin-clear") pin.value = "";
    if (button.dataset.action === "pin-back") pin.value = pin.value.slice(0, -1);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#setup-form").addEventListener("submit", saveKey);
    $("[data-action=forget-key]").addEventListener("click", forgetKey);
    $("#card-form").addEventListener("submit", submitCard);
    $("[data-action=scan-start]").addEventListener("click", startCamera);
    $("[data-action=scan-stop]").addEventListener("click", stopCamera);
    $("#camera-view").addEventListener("keydown", (event) => { if (event.key === "Escape") stopCamera(); });
    // The camera never stays on behind the shopkeeper's back: leaving or hiding the page stops it.
    window.addEventListener("pagehide", stopCamera);
    document.addEventListener("visibilitychange", () => { if (document.hidden) stopCamera(); });
    $("#camera").hidden = !(navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === "function");
    $(".pad").addEventListener("click", pad);
    $("[data-action=sell]").addEventListener("click", sell);
    document.querySelectorAll("[data-action=restart]").forEach((b) => b.addEventListener("click", restart));
    if (!window.crypto || !crypto.subtle) {
      $("#setup-status").textContent = t("no_webcrypto");
      return;
    }
    loadStored();
  });
})();

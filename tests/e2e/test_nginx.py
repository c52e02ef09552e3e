"""deploy/ run for real: Debian's nginx with deploy/nginx.conf terminates TLS in front of civicard's
uvicorn workers, started as deploy/civicard.service starts them, in production mode.

The unit's ExecStartPre (`civicard db upgrade`) and ExecStart (the ASGI factory, two workers, proxy
headers trusted from 127.0.0.1) run as written, with the venv path, the port and the environment
files' values substituted; the site file runs as written inside a minimal nginx.conf, with loopback
ports, paths under tmp and a self-signed certificate for 127.0.0.1 substituted. Each substitution
must find its text, so a changed deploy file fails here instead of going untested.

What passing proves, on SQLite and on PostgreSQL: a terminal's signed redemption goes through
nginx over TLS 1.2+ unchanged (201, and the sale is in the ledger); plain HTTP redirects to HTTPS;
the app takes https from nginx's X-Forwarded-Proto, so HSTS and Secure cookies appear behind the
proxy and not on the app's plain port, each security header once; nginx refuses /metrics
and its access log holds no path, query or client address; every worker reports the same
redemption count (PROMETHEUS_MULTIPROC_DIR as the unit sets it).

Without /usr/sbin/nginx (scripts/system-deps.sh installs it) the module skips loudly, except under
CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from civicard.adapters.api.security_headers import HSTS, PAGE_POLICY
from civicard.adapters.db import tables as t
from civicard.bootstrap import Container, bootstrap
from civicard.identity.cards import CardKeys
from civicard.settings import Mode, Settings, generate_root_key_text
from tests.conftest import IN_CI, fresh_postgres_schema
from tests.e2e.conftest import seed_town, signed_headers
from tests.integration.distribution_fixtures import PIN, HeldCard, Till, issue, seed_rice_grant, system_uow

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "civicard.service"
SITE = REPO / "deploy" / "nginx.conf"
NGINX = Path("/usr/sbin/nginx")
UNIT_BIN = "/opt/civicard/.venv/bin"
WORKERS = 2
STARTUP_SECONDS = 90.0  # two workers import civicard and warm the duplicate model on a busy CI machine
METRICS_TOKEN = "metrics-token-for-the-nginx-test"
REDEEM = "/v1/redemptions"


@dataclass
class Stack:
    """nginx on `http_port` and `https_port` in front of the service's workers on `app_port`."""

    http_port: int
    https_port: int
    app_port: int
    cert: Path
    access_log: Path
    container: Container  # the same database and root key, for seeding and reading the ledger
    till: Till
    card: HeldCard

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def app(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def client(self) -> httpx.Client:
        """An HTTPS client trusting only the test's certificate."""
        return httpx.Client(base_url=self.https, verify=ssl.create_default_context(cafile=self.cert), timeout=30.0)

    def redeem(self, client: httpx.Client, key: str) -> httpx.Response:
        body = json.dumps(
            {"card_token": self.card.token, "pin": PIN, "basket": [{"item": "RICE-1KG", "quantity": 1}]}
        ).encode()
        headers = signed_headers(self.till.key, self.till.terminal_id, REDEEM, body)
        headers |= {"Content-Type": "application/json", "Idempotency-Key": key}
        return client.post(REDEEM, content=body, headers=headers)


def _require_nginx() -> None:
    if NGINX.exists():
        return
    reason = f"{NGINX} is missing (apt-get install -y nginx, or scripts/system-deps.sh); the deployment test cannot run"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(f"SKIPPING NGINX TESTS — {reason}")


def _free_port() -> int:
    # nginx and uvicorn bind by themselves, so the port is only reserved until this returns.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def substituted(text: str, replacements: dict[str, str], source: Path) -> str:
    for old, new in replacements.items():
        assert old in text, f"{source.relative_to(REPO)} no longer holds {old!r}; update tests/e2e/test_nginx.py"
        text = text.replace(old, new)
    return text


def unit_directives(text: str) -> dict[str, list[str]]:
    """Each directive's values in file order: continuation lines joined, comments and sections dropped."""
    found: dict[str, list[str]] = {}
    for raw in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            name, _, value = line.partition("=")
            found.setdefault(name, []).append(value)
    return found


def service_command(line: str, env: dict[str, str], port: int) -> list[str]:
    """An Exec line as systemd would run it here: this venv's bin, ${VAR} from env, the given port."""
    argv = [env[word[2:-1]] if re.fullmatch(r"\$\{\w+\}", word) else word for word in shlex.split(line)]
    program = Path(argv[0])
    assert str(program.parent) == UNIT_BIN, f"{UNIT.name} runs {program}, expected it under {UNIT_BIN}"
    argv[0] = str(Path(sys.executable).parent / program.name)
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    return argv


def service_environment(unit: dict[str, list[str]], data_dir: Path, database_url: str, root_key: str) -> dict[str, str]:
    """The unit's Environment= lines, then what /etc/civicard/env and /etc/civicard/root-key hold
    (docs/deployment.md), paths under tmp; nothing CIVICARD_* leaks in from the test run."""
    inherited = {"FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICARD_") and k not in inherited}
    declared = dict(value.split("=", 1) for value in unit["Environment"])
    assert {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"} <= set(declared), declared
    metrics_dir = data_dir / "metrics"  # RuntimeDirectory=civicard/metrics: empty at every start
    metrics_dir.mkdir()
    return (
        env
        | declared
        | {
            "WEB_CONCURRENCY": str(WORKERS),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "CIVICARD_MODE": "production",
            "CIVICARD_DATA_DIR": str(data_dir),
            "CIVICARD_DATABASE_URL": database_url,
            "CIVICARD_ROOT_KEY": root_key,
            "CIVICARD_METRICS_TOKEN": METRICS_TOKEN,
        }
    )


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by its own key; the client trusts exactly this one. It is
    marked a CA (with key usage and key ids) so that it is also a valid trust anchor under strict
    X.509 checking, which Python 3.13's default context turns on."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def nginx_config(run: Path, stack: Stack, key: Path) -> str:
    """deploy/nginx.conf inside a minimal main config: loopback ports, tmp paths, the test certificate."""
    site = substituted(
        SITE.read_text(),
        {
            "listen 80;": f"listen 127.0.0.1:{stack.http_port};",
            "listen [::]:80;": "",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{stack.https_port} ssl http2;",
            "listen [::]:443 ssl http2;": "",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{stack.app_port};",
            "https://$host$request_uri": f"https://$host:{stack.https_port}$request_uri",
            "/etc/letsencrypt/live/civicard.example.org/fullchain.pem": str(stack.cert),
            "/etc/letsencrypt/live/civicard.example.org/privkey.pem": str(key),
            "/var/log/nginx/": f"{run}/",
            "/var/www/letsencrypt": str(run / "acme"),
        },
        SITE,
    )
    temp = "\n".join(
        f"    {kind}_temp_path {run / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx would run its workers as nobody, who cannot enter pytest's root-only tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\npid {run / 'nginx.pid'};\nerror_log {run / 'error.log'} warn;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n{temp}\n{site}\n}}\n"
    )


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, verify: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(
    argv: list[str], log: Path, ready_url: str, verify: ssl.SSLContext | bool = True, **popen: Any
) -> Iterator[None]:
    """`argv` in a session of its own, output to `log`, until the block ends; ready once `ready_url`
    answers 200. Stopped with SIGTERM (uvicorn's parent stops its workers, nginx's master its own);
    if it hangs, its session gets SIGKILL while the id is still its own."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen)
    try:
        _wait_for(ready_url, process, log, verify)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_nginx()
    data_dir = tmp_path_factory.mktemp(f"civicard-deploy-{request.param}")
    if request.param == "sqlite":
        yield from _stack(data_dir, f"sqlite:///{data_dir / 'civicard.db'}")
    else:
        for database in fresh_postgres_schema():
            yield from _stack(data_dir, database.url)


def _stack(data_dir: Path, database_url: str) -> Iterator[Stack]:
    unit = unit_directives(UNIT.read_text())
    root_key, app_port = generate_root_key_text(), _free_port()
    env = service_environment(unit, data_dir, database_url, root_key)
    (pre,) = unit["ExecStartPre"]
    migrated = subprocess.run(  # WorkingDirectory= is the data dir
        service_command(pre, env, app_port), env=env, cwd=data_dir, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0 and "schema at revision" in migrated.stdout, migrated.stderr
    settings = Settings(
        mode=Mode.PRODUCTION, data_dir=data_dir, database_url=database_url, root_key=SecretStr(root_key)
    )
    container = bootstrap(settings)
    try:
        till, card = seed_sale(container, data_dir)
        run = data_dir / "nginx"
        run.mkdir()
        cert, key = self_signed_certificate(run)
        stack = Stack(_free_port(), _free_port(), app_port, cert, run / "civicard.access.log", container, till, card)
        conf = run / "nginx.conf"
        conf.write_text(nginx_config(run, stack, key))
        (start,) = unit["ExecStart"]
        service = service_command(start, env, app_port)
        nginx = [str(NGINX), "-e", str(run / "error.log"), "-p", str(run), "-c", str(conf), "-g", "daemon off;"]
        tls = ssl.create_default_context(cafile=cert)
        with (
            running(service, data_dir / "service.log", f"{stack.app}/healthz", env=env, cwd=data_dir),
            running(nginx, run / "nginx.out", f"{stack.https}/healthz", verify=tls),
        ):
            yield stack
    finally:
        container.close()


def seed_sale(container: Container, data_dir: Path) -> tuple[Till, HeldCard]:
    """The e2e town, this month's RICE-1KG grant of 6 for its first household, a shop's counter
    terminal, and a card for that household's reference person."""
    town = seed_town(container)
    household = town.household_ids[0]
    till = seed_rice_grant(container.engine, container.clock, household, data_dir / "cycles", 6)
    keys = CardKeys.derive(container.root_key)
    card = issue(container.engine, container.clock, keys, town.person_ids["María José Pérez Gómez"], household)
    return till, card


def ledger_row(stack: Stack, idempotency_key: str) -> tuple[dict[str, object], int]:
    """The redemption stored under `idempotency_key` and how many ledger lines it has."""
    with system_uow(stack.container.engine, stack.container.clock) as uow:
        conn = uow.connection
        row = conn.execute(sa.select(t.redemptions).where(t.redemptions.c.idempotency_key == idempotency_key)).one()
        lines = conn.execute(
            sa.select(sa.func.count()).select_from(t.ledger_lines).where(t.ledger_lines.c.redemption_id == row.id)
        ).scalar_one()
    return dict(row._mapping), int(lines)


def logged_through(access_log: Path, request_id: str) -> str:
    """The access log once it holds `request_id`: nginx writes the line after the response is sent."""
    deadline = time.monotonic() + 10
    while request_id not in (text := access_log.read_text()):
        assert time.monotonic() < deadline, f"{request_id} not in {access_log}:\n{text}"
        time.sleep(0.05)
    return text


def approved_online(stack: Stack) -> float:
    """civicard_redemptions_total{channel="online",outcome="approved"} from one scrape, on a new
    connection, so successive scrapes are answered by whichever worker the kernel picks."""
    response = httpx.get(f"{stack.app}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10.0)
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "civicard_redemptions_total" and sample.labels == {"channel": "online", "outcome": "approved"}
    )


def test_a_signed_redemption_through_nginx_over_tls_is_201_and_in_the_ledger(stack: Stack) -> None:
    with stack.client() as client:
        response = stack.redeem(client, "nginx-sale-1")
        tls = response.extensions["network_stream"].get_extra_info("ssl_object").version()
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert (receipt["decision"], receipt["code"]) == ("approved", "redeemed")
    assert [(line["item"], line["granted"]) for line in receipt["items"]] == [("RICE-1KG", 1)]
    assert tls in {"TLSv1.2", "TLSv1.3"}
    row, lines = ledger_row(stack, "nginx-sale-1")
    assert (row["id"], row["channel"], row["terminal_id"]) == (
        receipt["transaction_id"],
        "online",
        stack.till.terminal_id,
    )
    assert (row["total_minor"], lines) == (receipt["total_minor"], 1)


def test_plain_http_is_redirected_to_https_with_its_path_and_query(stack: Stack) -> None:
    response = httpx.get(f"http://127.0.0.1:{stack.http_port}/me?lang=en", timeout=10.0)
    assert response.status_code == 301
    assert response.headers["location"] == f"{stack.https}/me?lang=en"


def test_the_app_sees_https_behind_nginx_and_its_headers_come_once(stack: Stack) -> None:
    with stack.client() as client:
        page = client.get("/healthz")
        language = client.post("/lang", data={"lang": "en", "next": "/"})
    assert page.status_code == 200
    assert page.headers.get_list("strict-transport-security") == [HSTS[1]]
    assert page.headers.get_list("content-security-policy") == [PAGE_POLICY]
    assert page.headers.get_list("x-frame-options") == ["DENY"]
    assert language.status_code == 303 and "secure" in language.headers["set-cookie"].lower()
    # The same app asked directly over plain HTTP: no HSTS and no Secure cookie, so both above came
    # from trusting nginx's X-Forwarded-Proto, not from the app assuming https.
    direct = httpx.get(f"{stack.app}/healthz", timeout=10.0)
    assert "strict-transport-security" not in direct.headers
    direct_language = httpx.post(f"{stack.app}/lang", data={"lang": "en", "next": "/"}, timeout=10.0)
    assert "secure" not in direct_language.headers["set-cookie"].lower()


def test_nginx_refuses_metrics_and_logs_no_path_or_query(stack: Stack) -> None:
    with stack.client() as client:
        metrics = client.get("/metrics")
        looked_up = client.get("/v1/persons", params={"q": "maria perez"})
    assert metrics.status_code == 403
    assert looked_up.status_code == 401  # no session: the app answered, through the proxy
    request_id = looked_up.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id  # nginx's $request_id, kept by the app
    log = logged_through(stack.access_log, request_id)
    assert "/v1/persons" not in log and "maria" not in log and "127.0.0.1" not in log


def test_every_worker_reports_the_same_redemption_count(stack: Stack) -> None:
    before = approved_online(stack)
    with stack.client() as client:
        assert stack.redeem(client, "nginx-sale-counted").status_code == 201
    assert {approved_online(stack) for _ in range(6)} == {before + 1}

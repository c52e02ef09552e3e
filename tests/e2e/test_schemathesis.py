"""Property-based fuzzing of every OpenAPI operation over HTTP: no input may cause a server error,
and every response must match what the OpenAPI document promises.

Generated requests carry a real registrar session (a bearer token from POST /v1/sessions, signed
in once for the module) and a fixed purpose (correcting facts), so they get past the access check
and reach the services. A second run pins the path ids to seeded records, so generated bodies
reach the validation of real persons and households instead of stopping at 404. The session and
terminal endpoints are fuzzed like the rest; signing out gets a disposable session per example
(so the shared one survives), and a third run signs generated terminal requests with a registered
device key, so generated nonces get past the signature check; a fourth signs generated redemption and
card-check bodies from a counter terminal at an open shop, so they reach the redemption service.

POST /v1/sessions is fuzzed from 127.0.0.1 like everything else, so after 20 attempts the server
answers 429 (documented): the module's own session is opened before any fuzzing starts.

The OpenAPI document is taken from the application at collection time (schemathesis needs the
operations to create one test per operation; its lazy `from_fixture` loader does not work with
pytest 9), and a test checks that the live server serves exactly that document.
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx
import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from civicard.adapters.api.app import create_app
from civicard.bootstrap import Container
from tests.e2e.conftest import PING, REGISTRAR, REVIEWER, LiveServer, register_terminal, signed_headers
from tests.e2e.duplicate_seed import seed_duplicate
from tests.integration.distribution_fixtures import Till, add_till

pytestmark = pytest.mark.e2e
FUZZ_HEADERS = {"X-Civicard-Purpose": "fact_correction"}
SIGN_OUT = ("DELETE", "/v1/sessions/current")
# Operations that decide authentication themselves; everywhere else a 401 means the fuzzer lost its session.
REDEEM, CARD_CHECK = "/v1/redemptions", "/v1/terminal/card-check"
# Signed terminal routes answer 401 to a generated request that no longer matches its signature.
AUTHENTICATING_PATHS = frozenset(
    {
        "/v1/sessions",
        "/v1/sessions/current",
        PING,
        REDEEM,
        CARD_CHECK,
        "/v1/redemptions/fallback",
        "/v1/terminal/bundle",
        "/v1/terminal/receipts",
    }
)
FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
# Every built-in check runs (not_a_server_error, response_schema_conformance, content_type_conformance,
# status_code_conformance, unsupported_method, negative_data_rejection, missing_required_header…)
# except one, which cannot hide a 5xx: positive_data_acceptance — the document does not publish the
# domain's rules (vocabulary codes, postcode patterns, non-blank reasons, nonce alphabet), so
# schema-valid requests are rightly refused with 422.
EXCLUDED_CHECKS = [positive_data_acceptance]
# Building the OpenAPI document touches no container state; no database is opened here.
OPENAPI = create_app(cast(Container, None)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.update(headers=FUZZ_HEADERS)
# The reviewer's operations with a reviewer session and its purpose, so generated requests get
# past the purpose check and reach the queue's validation (the registrar run stops at 403).
REVIEW_PATHS = r"^/v1/(duplicates|merges)"
review_schema = schemathesis.openapi.from_dict(OPENAPI).include(path_regex=REVIEW_PATHS)
review_schema.config.update(headers={"X-Civicard-Purpose": "duplicate_review"})
# Appeals as a reviewer deciding them (purpose appeal_review).
appeal_schema = schemathesis.openapi.from_dict(OPENAPI).include(path_regex=r"^/v1/appeals")
appeal_schema.config.update(headers={"X-Civicard-Purpose": "appeal_review"})
# Signed terminal requests: positive cases only, because the signature is made over what was
# generated and a valid signature would turn a deliberately malformed request into a valid one.
terminal_schema = schemathesis.openapi.from_dict(OPENAPI).include(path=PING)
terminal_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
# Redemptions and card checks from a counter terminal at an open shop: the body is generated, then
# signed exactly as sent, so generated tokens, PINs, baskets and Idempotency-Keys reach the service.
counter_schema = schemathesis.openapi.from_dict(OPENAPI).include(path_regex=r"^/v1/(redemptions|terminal/card-check)$")
counter_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
COUNTER_SETTINGS = settings(FUZZ_SETTINGS, max_examples=15)


def stays_signed_in(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Any) -> bool | None:
    """A registry operation never answers 401 to the fuzzer: its session must stay valid throughout."""
    if case.path not in AUTHENTICATING_PATHS and response.status_code == 401:
        raise AssertionError(f"{case.method} {case.path} answered 401: the fuzzing session was lost")
    return None


@pytest.fixture(scope="module")
def fuzz_session(live_server: LiveServer) -> dict[str, str]:
    """The registrar session every generated request carries (one sign-in for the whole module)."""
    return live_server.open_session(REGISTRAR)


@pytest.fixture(scope="module")
def review_session(live_server: LiveServer) -> dict[str, str]:
    """A reviewer session opened through AuthStore from another address (the fuzzed sign-ins spend 127.0.0.1's
    budget), with one queued pair whose id the generated requests are pinned to."""
    signed = live_server.container.auth.sign_in(REVIEWER.username, REVIEWER.password, None, "e2e-fuzz-setup")
    _, candidate = seed_duplicate(live_server, "Inés Ibáñez Muñoz", "Ines")
    return {"token": signed.session_token, "candidate_id": candidate}


@pytest.fixture(scope="module")
def fuzz_terminal(live_server: LiveServer) -> tuple[Ed25519PrivateKey, str]:
    return register_terminal(live_server)


@pytest.fixture(scope="module")
def fuzz_counter(live_server: LiveServer) -> Till:
    """A counter terminal at an open shop (inserted as the distribution tests do)."""
    return add_till(live_server.container.engine, "shop", "Tienda Fuzz", live_server.container.clock.now())


def authorization(case: schemathesis.Case[Any], server: LiveServer, session: dict[str, str]) -> dict[str, str]:
    """The shared session's bearer token, or a disposable session for an example that signs out."""
    token = session["token"]
    if (case.method.upper(), case.path) == SIGN_OUT:
        token = server.container.auth.open_resident_session(server.person("Inés Ibáñez Muñoz")).session_token
    return {"Authorization": f"Bearer {token}"}


def test_the_live_server_serves_the_openapi_document_being_fuzzed(live_server: LiveServer) -> None:
    served = httpx.get(f"{live_server.base_url}/openapi.json", timeout=10.0)
    assert served.status_code == 200
    assert served.json() == OPENAPI
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results)
    operations = {(r.ok().method.upper(), r.ok().path) for r in results if isinstance(r, Ok)}
    assert len(operations) >= 18
    assert {("POST", "/v1/sessions"), SIGN_OUT, ("POST", PING)} <= operations


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_generated_request_causes_a_server_error_or_breaks_the_documented_responses(
    case: schemathesis.Case[Any], live_server: LiveServer, fuzz_session: dict[str, str]
) -> None:
    case.call_and_validate(
        base_url=live_server.base_url,
        headers=authorization(case, live_server, fuzz_session),
        excluded_checks=EXCLUDED_CHECKS,
        additional_checks=[stays_signed_in],
    )


@schema.include(path_regex=r"\{(person|household)_id\}").parametrize()
@FUZZ_SETTINGS
def test_no_generated_body_about_a_seeded_record_causes_a_server_error_or_breaks_the_documented_responses(
    case: schemathesis.Case[Any], live_server: LiveServer, fuzz_session: dict[str, str]
) -> None:
    seeded = {
        "person_id": live_server.person("José Luis Martínez Ruiz"),
        "household_id": live_server.town.household_ids[0],
    }
    for name in case.path_parameters or {}:
        case.path_parameters[name] = seeded[name]
    case.call_and_validate(
        base_url=live_server.base_url,
        headers=authorization(case, live_server, fuzz_session),
        excluded_checks=EXCLUDED_CHECKS,
        additional_checks=[stays_signed_in],
    )


@review_schema.parametrize()
@FUZZ_SETTINGS
def test_no_generated_review_request_causes_a_server_error_or_breaks_the_documented_responses(
    case: schemathesis.Case[Any], live_server: LiveServer, review_session: dict[str, str]
) -> None:
    if case.path_parameters and "candidate_id" in case.path_parameters:
        case.path_parameters["candidate_id"] = review_session["candidate_id"]
    case.call_and_validate(
        base_url=live_server.base_url,
        headers={"Authorization": f"Bearer {review_session['token']}"},
        excluded_checks=EXCLUDED_CHECKS,
        additional_checks=[stays_signed_in],
    )


@appeal_schema.parametrize()
@FUZZ_SETTINGS
def test_no_generated_appeal_review_request_causes_a_server_error_or_breaks_the_documented_responses(
    case: schemathesis.Case[Any], live_server: LiveServer, review_session: dict[str, str]
) -> None:
    case.call_and_validate(
        base_url=live_server.base_url,
        headers={"Authorization": f"Bearer {review_session['token']}"},
        excluded_checks=EXCLUDED_CHECKS,
        additional_checks=[stays_signed_in],
    )


@terminal_schema.parametrize()
@FUZZ_SETTINGS
def test_no_generated_nonce_in_a_correctly_signed_terminal_request_causes_a_server_error(
    case: schemathesis.Case[Any], live_server: LiveServer, fuzz_terminal: tuple[Ed25519PrivateKey, str]
) -> None:
    key, terminal_id = fuzz_terminal
    generated = {name.lower(): value for name, value in (case.headers or {}).items()}
    nonce = str(generated.get("x-civicard-nonce", ""))
    # Registered id, current time and a valid signature over the generated nonce: only the nonce is fuzzed.
    headers = signed_headers(key, terminal_id, method=case.method.upper(), nonce=nonce)
    case.call_and_validate(base_url=live_server.base_url, headers=headers, excluded_checks=EXCLUDED_CHECKS)


@counter_schema.parametrize()
@COUNTER_SETTINGS
def test_no_generated_redemption_or_card_check_from_a_counter_terminal_causes_a_server_error(
    case: schemathesis.Case[Any], live_server: LiveServer, fuzz_counter: Till
) -> None:
    request = case.as_transport_kwargs(base_url=live_server.base_url)
    body = json.dumps(request.get("json")).encode()
    generated = {k: v for k, v in request["headers"].items() if not k.lower().startswith("x-civicard-")}
    signed = signed_headers(fuzz_counter.key, fuzz_counter.terminal_id, case.formatted_path, body)
    response = requests.request(case.method.upper(), request["url"], data=body, headers=generated | signed, timeout=30)
    case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)

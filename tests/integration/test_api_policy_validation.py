"""POST /v1/policies/validate and GET /v1/policy-templates with real regopy; the Rego workers'
time limit and crash isolation seen through the API."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from caracal import rego
from caracal.domain.policy_templates import TEMPLATE_IDS
from tests.integration.api_helpers import ALLOW_READS, bearer, make_token, make_zone
from tests.support import eventually

VALIDATE = "/v1/policies/validate"
OUTPUT_CONTRACT = {
    "package": "caracal.authz",
    "rule": "result",
    "decision": ["allow", "deny"],
    "evaluation_status": ["complete"],
}
DEEP = "package caracal.authz\nresult := " + "[" * 30000 + "]" * 30000 + "\n"


async def test_validate_answers_the_output_contract_and_no_warnings_for_a_good_policy(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """200 valid:true with the schema versions, the output contract and warnings."""
    response = await client.post(VALIDATE, json={"content": ALLOW_READS, "ignored": 1}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": True,
        "schema_version": "2026-05-20",
        "input_schema_version": "2026-05-20",
        "output_contract": OUTPUT_CONTRACT,
        "warnings": [],
    }


@pytest.mark.parametrize(
    ("content", "warnings"),
    [
        (
            'package caracal.authz\ndefault result := {"decision": "allow"}\n',
            ["default_result_allows_access", "missing_requested_scope_check"],
        ),
        # the §8 correction: an allow rule after a deny default is not a warning
        (
            'package caracal.authz\ndefault result := {"decision": "deny"}\n'
            'result := {"decision": "allow"} if "read" in input.requested_scopes\n',
            [],
        ),
        # words in comments and strings are not code
        (
            "# requested_scopes\npackage caracal.authz\n"
            'result := {"decision": "deny", "n": "requested_scopes"}\n',
            ["missing_requested_scope_check"],
        ),
    ],
)
async def test_validate_warns_only_from_the_parsed_module(
    client: httpx.AsyncClient, admin: dict[str, str], content: str, warnings: list[str]
) -> None:
    """default_result_allows_access only when the default itself allows; scope check by identifier."""
    response = await client.post(
        VALIDATE, json={"content": content, "schema_version": "2026-03-16"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert (response.json()["warnings"], response.json()["schema_version"]) == (warnings, "2026-03-16")


async def test_validate_refusals_are_422_valid_false_with_the_contracts_codes(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """{"valid":false,"error":…,"detail":…}: schema version first, then the module."""
    schema = await client.post(VALIDATE, json={"content": "x", "schema_version": "1999"}, headers=admin)
    assert schema.status_code == 422
    assert {k: schema.json()[k] for k in ("valid", "error", "detail")} == {
        "valid": False,
        "error": "invalid_schema_version",
        "detail": "unsupported_schema_version:1999",
    }
    rego_error = await client.post(
        VALIDATE, json={"content": "package caracal.authz\nx := rand.intn(1)\n"}, headers=admin
    )
    assert rego_error.status_code == 422
    assert (rego_error.json()["valid"], rego_error.json()["error"]) == (False, "invalid_rego")
    assert rego_error.json()["detail"] == "forbidden_builtin:rand.intn at line 2, column 6"


@pytest.mark.parametrize(
    "body", [{}, {"content": ""}, {"content": ["a"]}, {"content": "a", "schema_version": 1}]
)
async def test_validate_with_a_bad_body_is_400_invalid_body(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post(VALIDATE, json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_body")
    assert response.json()["details"]["issues"]


async def test_policy_content_over_the_size_limit_is_422_policy_too_large(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """CARACAL_POLICY_MAX_BYTES (256 KiB): refused before any worker parses it."""
    big = ALLOW_READS + "#" * (256 * 1024)
    response = await client.post(VALIDATE, json={"content": big}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (422, "invalid_rego")
    assert response.json()["detail"].startswith("policy_too_large")


async def test_zone_tokens_may_validate_and_read_templates(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The two non-zone routes a zone token may call (CONTRACT.md §1.2)."""
    zone = await make_zone(client, admin)
    token = bearer((await make_token(client, admin, scope="zone", zone_id=zone["id"]))["token"])
    assert (await client.post(VALIDATE, json={"content": ALLOW_READS}, headers=token)).status_code == 200
    assert (await client.get("/v1/policy-templates", headers=token)).status_code == 200
    assert (await client.get("/v1/zones", headers=token)).status_code == 403


async def test_templates_are_the_contracts_nine_in_order_each_valid_without_warnings(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """{id, name, description, content}, ids in the contract's order; each passes our validator."""
    response = await client.get("/v1/policy-templates", headers=admin)
    assert response.status_code == 200
    templates = response.json()
    assert [t["id"] for t in templates] == list(TEMPLATE_IDS) and len(templates) == 9
    assert all(set(t) == {"id", "name", "description", "content"} for t in templates)
    for template in templates:
        checked = await client.post(VALIDATE, json={"content": template["content"]}, headers=admin)
        assert (checked.status_code, checked.json()["warnings"]) == (200, []), template["id"]


async def test_a_pathological_module_gets_a_clear_422_within_the_limit_and_the_api_still_answers(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Past CARACAL_REGO_TIMEOUT_MS the worker is killed: 422 rego_timeout; the next call works."""
    rego.configure(workers=1, timeout_ms=1000, max_pending=4, max_bytes=256 * 1024)
    await client.post(VALIDATE, json={"content": ALLOW_READS}, headers=admin)  # the worker is up
    started = time.monotonic()
    slow = client.post(VALIDATE, json={"content": DEEP}, headers=admin)
    health = client.get("/health")
    refused, healthy = await asyncio.gather(slow, health)
    assert time.monotonic() - started < 5
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_rego")
    assert refused.json()["detail"].startswith("rego_timeout")
    assert healthy.status_code == 200  # the event loop was free meanwhile
    again = await client.post(VALIDATE, json={"content": ALLOW_READS}, headers=admin)
    assert again.status_code == 200, again.text


async def test_a_crashing_interpreter_is_a_422_and_does_not_take_the_api_down(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The worker dies mid-check (killed as a segfault would): 422 rego_crashed; a new one serves."""
    engine = rego.configure(workers=1, timeout_ms=30_000, max_pending=4, max_bytes=256 * 1024)
    await client.post(VALIDATE, json={"content": ALLOW_READS}, headers=admin)
    worker = engine._workers[0]  # the test plays the crash on the real process
    assert worker.process is not None
    pid = worker.process.pid
    pending = asyncio.ensure_future(client.post(VALIDATE, json={"content": DEEP}, headers=admin))
    await eventually(lambda: engine.pending == 1, "the deep check is with the worker")
    os.kill(pid, signal.SIGSEGV)
    crashed = await pending
    assert (crashed.status_code, crashed.json()["error"]) == (422, "invalid_rego")
    assert crashed.json()["detail"].startswith("rego_crashed")
    again = await client.post(VALIDATE, json={"content": ALLOW_READS}, headers=admin)
    assert again.status_code == 200
    assert worker.process is not None and worker.process.pid != pid

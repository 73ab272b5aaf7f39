"""The application routes' budgets, counted at the Postgres wire (tests/integration/wire_budget.py).

The client secret is hashed before the transaction opens, so the budgets hold no Argon2id wait.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.integration.api_helpers import make_zone
from tests.integration.wire_budget import ADMIN, Counted, measure

# A write is BEGIN, its statements, the change event, the audit row and COMMIT.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    # the zone check and the insert are one statement
    "post": 5,
    "patch": 5,
    # the secret's row locked first (404 / client_secret_not_configured), then the update
    "patch_secret": 6,
    "rotate": 6,
    "delete": 5,
    # zone row locked, live count, insert
    "dcr": 7,
}
MANAGED = {"name": "App", "registration_method": "managed", "traits": ["a"]}


def one_transaction(counted: Counted) -> bool:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def _app(counted: Counted, zone_id: str) -> str:
    response = await counted.http.post(f"/v1/zones/{zone_id}/applications", json=MANAGED, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _zone(counted: Counted, **body: Any) -> str:
    return str((await make_zone(counted.http, ADMIN, **body))["id"])


async def test_get_one_application_is_one_round_trip(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/applications/{await _app(counted, zone_id)}"
    assert await measure(counted, "GET", url) <= BUDGETS["get_one"]


async def test_list_of_201_applications_is_one_round_trip(counted: Counted) -> None:
    """A full page of 200 (with a Link) costs the one statement whatever the size."""
    zone_id = await _zone(counted)
    async with counted.resources.engine.begin() as conn:  # rows straight in: 201 hashes would be slow
        await conn.execute(
            text(
                "INSERT INTO applications (id, zone_id, name, registration_method)"
                " SELECT gen_random_uuid()::text, :zone, 'a' || n, 'managed' FROM generate_series(1, 201) n"
            ),
            {"zone": zone_id},
        )
    assert await measure(counted, "GET", f"/v1/zones/{zone_id}/applications") <= BUDGETS["get_list"]


async def test_create_is_one_transaction(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/applications"
    assert await measure(counted, "POST", url, MANAGED, expect=201) <= BUDGETS["post"]
    assert one_transaction(counted)


async def test_patch_is_one_transaction_with_or_without_a_secret(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/applications/{await _app(counted, zone_id)}"
    assert await measure(counted, "PATCH", url, {"name": "b", "traits": []}) <= BUDGETS["patch"]
    assert one_transaction(counted)
    assert await measure(counted, "PATCH", url, {"client_secret": "chosen"}) <= BUDGETS["patch_secret"]
    assert one_transaction(counted)


async def test_rotate_and_delete_are_one_transaction_each(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/applications/{await _app(counted, zone_id)}"
    assert await measure(counted, "POST", f"{url}/rotate-secret") <= BUDGETS["rotate"]
    assert one_transaction(counted)
    assert await measure(counted, "DELETE", url, expect=204) <= BUDGETS["delete"]
    assert one_transaction(counted)


async def test_dcr_registration_is_one_transaction(counted: Counted) -> None:
    zone_id = await _zone(counted, dcr_enabled=True)
    spent = await measure(counted, "POST", f"/v1/zones/{zone_id}/applications/dcr", {"name": "d"}, expect=201)
    assert spent <= BUDGETS["dcr"] and one_transaction(counted), spent
    rfc = await measure(counted, "POST", f"/v1/zones/{zone_id}/applications/register", {}, expect=201)
    assert rfc <= BUDGETS["dcr"] and one_transaction(counted), rfc

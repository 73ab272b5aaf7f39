"""/v1/zones against real Postgres and Redis: bodies, slugs, soft delete, DCR switch, DEK, events."""

from __future__ import annotations

import asyncio
import random
import re
import string
import uuid
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.crypto import unwrap_dek
from caracal.settings import Settings
from tests.integration.api_helpers import count_rows, make_zone, outbox

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ZONE_KEYS = {"id", "name", "slug", "dcr_enabled", "created_at", "updated_at"}


async def test_create_zone_answers_201_with_exactly_the_contract_fields(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """POST /v1/zones answers the Zone object: six keys, UUIDv7 id, millisecond Z timestamps."""
    response = await client.post("/v1/zones", json={"name": "Acme", "dcr_enabled": True}, headers=admin)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == ZONE_KEYS
    assert body["name"] == "Acme" and body["slug"] == "acme" and body["dcr_enabled"] is True
    parsed = uuid.UUID(body["id"])
    assert parsed.version == 7 and str(parsed) == body["id"]
    assert ISO_MS.match(body["created_at"]) and ISO_MS.match(body["updated_at"])
    default = await make_zone(client, admin, name="Plain")
    assert default["dcr_enabled"] is False


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Corp", "acme-corp"),
        ("  Hello,  World!! ", "hello-world"),
        ("a_b.c/d", "a-b-c-d"),
        ("--Team 42--", "team-42"),
        ("ÄÖÜ", "zone"),
        ("!!!", "zone"),
        ("ABC123", "abc123"),
    ],
)
async def test_slug_is_generated_from_the_name(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, slug: str
) -> None:
    """Without a slug: lowercase, runs outside [a-z0-9] become '-', trimmed, empty becomes 'zone'."""
    assert (await make_zone(client, admin, name=name))["slug"] == slug


async def test_generated_slug_skips_taken_ones_including_archived(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A taken base slug (even by an archived zone) gets -2, then -3."""
    first = await make_zone(client, admin, name="Acme")
    assert (await client.delete(f"/v1/zones/{first['id']}", headers=admin)).status_code == 204
    assert (await make_zone(client, admin, name="ACME"))["slug"] == "acme-2"
    assert (await make_zone(client, admin, name="acme!"))["slug"] == "acme-3"


async def test_long_names_and_slugs_stay_within_the_indexable_length(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A 9000-letter name gets a slug cut to fit the unique index; a given slug over 2000 is 400."""
    rng = random.Random(7)
    name = "".join(rng.choice(string.ascii_lowercase) for _ in range(9000))
    assert (await make_zone(client, admin, name=name))["slug"] == name[:1960]
    assert (await make_zone(client, admin, name=name))["slug"] == name[:1960] + "-2"
    assert (await make_zone(client, admin, name="x", slug=name[:2000]))["slug"] == name[:2000]
    response = await client.post("/v1/zones", json={"name": "x", "slug": name[:2001]}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_zone")


async def test_concurrent_creates_of_one_name_all_get_distinct_slugs(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Twelve simultaneous creates named 'Acme' all answer 201, with acme, acme-2 ... acme-12."""
    responses = await asyncio.gather(
        *(client.post("/v1/zones", json={"name": "Acme"}, headers=admin) for _ in range(12))
    )
    assert [r.status_code for r in responses] == [201] * 12
    slugs = {r.json()["slug"] for r in responses}
    assert slugs == {"acme", *(f"acme-{n}" for n in range(2, 13))}


async def test_explicit_slug_conflict_is_409_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A given slug that is taken (live or archived) answers 409 zone_slug_conflict, writes nothing."""
    await make_zone(client, admin, slug="taken")
    archived = await make_zone(client, admin, slug="gone")
    await client.delete(f"/v1/zones/{archived['id']}", headers=admin)
    before = await outbox(engine)
    for slug in ("taken", "gone"):
        response = await client.post("/v1/zones", json={"name": "Other", "slug": slug}, headers=admin)
        assert response.status_code == 409
        assert response.json()["error"] == "zone_slug_conflict"
    assert await count_rows(engine, "zones") == 2
    assert await outbox(engine) == before


async def test_patch_to_a_taken_slug_is_409_and_leaves_the_zone_unchanged(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """PATCH slug onto another zone's slug answers 409 zone_slug_conflict with no write."""
    await make_zone(client, admin, slug="one")
    two = await make_zone(client, admin, slug="two")
    before = await outbox(engine)
    response = await client.patch(
        f"/v1/zones/{two['id']}", json={"slug": "one", "name": "Renamed"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["error"] == "zone_slug_conflict"
    assert (await client.get(f"/v1/zones/{two['id']}", headers=admin)).json() == two
    assert await outbox(engine) == before


INVALID_BODIES: list[Any] = [
    {"name": "a", "color": "red"},
    {"name": ""},
    {},
    {"name": None},
    {"name": 7},
    {"name": "a", "slug": "Bad Slug"},
    {"name": "a", "slug": ""},
    {"name": "a", "slug": None},
    {"name": "a", "dcr_enabled": "yes"},
    {"name": "a", "dcr_enabled": 1},
    {"name": "a", "dcr_enabled": "true"},
    {"name": "a", "dcr_enabled": None},
    [],
    "zone",
    None,
    42,
]


@pytest.mark.parametrize("body", INVALID_BODIES)
async def test_invalid_create_body_is_400_invalid_zone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: Any
) -> None:
    """A body that breaks the strict schema answers 400 invalid_zone and creates nothing."""
    response = await client.post("/v1/zones", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_zone"
    assert await count_rows(engine, "zones") == 0


@pytest.mark.parametrize("raw", [b'{"name":', b"not json", b'{"name":"a"} trailing', b""])
async def test_malformed_json_create_body_is_400_invalid_zone(
    client: httpx.AsyncClient, admin: dict[str, str], raw: bytes
) -> None:
    """Bytes that are not one JSON value answer 400 invalid_zone."""
    headers = {**admin, "content-type": "application/json"}
    response = await client.post("/v1/zones", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_zone"


@pytest.mark.parametrize(
    "body",
    [{"color": "red"}, {"name": ""}, {"slug": "UPPER"}, {"dcr_enabled": "no"}, {"dcr_shutdown": "x"}, []],
)
async def test_invalid_patch_body_is_400_even_for_a_missing_zone(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any
) -> None:
    """PATCH validates the body before looking the zone up (400 before 404)."""
    response = await client.patch(f"/v1/zones/{uuid.uuid4()}", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_zone"


async def test_unknown_zone_is_404_zone_not_found(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """GET, dcr-status, PATCH and DELETE of an unknown id answer 404 zone_not_found."""
    missing = f"/v1/zones/{uuid.uuid4()}"
    for response in (
        await client.get(missing, headers=admin),
        await client.get(f"{missing}/dcr-status", headers=admin),
        await client.patch(missing, json={"name": "x"}, headers=admin),
        await client.delete(missing, headers=admin),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "zone_not_found"


async def test_deleted_zone_answers_204_then_is_invisible(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DELETE answers 204 with no body; the archived zone is gone from get, list, patch and delete."""
    zone = await make_zone(client, admin)
    kept = await make_zone(client, admin, name="Kept")
    path = f"/v1/zones/{zone['id']}"
    deleted = await client.delete(path, headers=admin)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(path, headers=admin)).status_code == 404
    assert (await client.get(f"{path}/dcr-status", headers=admin)).status_code == 404
    assert (await client.patch(path, json={"name": "x"}, headers=admin)).status_code == 404
    assert (await client.delete(path, headers=admin)).status_code == 404
    assert [z["id"] for z in (await client.get("/v1/zones", headers=admin)).json()] == [kept["id"]]
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT archived_at FROM zones WHERE id = :i"), {"i": zone["id"]})
        ).one()
    assert row.archived_at is not None


async def test_patch_writes_only_given_fields_and_moves_updated_at(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """PATCH changes the given keys, keeps the others and sets updated_at to now."""
    zone = await make_zone(client, admin, name="Before", slug="before")
    response = await client.patch(f"/v1/zones/{zone['id']}", json={"name": "After"}, headers=admin)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ZONE_KEYS
    assert (body["name"], body["slug"], body["created_at"]) == ("After", "before", zone["created_at"])
    assert body["updated_at"] >= zone["updated_at"]
    same_slug = await client.patch(f"/v1/zones/{zone['id']}", json={"slug": "before"}, headers=admin)
    assert same_slug.status_code == 200


async def test_patch_without_fields_is_400_no_fields(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """An empty PATCH answers 400 no_fields, for a live zone and before the 404 of a missing one."""
    zone = await make_zone(client, admin)
    for zone_id in (zone["id"], str(uuid.uuid4())):
        response = await client.patch(f"/v1/zones/{zone_id}", json={}, headers=admin)
        assert response.status_code == 400
        assert response.json()["error"] == "no_fields"


@pytest.mark.parametrize(
    "body", [{"dcr_shutdown": "keep_live"}, {"dcr_shutdown": "revoke_live", "dcr_enabled": True}]
)
async def test_dcr_shutdown_without_disabling_dcr_is_400(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    """dcr_shutdown needs dcr_enabled: false, else 400 dcr_shutdown_not_applicable."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    response = await client.patch(f"/v1/zones/{zone['id']}", json=body, headers=admin)
    assert response.status_code == 400
    assert response.json()["error"] == "dcr_shutdown_not_applicable"


@pytest.mark.parametrize(
    ("was_enabled", "body", "audited"),
    [
        (True, {"dcr_enabled": False}, True),
        (False, {"dcr_enabled": False, "dcr_shutdown": "keep_live"}, True),
        (False, {"dcr_enabled": False}, False),
    ],
)
async def test_disabling_dcr_audits_a_no_live_shutdown_when_dcr_was_on_or_a_mode_given(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    was_enabled: bool,
    body: dict[str, Any],
    audited: bool,
) -> None:
    """dcr-status shows the switch; turning it off writes 'DCR shutdown no_live' when the contract says."""
    zone = await make_zone(client, admin, dcr_enabled=was_enabled)
    status = f"/v1/zones/{zone['id']}/dcr-status"
    expected = {"id": zone["id"], "dcr_enabled": was_enabled, "live_dcr_applications": 0}
    assert (await client.get(status, headers=admin)).json() == expected
    response = await client.patch(f"/v1/zones/{zone['id']}", json=body, headers=admin)
    assert response.status_code == 200 and response.json()["dcr_enabled"] is False
    assert (await client.get(status, headers=admin)).json() == {**expected, "dcr_enabled": False}
    async with engine.connect() as conn:
        query = text("SELECT zone_id, payload_json FROM admin_audit_events WHERE action LIKE 'DCR shutdown%'")
        rows = (await conn.execute(query)).all()
    assert [(r.zone_id, r.payload_json["dcr_shutdown_mode"]) for r in rows] == (
        [(zone["id"], "no_live")] if audited else []
    )
    if audited:
        assert rows[0].payload_json["dcr_registration_disabled"] is True
        assert rows[0].payload_json["live_dcr_applications"] == 0


async def test_zone_dek_is_wrapped_by_the_kek_and_unwraps_to_32_bytes(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    """dek_ciphertext is nonce+ciphertext+tag (60 bytes) under KEK 'test1', bound to its zone."""
    zone = await make_zone(client, admin)
    other = await make_zone(client, admin, name="Other")
    async with engine.connect() as conn:
        query = text("SELECT id, dek_ciphertext, kek_arn FROM zones")
        rows = {r.id: r for r in (await conn.execute(query)).all()}
    row = rows[zone["id"]]
    assert len(row.dek_ciphertext) == 60 and row.kek_arn == "test1"
    dek = unwrap_dek(settings.kek, zone["id"], bytes(row.dek_ciphertext), row.kek_arn)
    assert len(dek) == 32 and dek not in bytes(row.dek_ciphertext)
    other_dek = unwrap_dek(settings.kek, other["id"], bytes(rows[other["id"]].dek_ciphertext), "test1")
    assert other_dek != dek
    with pytest.raises(InvalidTag):
        unwrap_dek(settings.kek, other["id"], bytes(row.dek_ciphertext), row.kek_arn)


async def test_every_zone_mutation_writes_one_changes_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Create, update and delete each add one caracal.changes row naming the event and the zone."""
    seeded = len(await outbox(engine))
    zone = await make_zone(client, admin)
    await client.patch(f"/v1/zones/{zone['id']}", json={"name": "Renamed"}, headers=admin)
    await client.patch(f"/v1/zones/{zone['id']}", json={"dcr_enabled": False}, headers=admin)
    await client.delete(f"/v1/zones/{zone['id']}", headers=admin)
    expected = [
        {"event": event, "zone_id": zone["id"], "entity_type": "zone", "entity_id": zone["id"]}
        for event in ("zone.created", "zone.updated", "zone.updated", "zone.deleted")
    ]
    assert (await outbox(engine))[seeded:] == [("caracal.changes", payload) for payload in expected]

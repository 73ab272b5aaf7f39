"""Real integrity and data errors from Postgres reach the client as the registry's 4xx, never a 500."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import autocommit, plain_url, transaction, translate_db_error
from caracal.db.paging import Page
from caracal.db.tables.admin_tokens import admin_tokens
from caracal.db.tables.outbox import event_outbox
from caracal.db.tables.zones import zones
from caracal.domain import dead_letters
from caracal.domain.context import Caller
from caracal.errors import CaracalError
from caracal.outbox import record_event
from caracal.settings import Settings


def zone_row(zone_id: str, slug: str) -> dict[str, Any]:
    return {"id": zone_id, "name": zone_id, "slug": slug, "dek_ciphertext": b"\x01" * 32}


def token_row(token_id: str, **changes: Any) -> dict[str, Any]:
    values = {
        "id": token_id,
        "name": token_id,
        "token_sha256": secrets.token_bytes(32),
        "scope": "global",
        "created_by": "test",
    }
    return {**values, **changes}


async def _write(engine: AsyncEngine, statements: tuple[Any, ...]) -> None:
    async with transaction(engine) as conn:
        for statement in statements:
            await conn.execute(statement)


async def refusal_of_write(engine: AsyncEngine, *statements: Any) -> CaracalError:
    """The CaracalError the write transaction raises for `statements`, run in order."""
    with pytest.raises(CaracalError) as raised:
        await _write(engine, statements)
    return raised.value


def status_code(error: CaracalError) -> tuple[int, str]:
    return error.status, error.code


async def test_a_taken_slug_is_409_zone_slug_conflict(engine: AsyncEngine) -> None:
    error = await refusal_of_write(
        engine, insert(zones).values(zone_row("z1", "same")), insert(zones).values(zone_row("z2", "same"))
    )
    assert status_code(error) == (409, "zone_slug_conflict")


async def test_a_reused_primary_key_is_409_entity_conflict(engine: AsyncEngine) -> None:
    error = await refusal_of_write(
        engine, insert(admin_tokens).values(token_row("t1")), insert(admin_tokens).values(token_row("t1"))
    )
    assert status_code(error) == (409, "admin_token_conflict")


async def test_a_token_for_a_missing_zone_is_404_zone_not_found(engine: AsyncEngine) -> None:
    row = token_row("t1", scope="zone", zone_id="no-such-zone")
    error = await refusal_of_write(engine, insert(admin_tokens).values(row))
    assert status_code(error) == (404, "zone_not_found")


async def test_deleting_a_zone_its_tokens_reference_is_409_zone_in_use(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        await conn.execute(insert(zones).values(zone_row("z1", "z1")))
        await conn.execute(insert(admin_tokens).values(token_row("t1", scope="zone", zone_id="z1")))
    error = await refusal_of_write(engine, delete(zones).where(zones.c.id == "z1"))
    assert status_code(error) == (409, "zone_in_use")


async def test_a_broken_check_is_400_with_the_tables_invalid_code(engine: AsyncEngine) -> None:
    error = await refusal_of_write(engine, insert(admin_tokens).values(token_row("t1", token_sha256=b"x")))
    assert status_code(error) == (400, "invalid_admin_token_request")


async def test_a_missing_required_value_is_400_with_the_tables_invalid_code(engine: AsyncEngine) -> None:
    error = await refusal_of_write(engine, insert(zones).values(id="z1", name="n", slug="s"))
    assert status_code(error) == (400, "invalid_zone")


async def test_nul_in_a_text_parameter_is_400_invalid_input(engine: AsyncEngine) -> None:
    """What made GET /v1/outbox/dead?stream=%00 a 500: Postgres refuses NUL in text (22021)."""
    with pytest.raises(CaracalError) as raised:
        async with autocommit(engine) as conn:
            await dead_letters.list_dead(conn, Page(limit=10), "\x00")
    assert status_code(raised.value) == (400, "invalid_input")


async def test_nul_in_a_requeued_stream_name_is_400_invalid_input(engine: AsyncEngine) -> None:
    """What made POST /v1/outbox/dead/requeue {"stream": "a\\u0000b"} a 500, at the database level."""
    with pytest.raises(CaracalError) as raised:
        async with transaction(engine) as conn:
            await dead_letters.requeue_dead(conn, Caller(), "a\x00b")
    assert status_code(raised.value) == (400, "invalid_input")


async def test_nul_inside_a_json_value_is_400_invalid_input(engine: AsyncEngine) -> None:
    """jsonb cannot store \\u0000 (22P05)."""
    with pytest.raises(CaracalError) as raised:
        async with transaction(engine) as conn:
            await record_event(conn, "caracal.changes", {"event": "a\x00b"})
    assert status_code(raised.value) == (400, "invalid_input")


async def test_a_number_out_of_range_is_400_invalid_input(engine: AsyncEngine) -> None:
    error = await refusal_of_write(engine, update(event_outbox).values(attempts=2**40))
    assert status_code(error) == (400, "invalid_input")


async def test_text_that_is_not_a_value_of_its_type_is_400_invalid_input(engine: AsyncEngine) -> None:
    error = await refusal_of_write(engine, text("SELECT CAST(:v AS integer)").bindparams(v="twelve"))
    assert status_code(error) == (400, "invalid_input")


async def test_raw_asyncpg_violations_are_translated_the_same_way(
    settings: Settings, engine: AsyncEngine
) -> None:
    """A hot path may run a compiled statement on the raw asyncpg connection: same registry."""
    database_url, _ = settings.require_servers()
    conn = await asyncpg.connect(plain_url(database_url))
    insert_zone = "INSERT INTO zones (id, name, slug, dek_ciphertext) VALUES ($1, $1, 'same', '\\x00')"
    try:
        await conn.execute(insert_zone, "z1")
        with pytest.raises(asyncpg.PostgresError) as raised:
            await conn.execute(insert_zone, "z2")
    finally:
        await conn.close()
    translated = translate_db_error(raised.value)
    assert isinstance(translated, CaracalError)
    assert status_code(translated) == (409, "zone_slug_conflict")


async def test_a_failure_that_is_not_the_clients_stays_untranslated(engine: AsyncEngine) -> None:
    """A bug in our SQL (here an unknown table) must stay a 500, not pass as a client error."""
    with pytest.raises(ProgrammingError, match="no_such_table"):
        await _write(engine, (text("SELECT * FROM no_such_table"),))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/outbox/dead/requeue", {"stream": "a\u0000b"}),
        ("GET", "/v1/outbox/dead?stream=%00", None),
    ],
)
async def test_nul_in_outbox_requests_is_a_400_not_a_500(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str, body: Any
) -> None:
    """The two 500s the review found; validation or the registry must answer 400."""
    response = await client.request(method, path, json=body, headers=admin)
    assert response.status_code == 400, response.text

"""The table definitions in caracal.db.tables agree with the database the migrations build, names included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import CheckConstraint, Column, Index, MetaData, Table, Text, UniqueConstraint, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from caracal.db.engine import asyncpg_url, plain_url
from caracal.db.tables import metadata
from caracal.db.tables.outbox import outbox_origin
from caracal.db.tables.resources import gateway_binding_revision
from caracal.settings import Settings
from tests.conftest import recreate_database
from tests.integration.catalog import FUNCTIONS, Shape, describe, differences
from tests.support import Servers

DEFINED = "caracal.db.tables"
MIGRATED = "migrations"


async def created_from(tables: MetaData, url: str) -> Shape:
    """Build `tables` with SQLAlchemy's own DDL into an empty database and read its catalog back."""
    engine = create_async_engine(asyncpg_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.create_all)
    finally:
        await engine.dispose()
    return await describe(plain_url(url))


@pytest_asyncio.fixture(scope="module")
async def migrated(settings: Settings) -> Shape:
    """The catalog of the session's database, which the migrations built up to head."""
    database_url, _ = settings.require_servers()
    return await describe(plain_url(database_url))


@pytest_asyncio.fixture
async def scratch_url(servers: Servers) -> AsyncIterator[str]:
    """An empty database for building the definitions into; dropped afterwards."""
    url = await recreate_database(servers, "caracal_tables_scratch")
    yield url
    conn = await asyncpg.connect(plain_url(servers.postgres_url))
    try:
        await conn.execute('DROP DATABASE IF EXISTS "caracal_tables_scratch" WITH (FORCE)')
    finally:
        await conn.close()


def copy_of_definitions(change: Callable[[MetaData], object]) -> MetaData:
    """A copy of the definitions with one change, so the real ones stay untouched."""
    copied = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copied)
    change(copied)
    return copied


def zones_of(tables: MetaData) -> Table:
    return tables.tables["zones"]


async def test_table_definitions_match_the_migrated_database(migrated: Shape, scratch_url: str) -> None:
    """Every table, column (type, nullability, default, identity), constraint and index agrees by name."""
    defined = await created_from(metadata, scratch_url)
    assert differences(defined, migrated, expected_as=DEFINED, actual_as=MIGRATED) == []


async def test_migrated_catalog_holds_what_the_old_schema_module_missed(migrated: Shape) -> None:
    """The comparison reaches txid, outbox_origin, named keys, partial indexes: all the old module lacked."""
    outbox = migrated["event_outbox"]
    assert outbox["column txid"]["type"] == "xid8"
    assert outbox["column seq"]["identity"] == "a"
    assert outbox["index event_outbox_stream_pending"]["predicate"] == (
        "dispatched_at IS NULL AND dead_at IS NULL"
    )
    assert migrated["outbox_origin"]["constraint outbox_origin_id_check"]["kind"] == "c"
    assert migrated["zones"]["constraint zones_slug_key"]["columns"] == ["slug"]
    assert migrated["admin_tokens"]["index admin_tokens_active_sha256_uidx"]["is_unique"] is True
    assert migrated["admin_tokens"]["constraint admin_tokens_zone_id_fkey"]["definition"] == (
        "FOREIGN KEY (zone_id) REFERENCES zones(id)"
    )


def _add_column(tables: MetaData) -> None:
    zones_of(tables).append_column(Column("extra", Text))


def _add_index(tables: MetaData) -> None:
    Index("zones_name_idx", zones_of(tables).c.name)


def _add_check(tables: MetaData) -> None:
    zones_of(tables).append_constraint(CheckConstraint("length(slug) > 0", name="zones_slug_check"))


def _add_unique(tables: MetaData) -> None:
    zones_of(tables).append_constraint(UniqueConstraint("name", name="zones_name_key"))


def _change_default(tables: MetaData) -> None:
    zones_of(tables).c.dcr_enabled.server_default = None


def _drop_index_predicate(tables: MetaData) -> None:
    index = next(i for i in zones_of(tables).indexes if i.name == "zones_live_page_idx")
    index.dialect_options["postgresql"]["where"] = None


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (_add_column, "zones column extra: only in caracal.db.tables"),
        (_add_index, "zones index zones_name_idx: only in caracal.db.tables"),
        (_add_check, "zones constraint zones_slug_check: only in caracal.db.tables"),
        (_add_unique, "zones constraint zones_name_key: only in caracal.db.tables"),
        (
            _change_default,
            "zones column dcr_enabled default_expr: caracal.db.tables None != migrations 'false'",
        ),
        (_drop_index_predicate, "zones index zones_live_page_idx predicate: caracal.db.tables None"),
    ],
)
async def test_a_change_on_the_definitions_side_only_is_reported(
    migrated: Shape, scratch_url: str, change: Callable[[MetaData], object], reported: str
) -> None:
    """A column, index, constraint, default or predicate on one side only makes the comparison fail."""
    defined = await created_from(copy_of_definitions(change), scratch_url)
    found = differences(defined, migrated, expected_as=DEFINED, actual_as=MIGRATED)
    assert any(line.startswith(reported) for line in found), found


async def test_an_index_only_in_the_database_is_reported(migrated: Shape, scratch_url: str) -> None:
    """What a migration adds without a definition (here an index) makes the comparison fail too."""
    defined = await created_from(metadata, scratch_url)
    conn = await asyncpg.connect(plain_url(scratch_url))
    try:
        await conn.execute("CREATE INDEX zones_name_idx ON zones (name)")
    finally:
        await conn.close()
    database = await describe(plain_url(scratch_url))
    found = differences(defined, database, expected_as=DEFINED, actual_as=MIGRATED)
    assert found == ["zones index zones_name_idx: only in migrations"]


def _named_things(tables: MetaData) -> Iterator[tuple[str, object]]:
    for table in tables.sorted_tables:
        for constraint in table.constraints:
            yield table.name, constraint.name
        for index in table.indexes:
            yield table.name, index.name


def test_every_key_check_and_index_is_named_in_the_definitions() -> None:
    """Names are the contract (CONTRACT.md §7.4, §9): none may be left for Postgres to choose."""
    unnamed = [table for table, name in _named_things(metadata) if not isinstance(name, str)]
    assert unnamed == []


async def test_tests_start_with_every_table_empty_but_the_seeded_singleton_rows(
    engine: AsyncEngine, emptied_tables: list[str], truncate_all: str
) -> None:
    """The truncation list comes from the catalog: a new table is emptied between tests without an edit."""
    assert set(emptied_tables) == set(metadata.tables) - {"outbox_origin", "gateway_binding_revision"}
    assert all(f'"{table}"' in truncate_all for table in emptied_tables)
    async with engine.connect() as conn:
        origins = (await conn.execute(select(func.count()).select_from(outbox_origin))).scalar_one()
        revisions = (
            await conn.execute(select(func.count()).select_from(gateway_binding_revision))
        ).scalar_one()
    assert (origins, revisions) == (1, 1)


async def test_triggers_and_functions_are_compared(migrated: Shape, scratch_url: str) -> None:
    """The version tables' immutability trigger and its function are read, and one missing is reported."""
    assert (
        "BEFORE DELETE OR UPDATE ON policy_versions"
        in (migrated["policy_versions"]["trigger policy_versions_immutable"]["definition"])
    )
    assert "function caracal_refuse_version_change()" in migrated[FUNCTIONS]
    defined = await created_from(metadata, scratch_url)
    conn = await asyncpg.connect(plain_url(scratch_url))
    try:
        await conn.execute("DROP TRIGGER policy_versions_immutable ON policy_versions")
        await conn.execute(
            "CREATE OR REPLACE FUNCTION caracal_refuse_version_change() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
        )
    finally:
        await conn.close()
    database = await describe(plain_url(scratch_url))
    found = differences(defined, database, expected_as=DEFINED, actual_as=MIGRATED)
    assert "policy_versions trigger policy_versions_immutable: only in caracal.db.tables" in found
    changed_body = f"{FUNCTIONS} function caracal_refuse_version_change() body"
    assert any(line.startswith(changed_body) for line in found)

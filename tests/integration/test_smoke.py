"""The app answers over real Postgres and Redis."""

import httpx


async def test_zone_created_with_the_env_token_is_listed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A zone posted with CARACAL_ADMIN_TOKEN comes back in the list."""
    created = await client.post("/v1/zones", json={"name": "Acme"}, headers=admin)
    assert created.status_code == 201, created.text
    listed = await client.get("/v1/zones", headers=admin)
    assert [z["id"] for z in listed.json()] == [created.json()["id"]]

"""The document's links (caracal_api.openapi_links), read from the route table `/openapi.json` serves."""

from __future__ import annotations

from typing import Any

import pytest

from caracal.ids import PATH_PARAM
from caracal_api.app import routes_app
from caracal_api.openapi_links import add_links

Doc = dict[str, Any]
SETS = "/v1/zones/{zone_id}/policy-sets"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = routes_app(1 << 20)
    add_links(app)
    add_links(app)  # start-up may run again on a reused route table: the links stay the same
    return app.openapi_schema.to_schema()


def links(document: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]["responses"][status].get("links", {})
    return found


def test_a_created_zone_feeds_its_operations_and_the_collections_below_it(
    document: dict[str, Any],
) -> None:
    created = links(document, "post", "/v1/zones", "201")
    get_zone = created["V1ZonesZoneIdGetZone"]
    assert get_zone == {
        "operationId": "V1ZonesZoneIdGetZone",
        "parameters": {"path.zone_id": "$response.body#/id"},
    }
    assert {"V1ZonesZoneIdDeleteZone", "V1ZonesZoneIdApplicationsCreateApplication"} <= set(created)
    # a zone-scoped admin token names the zone in its body
    assert created["V1AdminTokensCreateToken"]["requestBody"] == {"zone_id": "$response.body#/id"}
    # an operation needing another id (an application's) is fed by that id's creator, not the zone's
    assert "V1ZonesZoneIdApplicationsApplicationIdGetApplication" not in created


def test_a_child_keeps_the_parents_path_parameters_and_adds_its_id(document: Doc) -> None:
    created = links(document, "post", "/v1/zones/{zone_id}/applications", "201")
    rotate = created["V1ZonesZoneIdApplicationsApplicationIdRotateSecretRotateSecret"]["parameters"]
    assert rotate == {"path.zone_id": "$request.path.zone_id", "path.application_id": "$response.body#/id"}


def test_a_policy_set_version_feeds_activate_and_simulate_through_the_body(
    document: dict[str, Any],
) -> None:
    created = links(document, "post", SETS + "/{policy_set_id}/versions", "201")
    activate = created["V1ZonesZoneIdPolicySetsPolicySetIdActivateActivate"]
    assert activate["requestBody"] == {"version_id": "$response.body#/id"}
    assert activate["parameters"] == {
        "path.policy_set_id": "$request.path.policy_set_id",
        "path.zone_id": "$request.path.zone_id",
    }
    assert "requestBody" in created["V1ZonesZoneIdPolicySetsPolicySetIdSimulateSimulate"]
    assert "V1ZonesZoneIdPolicySetsPolicySetIdVersionsVersionIdBundleGetBundle" in created


def test_a_list_feeds_its_first_items_id(document: Doc) -> None:
    listed = links(document, "get", "/v1/zones/{zone_id}/teams", "200")
    assert (
        listed["V1ZonesZoneIdTeamsTeamIdDeleteTeam"]["parameters"]["path.team_id"] == "$response.body#/0/id"
    )


def test_every_link_targets_an_operation_of_the_document(document: Doc) -> None:
    operation_ids = {
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
    }
    targets = [
        link["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for response in op.get("responses", {}).values()
        for link in response.get("links", {}).values()
    ]
    assert len(targets) > 100
    assert set(targets) <= operation_ids


def test_every_path_id_has_the_syntax_the_guard_enforces(document: Doc) -> None:
    schemas = [
        parameter["schema"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for parameter in op.get("parameters", [])
        if parameter["in"] == "path"
    ]
    assert len(schemas) > 80
    assert all(schema == {"type": "string", "pattern": PATH_PARAM.pattern} for schema in schemas)
    # query parameters keep their own schemas (one shared `str` schema must not take the pattern)
    limit = document["paths"]["/v1/zones"]["get"]["parameters"]
    assert all("pattern" not in parameter["schema"] for parameter in limit)

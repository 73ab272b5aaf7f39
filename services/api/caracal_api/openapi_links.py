"""Ids in the OpenAPI document: the syntax of every path id, and links derived from the route table
(how an id one operation answers feeds the next).

A client (and schemathesis' stateful phase) learns from them that `POST /v1/zones` answers the
`zone_id` of every `/v1/zones/{zone_id}/...` operation, `POST .../policy-sets/{policy_set_id}/versions`
the `version_id` that `activate` and `simulate` take in their body, and so on. Nothing names a route:
a producer is a POST answering 201 with an `id` (or a GET listing objects with one) at a collection
path P; the id it answers is the `{param}` that follows P in the paths below it, and in the bodies of
operations at P's level that take a field of that name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi.spec import (
    Link,
    OpenAPI,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    Reference,
    Schema,
)
from litestar.plugins import InitPluginProtocol

from caracal.ids import PATH_PARAM

_PARAM = re.compile(r"\{(\w+)\}")
_METHODS = ("get", "put", "post", "patch", "delete")


@dataclass(frozen=True)
class Producer:
    """An operation answering, at `status`, the id `expression` names, which is `param` below `path`."""

    path: str
    operation: Operation
    status: str
    expression: str
    param: str
    creates: bool


def path_params(path: str) -> set[str]:
    return set(_PARAM.findall(path))


def operations(item: PathItem) -> Iterator[tuple[str, Operation]]:
    for method in _METHODS:
        operation = getattr(item, method, None)
        if isinstance(operation, Operation):
            yield method, operation


def resolve(doc: OpenAPI, schema: Any) -> Schema | None:
    """A schema behind at most one `$ref` into components (how Litestar writes bodies)."""
    if isinstance(schema, Reference):
        schemas = doc.components.schemas if doc.components else None
        schema = (schemas or {}).get(schema.ref.rpartition("/")[2])
    return schema if isinstance(schema, Schema) else None


def body_schema(doc: OpenAPI, holder: Any) -> Schema | None:
    content = getattr(holder, "content", None) or {}
    media = next(iter(content.values()), None)
    return resolve(doc, media.schema) if media is not None else None


def has_id(doc: OpenAPI, schema: Schema | None) -> bool:
    return schema is not None and "id" in (schema.properties or {})


def child_param(paths: dict[str, PathItem], path: str) -> str | None:
    """The `{param}` right below a collection path, when the document has one."""
    for other in paths:
        match = re.match(re.escape(path) + r"/\{(\w+)\}", other)
        if match:
            return match.group(1)
    return None


def producers(doc: OpenAPI) -> Iterator[Producer]:
    paths = doc.paths or {}
    for path, item in paths.items():
        param = child_param(paths, path)
        if param is None:
            continue
        if item.post is not None:
            created = item.post.responses.get("201") if item.post.responses else None
            if isinstance(created, OpenAPIResponse) and has_id(doc, body_schema(doc, created)):
                yield Producer(path, item.post, "201", "$response.body#/id", param, creates=True)
        if item.get is not None:
            listed = item.get.responses.get("200") if item.get.responses else None
            schema = body_schema(doc, listed) if isinstance(listed, OpenAPIResponse) else None
            if schema is not None and schema.type == "array" and has_id(doc, resolve(doc, schema.items)):
                yield Producer(path, item.get, "200", "$response.body#/0/id", param, creates=False)


def links_of(doc: OpenAPI, producer: Producer) -> Iterator[tuple[str, Link]]:
    """Below the producer: its id in the path. Beside it (creators only): its id in a body field."""
    known = path_params(producer.path)
    passed = {f"path.{name}": f"$request.path.{name}" for name in sorted(known)}
    below = re.escape(f"{producer.path}/{{{producer.param}}}") + "(/|$)"
    for path, item in (doc.paths or {}).items():
        params = path_params(path)
        for _, operation in operations(item):
            target = operation.operation_id
            if target is None or operation is producer.operation:
                continue
            if re.match(below, path) and params <= known | {producer.param}:
                parameters = {**passed, f"path.{producer.param}": producer.expression}
                yield target, Link(operation_id=target, parameters=_only(parameters, params))
            elif producer.creates and params <= known and takes_field(doc, operation, producer.param):
                body = {producer.param: producer.expression}
                yield target, Link(operation_id=target, parameters=_only(passed, params), request_body=body)


def _only(parameters: dict[str, str], params: set[str]) -> dict[str, str] | None:
    kept = {key: value for key, value in parameters.items() if key.partition(".")[2] in params}
    return kept or None


def takes_field(doc: OpenAPI, operation: Operation, name: str) -> bool:
    schema = body_schema(doc, operation.request_body)
    return schema is not None and name in (schema.properties or {})


def document_path_ids(doc: OpenAPI) -> None:
    """Every path parameter has the id syntax the guard enforces (else 400 `invalid_params`), so a
    client, and the fuzzer, knows what an id looks like."""
    for item in (doc.paths or {}).values():
        for _, operation in operations(item):
            for parameter in operation.parameters or []:
                if isinstance(parameter, Parameter) and parameter.param_in == "path":
                    # a fresh schema: Litestar may share one `str` schema between parameters
                    parameter.schema = Schema(type=OpenAPIType.STRING, pattern=PATH_PARAM.pattern)


def add_links(app: Litestar) -> None:
    """Path ids' syntax, and every producer's links on its answer (idempotent: start-up may run again)."""
    doc = app.openapi_schema
    document_path_ids(doc)
    for producer in producers(doc):
        response = (producer.operation.responses or {})[producer.status]
        assert isinstance(response, OpenAPIResponse)
        response.links = dict(links_of(doc, producer)) or None


class OperationLinks(InitPluginProtocol):
    """Adds the links once the app has built its document (at start-up)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.on_startup.append(add_links)
        return app_config

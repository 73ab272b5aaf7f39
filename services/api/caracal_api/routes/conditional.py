"""What conditional routes share: the ETag a representation answers with, the If-Match header."""

from __future__ import annotations

from typing import Annotated, TypeVar

from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter

from caracal.etags import etag_of
from caracal_api.openapi import problems

T = TypeVar("T")
ETAG = ResponseHeader(
    name="etag",
    description='Strong entity tag: `"<hex SHA-256 of this JSON body>"`; send it as If-Match to write',
    documentation_only=True,
)
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="if-match",
        required=False,
        description="Write only if the object's ETag is one of these (or `*`); 412 otherwise",
    ),
]


def tagged(representation: T) -> Response[T]:
    """The representation with its strong ETag (computed from the bytes the response will carry)."""
    return Response(representation, headers={"etag": etag_of(representation)})


def conditional(*statuses: int) -> dict[int, ResponseSpec]:
    """A conditional write's `responses=`: its own statuses plus 412 `precondition_failed`."""
    return problems(*statuses, 412)

"""The Idempotency-Key header of /v1 POSTs: checked and looked up before the handler, the first
response stored by the handler's own transaction (`Resources.write`), and replays answered here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response

from caracal.domain.idempotency import (
    IdempotencyKey,
    StoredResponse,
    find_response,
    idempotency_key,
    is_valid_key,
    request_fingerprint,
)
from caracal.errors import InvalidInput, Unprocessable

if TYPE_CHECKING:
    from caracal_api.resources import Resources

HEADER = "idempotency-key"
REPLAYED = "idempotent-replayed"
STATE = "idempotency"  # request.scope["state"] entry: the request's IdempotencyKey


async def request_key(request: Request[Any, Any, Any], bearer: str | None) -> IdempotencyKey | None:
    """The request's key, or None: not a POST, no header, or no token to scope it to (public routes)."""
    value = request.headers.get(HEADER)
    caller = request.scope.get("state", {}).get("caller")
    if value is None or request.method != "POST" or caller is None or caller.actor is None or bearer is None:
        return None
    if not is_valid_key(value):
        raise InvalidInput(
            "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters"
        )
    fingerprint = request_fingerprint(
        request.method, request.scope["path"], request.scope.get("query_string", b""), await request.body()
    )
    return idempotency_key(caller.actor.id, bearer, value, fingerprint)


async def replay_if_known(request: Request[Any, Any, Any], bearer: str | None) -> Response[bytes] | None:
    """Before the handler: the stored response of a retried request (one read), else None. `bearer`
    is the caller's token (its cleartext seals the stored body).

    The key rides on the request for the handler's transaction to store the response under it.
    """
    idem = await request_key(request, bearer)
    if idem is None:
        return None
    request.scope["state"][STATE] = idem
    res: Resources = request.app.state.resources
    stored = await res.read(lambda conn: find_response(conn, idem))
    return None if stored is None else replay(request, idem, stored)


def replay(request: Request[Any, Any, Any], idem: IdempotencyKey, stored: StoredResponse) -> Response[bytes]:
    """The first response again, byte for byte; a key used for another request is 422."""
    if stored.fingerprint != idem.fingerprint:
        raise Unprocessable(
            "idempotency_key_reused", "this Idempotency-Key was used for a different request in the last 24 h"
        )
    request.scope["state"]["audited"] = True  # the first request's audit row stands for its retries
    return Response(
        stored.body, status_code=stored.status, media_type=stored.content_type, headers={REPLAYED: "true"}
    )


async def replay_after_failure(request: Request[Any, Any, Any], res: Resources) -> Response[bytes] | None:
    """After a keyed write failed: if a duplicate committed meanwhile, its response (one read)."""
    idem: IdempotencyKey | None = request.scope["state"].get(STATE)
    if idem is None:
        return None
    stored = await res.read(lambda conn: find_response(conn, idem))
    return None if stored is None else replay(request, idem, stored)

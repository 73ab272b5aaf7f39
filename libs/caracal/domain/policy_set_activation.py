"""Activation: one active policy-set version per zone, set atomically with the STS's invalidation.

A zone's activations (and deletes of its active set) take turns on one advisory lock, so the
clearing of the other sets' bindings, this set's binding and the `caracal.policy.invalidate` entry
commit together, and the STS's `LIMIT 1` (no ORDER BY) can only ever find one row (DESIGN.md, A1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import POLICY_ACTIVATION_PREFIX
from caracal.domain.context import Caller
from caracal.domain.policy_set_versions import checked_version
from caracal.domain.wire import LenientBody, Name, Resource
from caracal.errors import Conflict, NotFound
from caracal.etags import PreconditionFailed, etag_of, if_match_holds
from caracal.events import POLICY_INVALIDATE, Scalar
from caracal.outbox import record_event

if TYPE_CHECKING:  # policy_sets imports this module (deleting an active set clears its binding)
    from caracal.domain.policy_sets import PolicySet

_ZONE_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_SHARE_VERSIONS = text(
    "SELECT count(*) FROM (SELECT id FROM policy_versions WHERE id = ANY(:ids) FOR SHARE) AS referenced"
)
_CLEAR_OTHERS = text(
    """
    UPDATE policy_set_bindings SET active_version_id = NULL, shadow_version_id = NULL, updated_at = now()
     WHERE zone_id = :zone_id AND policy_set_id <> :set_id
       AND (active_version_id IS NOT NULL OR shadow_version_id IS NOT NULL)
    """
)
_BIND = text(
    """
    UPDATE policy_set_bindings SET active_version_id = :version_id, shadow_version_id = :shadow_id,
           updated_at = now()
     WHERE zone_id = :zone_id AND policy_set_id = :set_id
    RETURNING policy_set_id
    """
)
_CLEAR_OWN = text(
    """
    UPDATE policy_set_bindings SET active_version_id = NULL, shadow_version_id = NULL, updated_at = now()
     WHERE zone_id = :zone_id AND policy_set_id = :set_id
       AND (active_version_id IS NOT NULL OR shadow_version_id IS NOT NULL)
    RETURNING policy_set_id
    """
)
NOT_ACTIVE_ETAG = '"none"'


class Activation(LenientBody):
    version_id: Name
    shadow_version_id: Name | None = None


class ActivationAccepted(Resource):
    activated: bool
    version_id: str
    shadow_version_id: str | None
    outbox_id: str
    status_url: str


def activation_etag(active_version_id: str | None) -> str:
    """The tag of a set's activation state, its active version: activation-status answers it, and
    If-Match on activation takes it as well as the set's own (representation) ETag."""
    return f'"{active_version_id}"' if active_version_id else NOT_ACTIVE_ETAG


async def _require_if_match(if_match: str | None, current_set: Callable[[], Awaitable[PolicySet]]) -> None:
    """Under the zone lock: If-Match holds the active-version tag or the set's GET ETag (whose body
    carries active_version_id, so it moves with every activation), else 412."""
    if if_match is None:
        return
    current = await current_set()
    if not if_match_holds(if_match, activation_etag(current.active_version_id), etag_of(current)):
        raise PreconditionFailed(
            "precondition_failed", "the set's active version moved since If-Match was read"
        )


def _component(value: str) -> str:
    return quote(value, safe="!~*'()")  # what encodeURIComponent leaves as it is


def status_url(zone_id: str, set_id: str, version_id: str, outbox_id: str) -> str:
    return (
        f"/v1/zones/{_component(zone_id)}/policy-sets/{_component(set_id)}/activation-status"
        f"?version_id={_component(version_id)}&outbox_id={_component(outbox_id)}"
    )


async def lock_zone_policy(conn: AsyncConnection, zone_id: str) -> None:
    await conn.execute(_ZONE_LOCK, {"key": POLICY_ACTIVATION_PREFIX + zone_id})


async def activate(
    conn: AsyncConnection,
    zone_id: str,
    set_id: str,
    data: Activation,
    *,
    if_match: str | None,
    caller: Caller,
    current_set: Callable[[], Awaitable[PolicySet]],
) -> ActivationAccepted:
    """The contract's error order: version, its contract, shadow, its contract, then the binding."""
    active = await checked_version(conn, zone_id, set_id, data.version_id, "version_not_found")
    shadow = None
    if data.shadow_version_id is not None:
        shadow = await checked_version(
            conn, zone_id, set_id, data.shadow_version_id, "shadow_version_not_found", shadow=True
        )
    await lock_zone_policy(conn, zone_id)
    await _require_if_match(if_match, current_set)
    referenced = sorted({*active.policy_version_ids, *(shadow.policy_version_ids if shadow else ())})
    shared = (await conn.execute(_SHARE_VERSIONS, {"ids": referenced})).scalar_one()
    if shared != len(referenced):
        raise Conflict("referenced_policy_version_missing", "a policy version the manifest names is gone")
    await _bind(conn, zone_id, set_id, active.id, shadow.id if shadow else None)
    payload: dict[str, Scalar] = {
        "zone_id": zone_id,
        "policy_set_id": set_id,
        "policy_set_version_id": active.id,
    }
    if shadow is not None:
        payload["shadow_version_id"] = shadow.id
    outbox_id = await record_event(conn, POLICY_INVALIDATE, payload, request_id=caller.request_id)
    return ActivationAccepted(
        activated=True,
        version_id=active.id,
        shadow_version_id=shadow.id if shadow else None,
        outbox_id=outbox_id,
        status_url=status_url(zone_id, set_id, active.id, outbox_id),
    )


async def _bind(
    conn: AsyncConnection, zone_id: str, set_id: str, version_id: str, shadow_id: str | None
) -> None:
    """Others first: the one-active-per-zone index is checked row by row, not at commit."""
    ids = {"zone_id": zone_id, "set_id": set_id}
    await conn.execute(_CLEAR_OTHERS, ids)
    bound = await conn.execute(_BIND, {**ids, "version_id": version_id, "shadow_id": shadow_id})
    if bound.first() is None:
        raise NotFound("policy_set_binding_not_found", f"policy set {set_id} has no binding in this zone")


async def clear_binding_of_deleted_set(
    conn: AsyncConnection, zone_id: str, set_id: str, caller: Caller
) -> None:
    """A deleted set stops being active: its binding is cleared and the STS told to reload."""
    cleared = await conn.execute(_CLEAR_OWN, {"zone_id": zone_id, "set_id": set_id})
    if cleared.first() is None:
        return
    payload: dict[str, Any] = {"zone_id": zone_id, "policy_set_id": set_id, "reason": "policy_set_deleted"}
    await record_event(conn, POLICY_INVALIDATE, payload, request_id=caller.request_id)

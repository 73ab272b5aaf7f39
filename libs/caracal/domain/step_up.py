"""Step-up challenges (the STS writes them): zone-scoped reads, and satisfying one exactly once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import BindParameter, Text, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.sessions import sessions
from caracal.db.tables.step_up import step_up_challenges as challenges
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import NO_NUL, LenientBody, Resource, Timestamp
from caracal.errors import Conflict, NotFound
from caracal.timefmt import iso_ms

ChallengeType = Literal["human_approval", "mfa", "software_attestation"]
ApproverId = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_NUL)]


class ChallengeSatisfy(LenientBody):
    approver_subject_id: ApproverId


class StepUpChallenge(Resource):
    id: str
    zone_id: str
    session_id: str | None
    challenge_type: ChallengeType
    metadata_json: dict[str, Any]
    created_at: Timestamp
    expires_at: Timestamp
    satisfied_at: Timestamp | None
    approver_subject_id: str | None


class SatisfiedChallenge(Resource):
    id: str
    satisfied_at: Timestamp
    approver_subject_id: str


_COLUMNS = (
    challenges.c.id,
    challenges.c.zone_id,
    challenges.c.session_id,
    challenges.c.challenge_type,
    challenges.c.metadata_json,
    challenges.c.created_at,
    challenges.c.expires_at,
    challenges.c.satisfied_at,
    challenges.c.approver_subject_id,
)
_IN_ZONE = challenges.c.zone_id == bindparam("zone")
_ONE = (_IN_ZONE, challenges.c.id == bindparam("challenge_id"))
_GET = Query(select(*_COLUMNS).where(*_ONE))
_PAGE = PagedQuery(select(*_COLUMNS).where(_IN_ZONE), challenges.c.created_at, challenges.c.id)
_EXISTS = select(challenges.c.id).where(*_ONE)

# Every rule of CONTRACT.md §4.10 in the UPDATE's own WHERE: the row lock it takes makes a second
# approver wait, and Postgres re-checks the WHERE against the row the first one committed, where
# satisfied_at is no longer null, so exactly one approver wins.
_APPROVER: BindParameter[str] = bindparam("approver", type_=Text)
_SESSION_ALLOWS = exists().where(
    sessions.c.zone_id == challenges.c.zone_id,
    sessions.c.id == challenges.c.session_id,
    or_(sessions.c.subject_id.is_(None), sessions.c.subject_id != _APPROVER),
)
_SATISFY = (
    update(challenges)
    .where(*_ONE, challenges.c.satisfied_at.is_(None), challenges.c.expires_at > func.now(), _SESSION_ALLOWS)
    .values(satisfied_at=func.now(), approver_subject_id=_APPROVER)
    .returning(challenges.c.id, challenges.c.satisfied_at, challenges.c.approver_subject_id)
)


def challenge_wire(row: Any) -> StepUpChallenge:
    return StepUpChallenge(
        id=row.id,
        zone_id=row.zone_id,
        session_id=row.session_id,
        challenge_type=row.challenge_type,
        metadata_json=row.metadata_json if isinstance(row.metadata_json, dict) else {},
        created_at=iso_ms(row.created_at),
        expires_at=iso_ms(row.expires_at),
        satisfied_at=iso_ms(row.satisfied_at),
        approver_subject_id=row.approver_subject_id,
    )


def challenge_not_found(challenge_id: str) -> NotFound:
    return NotFound("challenge_not_found", f"step-up challenge {challenge_id} does not exist")


async def list_challenges(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[StepUpChallenge]:
    return listing(await _PAGE.rows(conn, page, zone=zone_id), page, challenge_wire)


async def get_challenge(conn: AsyncConnection, zone_id: str, challenge_id: str) -> StepUpChallenge:
    row = await _GET.first(conn, {"zone": zone_id, "challenge_id": challenge_id})
    if row is None:
        raise challenge_not_found(challenge_id)
    return challenge_wire(row)


async def satisfy_challenge(
    conn: AsyncConnection, zone_id: str, challenge_id: str, data: ChallengeSatisfy, caller: Caller
) -> SatisfiedChallenge:
    """Satisfied once, by an approver who is not the session's own subject, before it expires."""
    ids = {"zone": zone_id, "challenge_id": challenge_id}
    row = (await conn.execute(_SATISFY, {**ids, "approver": data.approver_subject_id})).first()
    if row is None:
        if (await conn.execute(_EXISTS, ids)).first() is None:
            raise challenge_not_found(challenge_id)
        raise Conflict(
            "challenge_not_satisfiable",
            "the challenge is satisfied already, expired, has no session, or the approver is its subject",
        )
    await entity_changed(conn, "step_up_challenge.satisfied", zone_id, challenge_id, caller)
    return SatisfiedChallenge(
        id=row.id, satisfied_at=iso_ms(row.satisfied_at), approver_subject_id=row.approver_subject_id
    )

"""Who is acting and on behalf of which request: passed to every domain operation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    name: str
    scope: str
    zone_id: str | None
    capability: str

    @property
    def is_global(self) -> bool:
        return self.scope == "global"


@dataclass(frozen=True, slots=True)
class Caller:
    actor: Actor | None = None
    request_id: str | None = None

    @property
    def actor_name(self) -> str:
        return self.actor.name if self.actor else "system"

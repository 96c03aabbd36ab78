"""Who did it: the actor every event records, spelt once.

`user:<id>` (a signed-in person), `key:<id>` (a token acting on itself), `operator:<name>`
(the command line or an operator route), `system` (the sweeper).
"""

from __future__ import annotations

from typing import Final, Literal
from uuid import UUID

ActorKind = Literal["user", "key", "operator", "system"]
SYSTEM: Final = "system"
_KINDS: Final[tuple[ActorKind, ...]] = ("user", "key", "operator")


def user(user_id: str) -> str:
    """The actor for a signed-in user."""
    return f"user:{user_id}"


def key_itself(key_id: UUID | str) -> str:
    """The actor for a key acting on itself (a token revoking itself)."""
    return f"key:{key_id}"


def operator(name: str) -> str:
    """The actor for an operator."""
    return f"operator:{name}"


def kind_and_id(actor: str) -> tuple[ActorKind | None, str | None]:
    """An actor as its kind and id; (None, None) for one of no known kind."""
    if actor == SYSTEM:
        return "system", None
    kind, colon, actor_id = actor.partition(":")
    for known in _KINDS:
        if kind == known and colon and actor_id:
            return known, actor_id
    return None, None

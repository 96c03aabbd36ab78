"""Who is calling: a key with its scopes, or a signed-in user with all of them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from domain.actors import key_itself, user
from domain.scopes import ALL_SCOPES


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller of one request."""

    user_id: str
    scopes: frozenset[str]
    via: Literal["token", "session"]
    key_id: UUID | None = None
    # When the calling key expires (None: never, or a session): every answer says it.
    expires_at: datetime | None = None

    @classmethod
    def session(cls, user_id: str) -> Principal:
        return cls(user_id=user_id, scopes=ALL_SCOPES, via="session")

    @property
    def actor(self) -> str:
        """The actor recorded on events this caller causes."""
        if self.via == "token":
            assert self.key_id is not None
            return key_itself(self.key_id)
        return user(self.user_id)

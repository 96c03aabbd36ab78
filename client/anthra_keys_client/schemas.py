"""What the ledger answers, as typed values: the client's own copy of its wire schema.

Answers are decoded leniently: a field the ledger adds later is ignored, and a status or code
this version does not know is kept as text, so that an older client goes on working.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from anthra_keys_client.redaction import shown


class WhoAmI(msgspec.Struct, frozen=True):
    """The caller: the user it acts for, its key and what it may do."""

    user_id: str
    via: str
    key_id: str | None
    scopes: tuple[str, ...]


class Key(msgspec.Struct, frozen=True):
    """A key as its owner sees it: never the token, only its first 12 characters."""

    id: str
    prefix: str
    name: str
    scopes: tuple[str, ...]
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class RotatedKey(msgspec.Struct, frozen=True):
    """The key that took over from a rotated one, with its token: shown this once."""

    id: str
    token: str
    prefix: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    predecessor_id: str
    predecessor_retires_at: datetime | None = None

    def __repr__(self) -> str:
        # The one value that holds a whole token must not print it by accident.
        return (
            f"RotatedKey(id={self.id!r}, token={shown(self.token)!r}, name={self.name!r}, "
            f"scopes={self.scopes!r}, expires_at={self.expires_at!r}, "
            f"predecessor_id={self.predecessor_id!r}, "
            f"predecessor_retires_at={self.predecessor_retires_at!r})"
        )

    __str__ = __repr__


class Verification(msgspec.Struct, frozen=True):
    """Whether a token may do what was asked; who holds it only for the verify secret's holder."""

    valid: bool
    code: str
    key_id: str | None = None
    owner_id: str | None = None
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    missing_scopes: tuple[str, ...] | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every refusal."""

    error: str = ""
    error_description: str = ""
    field: str | None = None


class KeyList(msgspec.Struct, frozen=True):
    keys: list[Key]


class RotateRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    grace_seconds: int = 0
    expires_in_days: int | None = None


class VerifyRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    token: str
    scopes: list[str] = []
    as_of: datetime | None = None

    def __repr__(self) -> str:
        return f"VerifyRequest(token={shown(self.token)!r}, scopes={self.scopes!r})"

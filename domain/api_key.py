"""The ApiKey aggregate: a personal access token's whole life, as events."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Final, Literal, TypeVar, get_args
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import token
from domain.actors import SYSTEM
from domain.errors import InvalidInput, KeyNotActive
from domain.scopes import normalise

MIN_EXPIRY_DAYS = 1
MAX_EXPIRY_DAYS = 3650
MAX_NAME_LENGTH = 100
MAX_REASON_LENGTH = 200
# Unicode categories refused in text people type: every "other" (control, format, surrogate,
# private use, unassigned) and the line and paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

Status = Literal["active", "revoked", "expired"]
# The events of a key's life, by the names its history and audit trail give them.
EventType = Literal["Minted", "ScopesSet", "Revoked", "Expired"]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
ACTIVE: Final = "active"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"
# Instants as datetimes (the aggregate, the timeline) or epoch seconds (the index's hot path).
Instant = TypeVar("Instant", datetime, float)


def key_status(revoked: bool, expired: bool, expires: Instant | None, now: Instant) -> Status:
    """Revoked and expired are terminal; expiry holds from its instant, swept or not."""
    if revoked:
        return REVOKED
    if expired or (expires is not None and now >= expires):
        return EXPIRED
    return ACTIVE


def check_name(name: str) -> str:
    """A name is 1-100 printable characters, trimmed, and never a token."""
    trimmed = name.strip()
    if not trimmed:
        raise InvalidInput("name", "a key needs a name")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise InvalidInput("name", f"at most {MAX_NAME_LENGTH} characters")
    check_text("name", trimmed)
    return trimmed


def check_reason(reason: str) -> str:
    """A revocation's reason is up to 200 printable characters, trimmed, and never a token."""
    trimmed = reason.strip()
    if len(trimmed) > MAX_REASON_LENGTH:
        raise InvalidInput("reason", f"at most {MAX_REASON_LENGTH} characters")
    check_text("reason", trimmed)
    return trimmed


def check_text(field: str, text: str) -> None:
    """Text a person typed, kept in events forever: printable, on one line, and no token.

    Control and format characters (zero-width, bidirectional overrides) and line separators would
    let a name pass for another or split a log line; a pasted token would be stored for good.
    """
    if any(unicodedata.category(c) in _UNPRINTABLE for c in text):
        raise InvalidInput(
            field, "no control, format, private-use, unassigned or line-separator characters"
        )
    if token.holds_token(text):
        raise InvalidInput(
            field,
            f"it holds a token: at most its first {token.DISPLAY_PREFIX_LENGTH} characters may be "
            "written anywhere; revoke the token if it was pasted somewhere it should not be",
        )


def check_expiry(expires_in_days: int | None, at: datetime) -> datetime | None:
    """Expiry is 1-3650 whole days from now, or none."""
    if expires_in_days is None:
        return None
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int):
        raise InvalidInput("expires_in_days", "a whole number of days, or null")
    if not MIN_EXPIRY_DAYS <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(
            "expires_in_days",
            f"between {MIN_EXPIRY_DAYS} and {MAX_EXPIRY_DAYS} days, or null for no expiry",
        )
    return at + timedelta(days=expires_in_days)


class ApiKey(Aggregate):
    """A key: who owns it, what it may do, and whether it still may."""

    class Minted(Aggregate.Created):
        """A key was minted; its token's sha256 is all of the token the ledger keeps."""

        owner_id: str
        name: str
        token_sha256: str
        prefix: str
        scopes: list[str]
        expires_at: datetime | None
        actor: str
        at: datetime
        context: dict[str, str] | None = None

    class ScopesSet(Aggregate.Event):
        """The key's scopes were replaced; the previous ones are kept for diffs."""

        scopes: list[str]
        previous_scopes: list[str]
        actor: str
        at: datetime
        context: dict[str, str] | None = None

    class Revoked(Aggregate.Event):
        """The key was revoked: terminal."""

        actor: str
        reason: str
        at: datetime
        context: dict[str, str] | None = None

    class Expired(Aggregate.Event):
        """The key's expiry instant passed: terminal."""

        expires_at: datetime
        actor: str
        at: datetime
        context: dict[str, str] | None = None

    @event(Minted)
    def __init__(
        self,
        id: UUID,
        owner_id: str,
        name: str,
        token_sha256: str,
        prefix: str,
        scopes: list[str],
        expires_at: datetime | None,
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
    ) -> None:
        self.owner_id = owner_id
        self.name = name
        self.token_sha256 = token_sha256
        self.prefix = prefix
        self.scopes = list(scopes)
        self.expires_at = expires_at
        self.minted_at = at
        self.revoked_at: datetime | None = None
        self.expired_at: datetime | None = None

    @classmethod
    def mint(
        cls,
        *,
        key_id: UUID,
        owner_id: str,
        name: str,
        token_sha256: str,
        prefix: str,
        scopes: list[str],
        expires_in_days: int | None,
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
    ) -> ApiKey:
        """Check every rule, then record Minted."""
        if not owner_id:
            raise InvalidInput("owner_id", "a key needs an owner")
        if token.holds_token(owner_id):
            raise InvalidInput("owner_id", "an owner id never holds a token")
        return cls(
            id=key_id,
            owner_id=owner_id,
            name=check_name(name),
            token_sha256=token_sha256,
            prefix=prefix,
            scopes=normalise(scopes),
            expires_at=check_expiry(expires_in_days, at),
            actor=actor,
            at=at,
            context=context,
        )

    def status(self, now: datetime) -> Status:
        """Active, revoked or expired at an instant (see key_status)."""
        return key_status(
            self.revoked_at is not None, self.expired_at is not None, self.expires_at, now
        )

    def set_scopes(
        self, scopes: list[str], actor: str, at: datetime, context: dict[str, str] | None = None
    ) -> bool:
        """Replace the scopes of an active key; answers whether anything changed."""
        status = self.status(at)
        if status != ACTIVE:
            raise KeyNotActive(str(self.id), status)
        new = normalise(scopes)
        if new == self.scopes:
            return False
        self._scopes_set(
            scopes=new, previous_scopes=list(self.scopes), actor=actor, at=at, context=context
        )
        return True

    @event(ScopesSet)
    def _scopes_set(
        self,
        scopes: list[str],
        previous_scopes: list[str],
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
    ) -> None:
        self.scopes = list(scopes)

    def revoke(
        self, actor: str, reason: str, at: datetime, context: dict[str, str] | None = None
    ) -> bool:
        """Revoke; a key already revoked or expired is left as it is (idempotent)."""
        reason = check_reason(reason)
        if self.revoked_at is not None or self.expired_at is not None:
            return False
        self._revoked(actor=actor, reason=reason, at=at, context=context)
        return True

    @event(Revoked)
    def _revoked(
        self, actor: str, reason: str, at: datetime, context: dict[str, str] | None = None
    ) -> None:
        self.revoked_at = at

    def expire(self, at: datetime) -> bool:
        """Record that the expiry instant has passed, once; nothing for revoked keys."""
        if self.revoked_at is not None or self.expired_at is not None:
            return False
        if self.expires_at is None or at < self.expires_at:
            return False
        self._expired(expires_at=self.expires_at, actor=SYSTEM, at=at)
        return True

    @event(Expired)
    def _expired(
        self,
        expires_at: datetime,
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
    ) -> None:
        self.expired_at = expires_at

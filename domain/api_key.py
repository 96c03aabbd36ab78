"""The ApiKey aggregate: a personal access token's whole life, as events."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Final, Literal, TypeVar, get_args
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import token
from domain.actors import SYSTEM
from domain.errors import InvalidInput, KeyAlreadyRotated, KeyNotActive
from domain.scopes import normalise

MIN_EXPIRY_DAYS = 1
MAX_EXPIRY_DAYS = 3650
MAX_NAME_LENGTH = 100
MAX_REASON_LENGTH = 200
# A rotated key lives on beside its successor for at most a day (never past its own expiry).
MAX_GRACE_SECONDS = 86_400
# Unicode categories refused in text people type: every "other" (control, format, surrogate,
# private use, unassigned) and the line and paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

Status = Literal["active", "suspended", "blocked", "rotated", "revoked", "expired"]
# The events of a key's life, by the names its history and audit trail give them.
EventType = Literal["Minted", "ScopesSet", "Revoked", "Expired", "Rotated", "Suspended", "Resumed"]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
BLOCKED: Final = "blocked"
ROTATED: Final = "rotated"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"
# Revoked, expired and rotated (past the grace) are for good; suspended and blocked can end.
TERMINAL: Final = frozenset({REVOKED, EXPIRED, ROTATED})
# Instants as datetimes (the aggregate, the timeline) or epoch seconds (the index's hot path).
Instant = TypeVar("Instant", datetime, float)


def key_status(
    revoked: bool,
    expired: bool,
    expires: Instant | None,
    now: Instant,
    *,
    retires: Instant | None = None,
    suspended: bool = False,
    blocked: bool = False,
) -> Status:
    """The one status rule. Revoked, expired and rotated are terminal: expiry holds from its
    instant, swept or not, and a rotated key from the end of its grace period. A suspended key
    (its owner's choice) and a blocked one (the lifetime policy's) can be used again."""
    if revoked:
        return REVOKED
    if expired or (expires is not None and now >= expires):
        return EXPIRED
    if retires is not None and now >= retires:
        return ROTATED
    if suspended:
        return SUSPENDED
    if blocked:
        return BLOCKED
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
        predecessor_id: UUID | None = None

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

    class Rotated(Aggregate.Event):
        """A successor was minted in the key's place; the key stops at `retires_at`."""

        successor_id: UUID
        retires_at: datetime
        actor: str
        at: datetime
        context: dict[str, str] | None = None

    class Suspended(Aggregate.Event):
        """The key is refused until it is resumed."""

        actor: str
        at: datetime
        reason: str = ""
        context: dict[str, str] | None = None

    class Resumed(Aggregate.Event):
        """A suspended key is accepted again."""

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
        predecessor_id: UUID | None = None,
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
        self.predecessor_id = predecessor_id
        self.successor_id: UUID | None = None
        self.retires_at: datetime | None = None
        self.suspended = False

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
        predecessor_id: UUID | None = None,
    ) -> ApiKey:
        """Check every rule, then record Minted (naming the key it succeeds, for a rotation)."""
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
            predecessor_id=predecessor_id,
        )

    def status(self, now: datetime) -> Status:
        """The key's status at an instant, the lifetime policy aside (see key_status)."""
        return key_status(
            self.revoked_at is not None,
            self.expired_at is not None,
            self.expires_at,
            now,
            retires=self.retires_at,
            suspended=self.suspended,
        )

    @property
    def lifetime(self) -> timedelta | None:
        """From minting to expiry; None for a key that never expires."""
        return None if self.expires_at is None else self.expires_at - self.minted_at

    def set_scopes(
        self, scopes: list[str], actor: str, at: datetime, context: dict[str, str] | None = None
    ) -> bool:
        """Replace the scopes of a key not ended (a suspended one included); answers whether
        anything changed."""
        status = self.status(at)
        if status in TERMINAL:
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
        """Revoke; a key already revoked, or whose expiry was recorded, is left as it is
        (idempotent)."""
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
        """Record that the expiry instant has passed, once; nothing for a key that ended before
        (revoked, or rotated and retired before its expiry)."""
        if self.revoked_at is not None or self.expired_at is not None:
            return False
        if self.expires_at is None or at < self.expires_at:
            return False
        if self.retires_at is not None and self.retires_at < self.expires_at:
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

    def rotate(
        self,
        successor_id: UUID,
        grace: timedelta,
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
        *,
        replacing: bool = False,
    ) -> datetime:
        """Name the successor minted in this key's place; the key stops at the end of `grace`,
        never later than its own expiry. `replacing` retries a rotation whose successor's token
        was never received: the new successor takes its place, the stop stays as it was.
        Answers when the key stops."""
        status = self.status(at)
        if status in TERMINAL or status == SUSPENDED:
            raise KeyNotActive(str(self.id), status, "rotated")
        if not timedelta(0) <= grace <= timedelta(seconds=MAX_GRACE_SECONDS):
            raise InvalidInput("grace_seconds", f"between 0 and {MAX_GRACE_SECONDS} seconds")
        if self.successor_id is not None and not replacing:
            raise KeyAlreadyRotated(str(self.id), str(self.successor_id))
        retires_at = self.retires_at if replacing and self.retires_at is not None else at + grace
        if self.expires_at is not None:
            retires_at = min(retires_at, self.expires_at)
        self._rotated(
            successor_id=successor_id, retires_at=retires_at, actor=actor, at=at, context=context
        )
        return retires_at

    @event(Rotated)
    def _rotated(
        self,
        successor_id: UUID,
        retires_at: datetime,
        actor: str,
        at: datetime,
        context: dict[str, str] | None = None,
    ) -> None:
        self.successor_id = successor_id
        self.retires_at = retires_at

    def suspend(
        self, actor: str, at: datetime, reason: str = "", context: dict[str, str] | None = None
    ) -> bool:
        """Refuse the key until it is resumed; a suspended key is left as it is (idempotent)."""
        reason = check_reason(reason)
        status = self.status(at)
        if status in TERMINAL:
            raise KeyNotActive(str(self.id), status, "suspended")
        if self.suspended:
            return False
        self._suspended(actor=actor, at=at, reason=reason, context=context)
        return True

    @event(Suspended)
    def _suspended(
        self, actor: str, at: datetime, reason: str = "", context: dict[str, str] | None = None
    ) -> None:
        self.suspended = True

    def resume(self, actor: str, at: datetime, context: dict[str, str] | None = None) -> bool:
        """Accept a suspended key again; a key not suspended is left as it is (idempotent)."""
        status = self.status(at)
        if status in TERMINAL:
            raise KeyNotActive(str(self.id), status, "resumed")
        if not self.suspended:
            return False
        self._resumed(actor=actor, at=at, context=context)
        return True

    @event(Resumed)
    def _resumed(self, actor: str, at: datetime, context: dict[str, str] | None = None) -> None:
        self.suspended = False

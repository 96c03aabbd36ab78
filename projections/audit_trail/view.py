"""The audit trail's rows, queries and view: one row per stored event, chained, never any part
of a token."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking, TrackingRecorder

# Store positions are 64-bit signed integers in SQLite and PostgreSQL alike.
MAX_POSITION = 2**63 - 1
MAX_PAGE = 500


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """One event of one key, as security and support staff read it; never any part of a token."""

    position: int
    key_id: UUID
    owner_id: str
    type: str
    at: datetime
    actor: str
    event: dict[str, Any]
    chain: str


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which rows to read: filters, order, and a cursor (a position) to page from."""

    owner_id: str | None = None
    key_id: UUID | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    newest_first: bool = True
    cursor: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.cursor is not None and not 0 <= self.cursor <= MAX_POSITION:
            raise ValueError("a cursor is a store position, 0 to 2**63 - 1")

    def admits(self, row: AuditRow) -> bool:
        """Whether a row passes the filters and lies beyond the cursor (the order is the view's)."""
        if self.owner_id is not None and row.owner_id != self.owner_id:
            return False
        if self.key_id is not None and row.key_id != self.key_id:
            return False
        if self.types and row.type not in self.types:
            return False
        if self.since is not None and row.at < as_utc(self.since):
            return False
        if self.until is not None and row.at >= as_utc(self.until):
            return False
        if self.cursor is not None:
            return row.position < self.cursor if self.newest_first else row.position > self.cursor
        return True


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    """What verifying the audit chain against the store found."""

    ok: bool
    checked: int
    head_position: int
    head_chain: str
    first_bad_position: int | None = None
    reason: str = ""


class AuditTrailBroken(Exception):
    """The audit view's last row is not at its tracked position; verify the chain."""


class AuditView(TrackingRecorder, ABC):
    """Where audit rows are kept, with the store position they reached."""

    @abstractmethod
    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        """Write the rows and the tracking record in one transaction; IntegrityError if taken."""

    @abstractmethod
    def head(self) -> tuple[int, str] | None:
        """The last row's position and chain, or None before the first."""

    @abstractmethod
    def owner_of(self, key_id: UUID) -> str | None:
        """The owner recorded for a key, or None if the view has no row of it."""

    @abstractmethod
    def query(self, q: AuditQuery) -> list[AuditRow]:
        """Rows that match, in the order and from the cursor the query asks for."""

    @abstractmethod
    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        """Rows after a position, oldest first, for export and verification."""


def as_utc(at: datetime) -> datetime:
    """An aware instant in UTC; a naive one is taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)

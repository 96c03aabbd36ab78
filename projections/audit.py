"""The audit trail: one row per stored event, linked by a hash chain over the stored bytes."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import singledispatch
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Mapper,
    Notification,
    Tracking,
    TrackingRecorder,
)

from domain.api_key import ApiKey

GENESIS = "0" * 64
# Store positions are 64-bit signed integers in SQLite and PostgreSQL alike.
MAX_POSITION = 2**63 - 1
MAX_PAGE = 500
# Digits, as many as the largest bound has (2**63 - 1 has 19): int() never reads a huge number.
_DIGITS = re.compile("[0-9]{1,19}")
# Owners never change, so a cache is always right; bounded so that a long catch-up over
# millions of keys does not hold them all.
_OWNER_CACHE_SIZE = 100_000


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


def position(text: str) -> int:
    """A store position (a cursor, an export's start) read from text; raises ValueError. The one
    reading of the API's `cursor` and `after` and of the command line's."""
    return whole_number(text, 0, MAX_POSITION)


def whole_number(text: str, low: int, high: int) -> int:
    """Decimal ASCII digits from low to high: no sign, space, exponent, fraction or other digits
    ("²" and "٣" are digits to str.isdigit); raises ValueError."""
    if not _DIGITS.fullmatch(text) or not low <= (number := int(text)) <= high:
        raise ValueError(f"a whole number from {low} to {high}, in decimal digits")
    return number


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


def canonical(n: Notification) -> bytes:
    """The bytes a chain link covers: the notification's identity and its stored state."""
    return f"{n.id}\n{n.topic}\n{n.originator_id}\n{n.originator_version}\n".encode() + n.state


def link(previous: str, n: Notification) -> str:
    """The chain value at a notification, from the value before it."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical(n)).hexdigest()


# What each event type contributes to its row: an allow-list, so that a field added to an
# event later (a token, say) never reaches the audit trail without a decision here.


@singledispatch
def event_fields(e: Any) -> dict[str, Any]:
    """An event type the audit trail does not know yet: its context and version only."""
    return {}


@event_fields.register
def _minted(e: ApiKey.Minted) -> dict[str, Any]:
    # token_sha256 stays out: a digest is enough to test a leaked token against.
    return {"name": e.name, "prefix": e.prefix, "scopes": e.scopes, "expires_at": e.expires_at}


@event_fields.register
def _scopes_set(e: ApiKey.ScopesSet) -> dict[str, Any]:
    return {"scopes": e.scopes, "previous_scopes": e.previous_scopes}


@event_fields.register
def _revoked(e: ApiKey.Revoked) -> dict[str, Any]:
    return {"reason": e.reason}


@event_fields.register
def _expired(e: ApiKey.Expired) -> dict[str, Any]:
    return {"expires_at": e.expires_at}


class _RowMaker:
    """Turns notifications into audit rows, finding each key's owner once."""

    def __init__(self, mapper: Mapper[UUID], view: AuditView) -> None:
        self.mapper = mapper
        self.view = view
        self._owners: dict[UUID, str] = {}

    def row(self, n: Notification, chain: str) -> AuditRow:
        e: Any = self.mapper.to_domain_event(n)
        key_id = e.originator_id
        if isinstance(e, ApiKey.Minted):
            owner_id = e.owner_id
            self._remember(key_id, owner_id)
        else:
            owner_id = self._owner(key_id)
        fields = event_fields(e)
        fields["context"] = getattr(e, "context", None)
        fields["version"] = e.originator_version
        return AuditRow(
            position=n.id,
            key_id=key_id,
            owner_id=owner_id,
            type=type(e).__name__,
            at=as_utc(getattr(e, "at", e.timestamp)),
            actor=getattr(e, "actor", ""),
            event=msgspec.to_builtins(fields),
            chain=chain,
        )

    def _owner(self, key_id: UUID) -> str:
        owner_id = self._owners.get(key_id)
        if owner_id is None:
            owner_id = self.view.owner_of(key_id) or ""
            if owner_id:
                self._remember(key_id, owner_id)
        return owner_id

    def _remember(self, key_id: UUID, owner_id: str) -> None:
        if len(self._owners) >= _OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners[key_id] = owner_id


class AuditProjector:
    """Writes the audit rows of stored events, each position exactly once, chained in order."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        application_name: str,
        view: AuditView,
    ) -> None:
        self.recorder = recorder
        self.application_name = application_name
        self.view = view
        self._rows = _RowMaker(mapper, view)

    def catch_up(self, batch: int = 500) -> int:
        """Project every stored event the view has not recorded; returns how many this wrote."""
        written = 0
        while True:
            position, chain = self._start()
            notifications = self.recorder.select_notifications(
                start=position, limit=batch, inclusive_of_start=False
            )
            if not notifications:
                return written
            rows = []
            for n in notifications:
                chain = link(chain, n)
                rows.append(self._rows.row(n, chain))
            try:
                self.view.append(rows, Tracking(self.application_name, notifications[-1].id))
            except IntegrityError:
                # Another process wrote these positions first: go on from its head. If nobody
                # moved the head, the conflict is something else and must not loop forever.
                if (self.view.max_tracking_id(self.application_name) or 0) == position:
                    raise
                continue
            written += len(rows)
            if len(notifications) < batch:
                return written

    def _start(self) -> tuple[int, str]:
        while True:
            position = self.view.max_tracking_id(self.application_name) or 0
            head = self.view.head()
            # Tracking only grows, one commit at a time: if it did not move around the read
            # of the head, the two belong to the same commit.
            if (self.view.max_tracking_id(self.application_name) or 0) == position:
                break
        if position == 0 and head is None:
            return 0, GENESIS
        if head is None or head[0] != position:
            # Extending a chain whose last link is missing would hide the damage.
            raise AuditTrailBroken(f"tracked position {position}, last audit row {head}")
        return head


def verify_chain(
    recorder: ApplicationRecorder,
    view: AuditView,
    batch: int = 1000,
    *,
    application_name: str = "ledger",
    mapper: Mapper[UUID] | None = None,
) -> ChainReport:
    """Recompute the chain from the store and compare it with the view, position by position."""
    # Events the view has not reached yet are not its fault: stop at its tracked position.
    # With a mapper, each row is also derived again from its event, so that an edit to the
    # audit table's own columns shows too (the chain covers the stored events only).
    head = view.head()
    end = max(view.max_tracking_id(application_name) or 0, head[0] if head else 0)
    rows_maker = _RowMaker(mapper, view) if mapper is not None else None
    chain, position, checked = GENESIS, 0, 0

    def bad(at: int, reason: str) -> ChainReport:
        return ChainReport(
            ok=False,
            checked=checked,
            head_position=position,
            head_chain=chain,
            first_bad_position=at,
            reason=reason,
        )

    rows = _rows(view, end, batch)
    row = next(rows, None)
    for n in _notifications(recorder, end, batch):
        if row is not None and row.position < n.id:
            return bad(row.position, "audit record for an event that is not in the store")
        if row is None or row.position > n.id:
            return bad(n.id, "audit record missing")
        expected = link(chain, n)
        if row.chain != expected or row.key_id != n.originator_id:
            return bad(n.id, "stored event differs from the audit record")
        if rows_maker is not None and rows_maker.row(n, expected) != row:
            return bad(n.id, "audit record's fields differ from the stored event")
        chain, position, checked = expected, n.id, checked + 1
        row = next(rows, None)
    if row is not None:
        return bad(row.position, "audit record for an event that is not in the store")
    return ChainReport(ok=True, checked=checked, head_position=position, head_chain=chain)


def _notifications(recorder: ApplicationRecorder, end: int, batch: int) -> Iterator[Notification]:
    start = 0
    while start < end:
        page = recorder.select_notifications(
            start=start, limit=batch, stop=end, inclusive_of_start=False
        )
        yield from page
        if len(page) < batch:
            return
        start = page[-1].id


def _rows(view: AuditView, end: int, batch: int) -> Iterator[AuditRow]:
    position = 0
    while True:
        page = view.rows_after(position, batch)
        for row in page:
            if row.position > end:
                return
            yield row
        if len(page) < batch:
            return
        position = page[-1].position

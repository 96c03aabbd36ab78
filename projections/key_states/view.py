"""Each key's latest state as a table: the read model that lists keys and starts processes.

A process starting cold loads these rows into its verification index and replays only the events
after their tracked position, instead of every event ever stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking, TrackingRecorder

from projections.verification_index.index import KeyRecord, VerificationIndex

# A state's columns, as KeyState names them; a load reads all but the last, in this order.
COLUMNS = (
    "key_id",
    "owner_id",
    "name",
    "prefix",
    "digest",
    "scopes",
    "created_at",
    "expires_at",
    "revoked_at",
    "expired_at",
    "version",
    "minted_position",
)
LOADED = COLUMNS[:-1]


class KeyState(msgspec.Struct, kw_only=True):
    """One key as the index holds it, as a row of the snapshot; never any part of a token."""

    key_id: UUID
    owner_id: str
    name: str
    prefix: str
    digest: bytes
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    expired_at: datetime | None = None
    version: int = 1
    # Where the key's Minted event is in the store: the index lists an owner's keys in this
    # order, and a loaded index must list them as a replayed one does.
    minted_position: int = 0


def scopes_text(scopes: Collection[str]) -> str:
    """A scope set as the table stores it: sorted, space-separated (no scope has a space)."""
    return " ".join(sorted(scopes))


class KeyStatesView(TrackingRecorder, ABC):
    """Where key states are kept, with the store position they reflect."""

    @abstractmethod
    def apply(
        self, changes: Sequence[KeyState], tracking: Tracking, *, after: int | None = None
    ) -> None:
        """Upsert the states and the tracking record in one transaction; IntegrityError if taken."""
        # Taken: the view tracks that position or beyond already, or, given `after` (the
        # position the changes were folded from), it is no longer there: another process
        # wrote first. A state never replaces a stored one of a higher version.

    @abstractmethod
    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        """The stored states of these keys (those the view has)."""

    @abstractmethod
    def load(self, into: VerificationIndex) -> int:
        """Add every stored state to an empty index, in minting order; returns their position."""
        # Rows and position must come from one read of the database (the index's position is
        # set to it), or a replay from there would skip or misapply events.


def load_rows(
    into: VerificationIndex,
    rows: Iterable[Sequence[Any]],
    *,
    key_id: Callable[[Any], UUID] | None = None,
    instant: Callable[[Any], datetime] | None = None,
) -> None:
    """Add rows of LOADED columns to an empty index; `key_id` and `instant` turn stored text
    into UUIDs and datetimes where the database stores them as text."""
    if len(into):
        # Loading over records the index already holds could put an older state back.
        raise ValueError("load key states into an empty index")
    add, shared_scopes = into.add, into.shared_scopes
    # One frozenset per distinct stored text: a dict hit per row, not a set built.
    scope_sets: dict[str, frozenset[str]] = {}
    for (
        kid,
        owner_id,
        name,
        prefix,
        digest,
        scope_text,
        created_at,
        expires_at,
        revoked_at,
        expired_at,
        version,
    ) in rows:
        scopes = scope_sets.get(scope_text)
        if scopes is None:
            scopes = scope_sets[scope_text] = shared_scopes(scope_text.split())
        if instant is not None:
            created_at = instant(created_at)
            expires_at = None if expires_at is None else instant(expires_at)
            revoked_at = None if revoked_at is None else instant(revoked_at)
            expired_at = None if expired_at is None else instant(expired_at)
        record = KeyRecord(
            kid if key_id is None else key_id(kid),
            owner_id,
            name,
            prefix,
            digest,
            scopes,
            created_at,
            expires_at,
        )
        if revoked_at is not None:
            record.revoked_at = revoked_at
        if expired_at is not None:
            record.expired_at = expired_at
        if version != 1:
            record.version = version
        add(record)


def state_from_row(
    row: Sequence[Any],
    *,
    key_id: Callable[[Any], UUID] | None = None,
    instant: Callable[[Any], datetime] | None = None,
) -> KeyState:
    """A KeyState from a row of COLUMNS, converting stored text as load_rows does."""

    def at(value: Any) -> Any:
        return value if value is None or instant is None else instant(value)

    return KeyState(
        key_id=row[0] if key_id is None else key_id(row[0]),
        owner_id=row[1],
        name=row[2],
        prefix=row[3],
        digest=row[4],
        scopes=tuple(row[5].split()),
        created_at=at(row[6]),
        expires_at=at(row[7]),
        revoked_at=at(row[8]),
        expired_at=at(row[9]),
        version=row[10],
        minted_position=row[11],
    )


def state_row(s: KeyState) -> tuple[Any, ...]:
    """A KeyState as a row of COLUMNS (instants as they are)."""
    return (
        s.key_id,
        s.owner_id,
        s.name,
        s.prefix,
        s.digest,
        scopes_text(s.scopes),
        s.created_at,
        s.expires_at,
        s.revoked_at,
        s.expired_at,
        s.version,
        s.minted_position,
    )

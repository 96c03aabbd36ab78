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

from domain.lifetime_policy import Terms
from projections.verification_index.index import KeyRecord, VerificationIndex

# The table's names: a new name whenever the columns change, so that a process finds either
# the table it knows or none (and then builds it from the store, the index by replay meanwhile).
TABLE = "key_states_v2"
TRACKING_TABLE = "key_states_v2_tracking"
# The lifetime policy in force at the table's position, one row: the index blocks keys by it.
POLICY_TABLE = "key_states_v2_policy"
POLICY_COLUMNS = ("version", "max_lifetime_days", "expiry_required", "revoke_unused_after_days")
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
    "retires_at",
    "suspended",
    "predecessor_id",
    "successor_id",
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
    # A rotated key's successor, and when the key stops; a successor's predecessor.
    retires_at: datetime | None = None
    suspended: bool = False
    predecessor_id: UUID | None = None
    successor_id: UUID | None = None
    version: int = 1
    # Where the key's Minted event is in the store: the index lists an owner's keys in this
    # order, and a loaded index must list them as a replayed one does.
    minted_position: int = 0


class PolicyState(msgspec.Struct, frozen=True):
    """The lifetime policy's terms at a version of its aggregate."""

    terms: Terms
    version: int

    def row(self) -> tuple[int, int | None, bool, int | None]:
        """As a row of POLICY_COLUMNS."""
        t = self.terms
        return (self.version, t.max_lifetime_days, t.expiry_required, t.revoke_unused_after_days)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> PolicyState:
        return cls(Terms(row[1], bool(row[2]), row[3]), row[0])


def scopes_text(scopes: Collection[str]) -> str:
    """A scope set as the table stores it: sorted, space-separated (no scope has a space)."""
    return " ".join(sorted(scopes))


class KeyStatesView(TrackingRecorder, ABC):
    """Where key states are kept, with the store position they reflect."""

    @abstractmethod
    def apply(
        self,
        changes: Sequence[KeyState],
        tracking: Tracking,
        *,
        after: int | None = None,
        policy: PolicyState | None = None,
    ) -> None:
        """Upsert the states, the policy if it changed, and the tracking record in one
        transaction; IntegrityError if taken."""
        # Taken: the view tracks that position or beyond already, or, given `after` (the
        # position the changes were folded from), it is no longer there: another process
        # wrote first. A state never replaces a stored one of a higher version.

    @abstractmethod
    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        """The stored states of these keys (those the view has)."""

    @abstractmethod
    def load(self, into: VerificationIndex) -> int:
        """Put the stored policy in force in an empty index and add every stored state to it,
        in minting order; returns their position."""
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
        retires_at,
        suspended,
        _predecessor_id,
        _successor_id,
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
            retires_at = None if retires_at is None else instant(retires_at)
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
        if retires_at is not None:
            record.retires_ts = retires_at.timestamp()
        if suspended:
            record.suspended = True
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

    def uuid(value: Any) -> Any:
        return value if value is None or key_id is None else key_id(value)

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
        retires_at=at(row[10]),
        suspended=bool(row[11]),
        predecessor_id=uuid(row[12]),
        successor_id=uuid(row[13]),
        version=row[14],
        minted_position=row[15],
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
        s.retires_at,
        s.suspended,
        s.predecessor_id,
        s.successor_id,
        s.version,
        s.minted_position,
    )

"""Each key's latest state as a table: the read model that lists and shows keys, and starts
processes.

A process starting cold loads what verification needs of these rows into its verification
index and replays only the events after their tracked position, instead of every event ever
stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking, TrackingRecorder

from domain.api_key import ApiKey, Status, key_status
from domain.lifetime_policy import Terms
from projections.verification_index.index import (
    EXPIRED_FLAG,
    REVOKED_FLAG,
    SUSPENDED_FLAG,
    VerificationIndex,
)

# The table's names: a new name whenever the columns change, so that a process finds either
# the table it knows or none (and then builds it from the store, the index by replay meanwhile).
TABLE = "key_states_v2"
TRACKING_TABLE = "key_states_v2_tracking"
# The lifetime policy in force at the table's position, one row: the index blocks keys by it.
POLICY_TABLE = "key_states_v2_policy"
POLICY_COLUMNS = ("version", "max_lifetime_days", "expiry_required", "revoke_unused_after_days")
# A state's columns, as KeyState names them; the epoch seconds are for loading the index (the
# index's own arithmetic on the instants, done once when the row is written).
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
    "expires_ts",
    "lifetime",
    "retires_ts",
    "version",
    "minted_position",
)
# What a load reads into the index, after the key id (each backend reads it its own way).
FLAGS = (
    f"(CASE WHEN revoked_at IS NULL THEN 0 ELSE {REVOKED_FLAG} END"
    f" + CASE WHEN expired_at IS NULL THEN 0 ELSE {EXPIRED_FLAG} END"
    f" + CASE WHEN suspended THEN {SUSPENDED_FLAG} ELSE 0 END)"
)
LOADED = ("owner_id", "digest", "scopes", "expires_ts", "lifetime", FLAGS, "retires_ts", "version")


class KeyState(msgspec.Struct, kw_only=True):
    """One key as the ledger knows it now, as a row of the table; never any part of a token."""

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
    # Where the key's Minted event is in the store: an owner's keys are listed in this order.
    minted_position: int = 0

    @property
    def lifetime(self) -> timedelta | None:
        """From minting to expiry; None for a key that never expires."""
        return None if self.expires_at is None else self.expires_at - self.created_at

    def status(self, now: datetime, terms: Terms) -> Status:
        """The key's status at an instant under the lifetime policy's terms (see key_status)."""
        return key_status(
            self.revoked_at is not None,
            self.expired_at is not None,
            self.expires_at,
            now,
            retires=self.retires_at,
            suspended=self.suspended,
            blocked=terms.blocks(self.lifetime),
        )


def state_of(key: ApiKey) -> KeyState:
    """A key's state from its aggregate (its Minted position unknown: 0)."""
    return KeyState(
        key_id=key.id,
        owner_id=key.owner_id,
        name=key.name,
        prefix=key.prefix,
        digest=bytes.fromhex(key.token_sha256),
        scopes=tuple(sorted(key.scopes)),
        created_at=key.minted_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        expired_at=key.expired_at,
        retires_at=key.retires_at,
        suspended=key.suspended,
        predecessor_id=key.predecessor_id,
        successor_id=key.successor_id,
        version=key.version,
    )


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
    def keys_of(self, owner_id: str) -> list[KeyState]:
        """An owner's keys, in minting order."""

    @abstractmethod
    def minted_before(self, cutoff: datetime) -> list[KeyState]:
        """Every key minted before `cutoff` and neither revoked nor recorded expired, in
        minting order."""

    @abstractmethod
    def load(self, into: VerificationIndex) -> int:
        """Put the stored policy in force in an empty index and add every stored state to it,
        in minting order; returns their position."""
        # Rows and position must come from one read of the database (the index's position is
        # set to it), or a replay from there would skip or misapply events.


def load_rows(
    into: VerificationIndex,
    pages: Iterable[Sequence[Sequence[Any]]],
    id_int: Callable[[Any], int],
) -> None:
    """Add pages of rows of a key id (as `id_int` reads it) and the LOADED columns to an empty
    index."""
    if len(into):
        # Loading over records the index already holds could put an older state back.
        raise ValueError("load key states into an empty index")
    into.load(pages, id_int)


def index_row(s: KeyState) -> tuple[Any, ...]:
    """A state as a row of the key id and the LOADED columns, as a database would read it."""
    flags = (
        (REVOKED_FLAG if s.revoked_at is not None else 0)
        | (EXPIRED_FLAG if s.expired_at is not None else 0)
        | (SUSPENDED_FLAG if s.suspended else 0)
    )
    row = state_row(s)
    return (s.key_id, s.owner_id, s.digest, row[5], row[14], row[15], flags, row[16], s.version)


def state_from_row(
    row: Sequence[Any],
    *,
    key_id: Callable[[Any], UUID] | None = None,
    instant: Callable[[Any], datetime] | None = None,
) -> KeyState:
    """A KeyState from a row of COLUMNS; `key_id` and `instant` turn stored text into UUIDs and
    datetimes where the database stores them as text."""

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
        version=row[17],
        minted_position=row[18],
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
        _epoch(s.expires_at),
        _seconds(s.lifetime),
        _epoch(s.retires_at),
        s.version,
        s.minted_position,
    )


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _seconds(span: timedelta | None) -> float | None:
    return None if span is None else span.total_seconds()

"""The verification index as a table: each key's latest state, and the store position it is at."""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import singledispatchmethod
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
from projections.verification_index import KeyRecord, VerificationIndex


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

    def record(self, index: VerificationIndex) -> KeyRecord:
        """The index's record of this key, its scope set shared with the index's others."""
        record = KeyRecord(
            key_id=self.key_id,
            owner_id=self.owner_id,
            name=self.name,
            prefix=self.prefix,
            digest=self.digest,
            scopes=index.shared_scopes(self.scopes),
            created_at=self.created_at,
            expires_at=self.expires_at,
        )
        record.revoked_at = self.revoked_at
        record.expired_at = self.expired_at
        record.version = self.version
        return record


def scopes_text(scopes: Collection[str]) -> str:
    """A scope set as the snapshot stores it: sorted, space-separated (no scope has a space)."""
    return " ".join(sorted(scopes))


class SnapshotView(TrackingRecorder, ABC):
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


class _Fold:
    """The latest state of each key that a run of events changes, one handler per event type."""

    def __init__(self, known: dict[UUID, KeyState]) -> None:
        self.states = known
        self.changed: dict[UUID, KeyState] = {}

    @singledispatchmethod
    def apply(self, e: Any, position: int) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _minted(self, e: ApiKey.Minted, position: int) -> None:
        if e.originator_id in self.states:
            return
        state = KeyState(
            key_id=e.originator_id,
            owner_id=e.owner_id,
            name=e.name,
            prefix=e.prefix,
            digest=bytes.fromhex(e.token_sha256),
            scopes=tuple(sorted(e.scopes)),
            created_at=e.at,
            expires_at=e.expires_at,
            version=e.originator_version,
            minted_position=position,
        )
        self.states[state.key_id] = self.changed[state.key_id] = state

    @apply.register
    def _scopes_set(self, e: ApiKey.ScopesSet, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.scopes = tuple(sorted(e.scopes))

    @apply.register
    def _revoked(self, e: ApiKey.Revoked, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.revoked_at = e.at

    @apply.register
    def _expired(self, e: ApiKey.Expired, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.expired_at = e.expires_at

    def _newer(self, e: Any) -> KeyState | None:
        """The key's state, now at the event's version, if the event is newer than it."""
        state = self.states.get(e.originator_id)
        if state is None or e.originator_version <= state.version:
            return None
        state.version = e.originator_version
        self.changed[state.key_id] = state
        return state


_LATER_EVENTS = (ApiKey.ScopesSet, ApiKey.Revoked, ApiKey.Expired)


class SnapshotProjector:
    """Keeps a snapshot view current with the store: each position is written once."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        application_name: str,
        view: SnapshotView,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.application_name = application_name
        self.view = view

    def catch_up(self, batch: int = 1000) -> int:
        """Project every stored event beyond the view's position; returns how many this wrote."""
        written = 0
        while True:
            position = self.view.max_tracking_id(self.application_name) or 0
            notifications = self.recorder.select_notifications(
                start=position, limit=batch, inclusive_of_start=False
            )
            if not notifications:
                return written
            changes = self.fold(notifications)
            try:
                self.view.apply(
                    changes,
                    Tracking(self.application_name, notifications[-1].id),
                    after=position,
                )
            except IntegrityError:
                # Another process wrote from this position first: go on from where it got to.
                # If nobody moved the position, the conflict is something else: do not loop.
                if (self.view.max_tracking_id(self.application_name) or 0) == position:
                    raise
                continue
            written += len(notifications)
            if len(notifications) < batch:
                return written

    def fold(self, notifications: Sequence[Notification]) -> list[KeyState]:
        """The new state of every key these notifications change, from the view's states."""
        events: list[Any] = [self.mapper.to_domain_event(n) for n in notifications]
        minted = {e.originator_id for e in events if isinstance(e, ApiKey.Minted)}
        earlier = {
            e.originator_id
            for e in events
            if isinstance(e, _LATER_EVENTS) and e.originator_id not in minted
        }
        fold = _Fold(self.view.states(earlier) if earlier else {})
        for n, e in zip(notifications, events, strict=True):
            fold.apply(e, n.id)
        return list(fold.changed.values())


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block."""
    # Building a million records sets the collector off thousands of times, each walking the
    # records made so far: a third of the time spent loading, measured here.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

"""Projecting stored events into key states: the latest state of each key a page of events
changes, written with the position it was folded from."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification, Tracking

from domain.api_key import ApiKey
from domain.lifetime_policy import LifetimePolicy, terms_of
from projections.catch_up import ReadModelProjector
from projections.key_states.view import KeyState, KeyStatesView, PolicyState


class _Fold:
    """The latest state of each key that a run of events changes, one handler per event type."""

    def __init__(self, known: dict[UUID, KeyState]) -> None:
        self.states = known
        self.changed: dict[UUID, KeyState] = {}
        self.policy: PolicyState | None = None

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
            predecessor_id=e.predecessor_id,
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

    @apply.register
    def _rotated(self, e: ApiKey.Rotated, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.successor_id = e.successor_id
            state.retires_at = e.retires_at

    @apply.register
    def _suspended(self, e: ApiKey.Suspended, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.suspended = True

    @apply.register
    def _resumed(self, e: ApiKey.Resumed, position: int) -> None:
        state = self._newer(e)
        if state is not None:
            state.suspended = False

    @apply.register
    def _policy_set(self, e: LifetimePolicy.Set, position: int) -> None:
        self.policy = PolicyState(terms_of(e), e.originator_version)

    @apply.register
    def _policy_changed(self, e: LifetimePolicy.Changed, position: int) -> None:
        self.policy = PolicyState(terms_of(e), e.originator_version)

    def _newer(self, e: Any) -> KeyState | None:
        """The key's state, now at the event's version, if the event is newer than it."""
        state = self.states.get(e.originator_id)
        if state is None or e.originator_version <= state.version:
            return None
        state.version = e.originator_version
        self.changed[state.key_id] = state
        return state


_LATER_EVENTS = (
    ApiKey.ScopesSet,
    ApiKey.Revoked,
    ApiKey.Expired,
    ApiKey.Rotated,
    ApiKey.Suspended,
    ApiKey.Resumed,
)


class KeyStatesProjector(ReadModelProjector):
    """Keeps a key-states view current with the store: each position is written once."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        application_name: str,
        view: KeyStatesView,
    ) -> None:
        super().__init__(recorder, application_name, view)
        self.mapper = mapper
        self.view = view

    def catch_up(self, batch: int = 1000) -> int:
        return super().catch_up(batch)

    def write(self, position: int, notifications: Sequence[Notification]) -> None:
        fold = self.fold(notifications)
        self.view.apply(
            list(fold.changed.values()),
            Tracking(self.application_name, notifications[-1].id),
            after=position,
            policy=fold.policy,
        )

    def fold(self, notifications: Sequence[Notification]) -> _Fold:
        """The new state of every key these notifications change, from the view's states, and
        the lifetime policy if they change it."""
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
        return fold


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

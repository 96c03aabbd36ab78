"""Key states in process memory: for the in-memory backend and unit tests."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.popo import POPOTrackingRecorder

from projections.key_states.view import (
    KeyState,
    KeyStatesView,
    PolicyState,
    index_row,
    load_rows,
)
from projections.verification_index.index import VerificationIndex


class MemoryKeyStatesView(POPOTrackingRecorder, KeyStatesView):
    """Key states in process memory, for the in-memory backend and unit tests."""

    def __init__(self, application_name: str = "ledger") -> None:
        super().__init__()
        self.application_name = application_name
        self._states: dict[UUID, KeyState] = {}
        self._by_owner: dict[str, dict[UUID, KeyState]] = {}
        self._policy: PolicyState | None = None

    def apply(
        self,
        changes: Sequence[KeyState],
        tracking: Tracking,
        *,
        after: int | None = None,
        policy: PolicyState | None = None,
    ) -> None:
        with self._database_lock:
            if (
                after is not None
                and (self.max_tracking_id(tracking.application_name) or 0) != after
            ):
                raise IntegrityError(f"key states are no longer at position {after}")
            self._assert_tracking_uniqueness(tracking)
            self._insert_tracking(tracking)
            for state in changes:
                stored = self._states.get(state.key_id)
                if stored is not None and stored.version >= state.version:
                    continue
                # Copies: the fold goes on changing its own.
                kept = self._states[state.key_id] = _copy(state)
                # Minting order: a key keeps its place in its owner's listing.
                self._by_owner.setdefault(state.owner_id, {})[state.key_id] = kept
            if policy is not None and (
                self._policy is None or self._policy.version < policy.version
            ):
                self._policy = policy

    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        with self._database_lock:
            return {k: _copy(self._states[k]) for k in key_ids if k in self._states}

    def keys_of(self, owner_id: str) -> list[KeyState]:
        with self._database_lock:
            owned = self._by_owner.get(owner_id, {})
            return sorted(map(_copy, owned.values()), key=lambda s: s.minted_position)

    def minted_before(self, cutoff: datetime) -> list[KeyState]:
        with self._database_lock:
            found = [
                _copy(s)
                for s in self._states.values()
                if s.created_at < cutoff and s.revoked_at is None and s.expired_at is None
            ]
        return sorted(found, key=lambda s: s.minted_position)

    def load(self, into: VerificationIndex) -> int:
        with self._database_lock:
            position = self.max_tracking_id(self.application_name) or 0
            if self._policy is not None and not len(into):
                into.set_terms(self._policy.terms, self._policy.version)
            load_rows(into, [[index_row(s) for s in self._states.values()]], _id_int)
        into.position = position
        return position


def _copy(state: KeyState) -> KeyState:
    return KeyState(**{f: getattr(state, f) for f in state.__struct_fields__})


def _id_int(key_id: UUID) -> int:
    return key_id.int

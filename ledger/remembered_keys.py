"""The events of the keys this process saved or loaded last, so that the next command on one of
them decides without reading the store again.

What is remembered may be behind the store: another process may have changed the key since. So
a decision taken on a remembered key counts only when the store confirms it: its events are
saved only if their versions are still the next ones (ledger.recording), and a decision that
saves nothing — a refusal, or "nothing to change" — is taken again on the key as the store has
it. A key is forgotten when a save of it conflicts, and when this process learns of a change to
it that it did not make.

Events rather than aggregates: events never change, so the remembered ones are shared safely
between threads, and replaying a key's few events is cheaper than copying an aggregate.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import DomainEventProtocol

from domain.api_key import ApiKey

Event = DomainEventProtocol[UUID]
# About a few megabytes: a key is a handful of events, each a few hundred bytes.
DEFAULT_SIZE = 4096


class RememberedKeys:
    """The latest events of up to `size` keys, the least recently used forgotten first."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._events: OrderedDict[UUID, tuple[Event, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events)

    def key(self, key_id: UUID) -> ApiKey | None:
        """A fresh aggregate of the key as remembered, or None if it is not."""
        with self._lock:
            events = self._events.get(key_id)
            if events is None:
                return None
            self._events.move_to_end(key_id)
        key = project_aggregate(None, events)
        return key if isinstance(key, ApiKey) else None

    def loaded(self, events: Sequence[Event]) -> None:
        """A key's whole history, as just read from the store."""
        if events and isinstance(events[0], ApiKey.Minted):
            with self._lock:
                self._keep(events[0].originator_id, tuple(events))

    def saved(self, events: Iterable[Event]) -> None:
        """Events just saved (any aggregates'): each key's join what is remembered of it; a key
        this process has not remembered is remembered from its Minted event on."""
        by_key: dict[UUID, list[Event]] = {}
        for event in events:
            by_key.setdefault(event.originator_id, []).append(event)
        with self._lock:
            for key_id, new in by_key.items():
                known = self._events.get(key_id)
                if known and known[-1].originator_version + 1 == new[0].originator_version:
                    self._keep(key_id, known + tuple(new))
                elif isinstance(new[0], ApiKey.Minted):
                    self._keep(key_id, tuple(new))
                else:
                    self._events.pop(key_id, None)

    def learnt(self, event: Event) -> None:
        """An event this process read from the store: forget the key unless it is known."""
        with self._lock:
            known = self._events.get(event.originator_id)
            if known and known[-1].originator_version < event.originator_version:
                del self._events[event.originator_id]

    def forget(self, key_ids: Iterable[UUID]) -> None:
        with self._lock:
            for key_id in key_ids:
                self._events.pop(key_id, None)

    def _keep(self, key_id: UUID, events: tuple[Event, ...]) -> None:
        self._events[key_id] = events
        self._events.move_to_end(key_id)
        while len(self._events) > self._size:
            self._events.popitem(last=False)

"""Usage in process memory: for the in-memory backend and unit tests."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from datetime import date, datetime
from uuid import UUID

from projections.usage.counter import UsageBatch, utc_instant
from projections.usage.store import UsageStore


class MemoryUsageStore(UsageStore):
    """In-process tables, for the memory backend and unit tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._daily: dict[tuple[UUID, date], int] = {}
        self._last: dict[UUID, float] = {}

    def add(self, batch: UsageBatch) -> None:
        with self._lock:
            for key, requests in batch.counts.items():
                self._daily[key] = self._daily.get(key, 0) + requests
            for key_id, instant in batch.last_used.items():
                if instant > self._last.get(key_id, -math.inf):
                    self._last[key_id] = instant

    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        with self._lock:
            return {k: utc_instant(self._last[k]) for k in set(key_ids) if k in self._last}

    def daily(self, key_ids: Iterable[UUID], since: date) -> dict[UUID, dict[date, int]]:
        wanted = set(key_ids)
        result: dict[UUID, dict[date, int]] = {}
        with self._lock:
            for (key_id, day), requests in self._daily.items():
                if key_id in wanted and day >= since:
                    result.setdefault(key_id, {})[day] = requests
        return result

    def close(self) -> None:
        """Nothing to release: the tables live as long as this object."""

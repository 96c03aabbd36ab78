"""Usage as the API shows it: the usage store, plus this process's uses not flushed yet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from uuid import UUID

from ledger.deadline import bounded
from projections.usage.counter import UsageCounter, utc_day, utc_instant
from projections.usage.store import UsageStore


class UsageReport:
    """Usage as the API shows it: the store, plus this process's uses not flushed yet."""

    def __init__(
        self, store: UsageStore, counter: UsageCounter, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.counter = counter
        self.clock = clock

    @bounded()
    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        """When each key was last used; a key never used has no entry."""
        wanted = set(key_ids)
        with self.counter.between_flushes() as pending:
            result = self.store.last_used(wanted)
        for key_id, instant in pending.last_used.items():
            if key_id in wanted:
                at = utc_instant(instant)
                if key_id not in result or at > result[key_id]:
                    result[key_id] = at
        return result

    @bounded()
    def daily(self, key_ids: Iterable[UUID], days: int = 30) -> dict[UUID, dict[date, int]]:
        """Requests per UTC day over the last `days` days, today included."""
        if days < 1:
            raise ValueError("days must be at least 1")
        wanted = set(key_ids)
        since = utc_day(self.clock()) - timedelta(days=days - 1)
        with self.counter.between_flushes() as pending:
            result = self.store.daily(wanted, since)
        for (key_id, day), requests in pending.counts.items():
            if key_id in wanted and day >= since:
                per_day = result.setdefault(key_id, {})
                per_day[day] = per_day.get(day, 0) + requests
        return result

    def unused_since(self, key_ids: Iterable[UUID], cutoff: datetime) -> set[UUID]:
        """The keys never used, or last used before `cutoff`."""
        wanted = set(key_ids)
        return unused_since(self.last_used(wanted), wanted, cutoff)


def unused_since(
    last_used: Mapping[UUID, datetime], key_ids: Iterable[UUID], cutoff: datetime
) -> set[UUID]:
    """Of these keys, those never used or last used before `cutoff`, given when each was."""
    return {k for k in key_ids if k not in last_used or last_used[k] < cutoff}

"""Where flushed usage lives: two tables beside the ledger's events, one per backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import date, datetime
from uuid import UUID

from projections.usage.counter import UsageBatch

# The two tables, with each backend's column types.
DAILY_TABLE = (
    "CREATE TABLE IF NOT EXISTS key_usage_daily ("
    " key_id {uuid} NOT NULL, day {day} NOT NULL, count {count} NOT NULL,"
    " PRIMARY KEY (key_id, day))"
)
LAST_USED_TABLE = (
    "CREATE TABLE IF NOT EXISTS key_last_used ("
    " key_id {uuid} PRIMARY KEY, last_used_at {instant} NOT NULL)"
)


class UsageStore(ABC):
    """Where flushed usage lives: the ledger's own database, two tables beside the events."""

    @abstractmethod
    def add(self, batch: UsageBatch) -> None:
        """Add a batch in one transaction: counts add up, last used only moves forward."""

    @abstractmethod
    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        """When each key was last used; a key never used has no entry."""

    @abstractmethod
    def daily(self, key_ids: Iterable[UUID], since: date) -> dict[UUID, dict[date, int]]:
        """Requests per UTC day from `since` on; days and keys without requests are absent."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

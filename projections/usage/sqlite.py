"""Usage in the ledger's SQLite file: two tables, written by one locked connection."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from uuid import UUID

from projections.sqlite_views import connect, write_transaction
from projections.usage.counter import UsageBatch, utc_instant
from projections.usage.store import DAILY_TABLE, LAST_USED_TABLE, UsageStore

# SQLite's default limit on host parameters was 999 before 3.32; stay well under it.
_CHUNK = 500


class SQLiteUsageStore(UsageStore):
    """The two tables in the ledger's SQLite file: WAL, a busy timeout, one locked connection."""

    def __init__(self, path: str, busy_timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._conn = connect(path, busy_timeout)
        with self._lock:
            types = {"uuid": "TEXT", "day": "TEXT", "count": "INTEGER", "instant": "REAL"}
            self._conn.execute(DAILY_TABLE.format(**types))
            self._conn.execute(LAST_USED_TABLE.format(**types))

    def add(self, batch: UsageBatch) -> None:
        counts = sorted((str(k), d.isoformat(), n) for (k, d), n in batch.counts.items())
        last = sorted((str(k), t) for k, t in batch.last_used.items())
        with self._lock, write_transaction(self._conn) as conn:
            conn.executemany(
                "INSERT INTO key_usage_daily (key_id, day, count) VALUES (?, ?, ?)"
                " ON CONFLICT (key_id, day) DO UPDATE SET count = count + excluded.count",
                counts,
            )
            conn.executemany(
                "INSERT INTO key_last_used (key_id, last_used_at) VALUES (?, ?)"
                " ON CONFLICT (key_id) DO UPDATE"
                " SET last_used_at = max(last_used_at, excluded.last_used_at)",
                last,
            )

    def _select(self, sql: str, key_ids: Iterable[UUID], *extra: object) -> list[Any]:
        ids = sorted({str(k) for k in key_ids})
        rows: list[Any] = []
        with self._lock:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows += self._conn.execute(sql.format(marks=marks), [*chunk, *extra]).fetchall()
        return rows

    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        rows = self._select(
            "SELECT key_id, last_used_at FROM key_last_used WHERE key_id IN ({marks})", key_ids
        )
        return {UUID(k): utc_instant(t) for k, t in rows}

    def daily(self, key_ids: Iterable[UUID], since: date) -> dict[UUID, dict[date, int]]:
        rows = self._select(
            "SELECT key_id, day, count FROM key_usage_daily WHERE key_id IN ({marks}) AND day >= ?",
            key_ids,
            since.isoformat(),
        )
        result: dict[UUID, dict[date, int]] = {}
        for key_id, day, requests in rows:
            result.setdefault(UUID(key_id), {})[date.fromisoformat(day)] = requests
        return result

    def close(self) -> None:
        with self._lock:
            self._conn.close()

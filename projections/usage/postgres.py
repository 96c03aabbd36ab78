"""Usage in the ledger's PostgreSQL schema: two tables, upserted a batch at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg_pool import ConnectionPool

from projections.postgres_views import TablesOnFirstUse
from projections.usage.counter import UsageBatch, utc_instant
from projections.usage.store import DAILY_TABLE, LAST_USED_TABLE, UsageStore


class PostgresUsageStore(UsageStore):
    """The two tables in the ledger's PostgreSQL schema, through a pool of the backend's."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        """`pool`'s connections are in autocommit mode, on the ledger's schema (search_path)."""
        self._pool = pool
        self._tables = TablesOnFirstUse(
            "anthra key usage",
            [
                DAILY_TABLE.format(uuid="uuid", day="date", count="bigint"),
                LAST_USED_TABLE.format(uuid="uuid", instant="timestamptz"),
            ],
        )

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool.connection() as conn:
            self._tables.ensure(conn)
            yield conn

    def add(self, batch: UsageBatch) -> None:
        # Rows go in key order so that concurrent flushes lock rows in the same order.
        counts = sorted(batch.counts.items())
        last = sorted(batch.last_used.items())
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO key_usage_daily (key_id, day, count)"
                " SELECT * FROM unnest(%s::uuid[], %s::date[], %s::bigint[]) ORDER BY 1, 2"
                " ON CONFLICT (key_id, day)"
                " DO UPDATE SET count = key_usage_daily.count + EXCLUDED.count",
                ([k for (k, _), _ in counts], [d for (_, d), _ in counts], [n for _, n in counts]),
            )
            conn.execute(
                "INSERT INTO key_last_used (key_id, last_used_at)"
                " SELECT * FROM unnest(%s::uuid[], %s::timestamptz[]) ORDER BY 1"
                " ON CONFLICT (key_id) DO UPDATE"
                " SET last_used_at = GREATEST(key_last_used.last_used_at, EXCLUDED.last_used_at)",
                ([k for k, _ in last], [utc_instant(t) for _, t in last]),
            )

    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT key_id, last_used_at FROM key_last_used WHERE key_id = ANY(%s::uuid[])",
                (list(set(key_ids)),),
            ).fetchall()
        return {k: t.astimezone(UTC) for k, t in rows}

    def daily(self, key_ids: Iterable[UUID], since: date) -> dict[UUID, dict[date, int]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT key_id, day, count FROM key_usage_daily"
                " WHERE key_id = ANY(%s::uuid[]) AND day >= %s",
                (list(set(key_ids)), since),
            ).fetchall()
        result: dict[UUID, dict[date, int]] = {}
        for key_id, day, requests in rows:
            result.setdefault(key_id, {})[day] = requests
        return result

    def close(self) -> None:
        self._pool.close()

"""Where failed authentication attempts are counted across processes and replicas.

Redis when `ANTHRA_REDIS_URL` is set; otherwise the ledger's own database: a table in the
PostgreSQL database or the SQLite file, or a dict for the in-memory backend. Every store adds
counts per (window, subject) and answers the subjects at or above a count in a window; only
the sync thread calls them, never a request.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra.auth_failures import Counts
from infra.settings import Settings
from projections.postgres_views import TablesOnFirstUse
from projections.sqlite_views import connect, write_transaction

if TYPE_CHECKING:
    from infra.backends.base import Backend

REDIS_KEY: Final = "anthra:auth-failures:"
# Subjects are `ip:<address>` or `prefix:<12 characters>`; longer text is not ours.
MAX_SUBJECT: Final = 64

_TABLE = (
    "CREATE TABLE IF NOT EXISTS auth_failures ("
    " window_index {int} NOT NULL, subject TEXT NOT NULL, failures {int} NOT NULL,"
    " PRIMARY KEY (window_index, subject))"
)
# The sync reads the few subjects over a limit among many under it.
_INDEX = (
    "CREATE INDEX IF NOT EXISTS auth_failures_by_count ON auth_failures (window_index, failures)"
)


class AuthFailureStore(ABC):
    """Failed attempts per (window, subject), added to by every process."""

    @abstractmethod
    def add(self, counts: Counts) -> None:
        """Add counts in one go: they add up with every other process's."""

    @abstractmethod
    def at_least(self, window_index: int, failures: int) -> list[tuple[str, int]]:
        """The subjects with at least `failures` in the window, and their counts."""

    @abstractmethod
    def forget_before(self, window_index: int) -> None:
        """Drop the counts of windows before this one."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


class MemoryAuthFailureStore(AuthFailureStore):
    """A dict, for the in-memory backend: one process is all there is to share with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counts = {}

    def add(self, counts: Counts) -> None:
        with self._lock:
            for key, count in counts.items():
                self._counts[key] = self._counts.get(key, 0) + count

    def at_least(self, window_index: int, failures: int) -> list[tuple[str, int]]:
        with self._lock:
            return [
                (s, n) for (w, s), n in self._counts.items() if w == window_index and n >= failures
            ]

    def forget_before(self, window_index: int) -> None:
        with self._lock:
            self._counts = {k: n for k, n in self._counts.items() if k[0] >= window_index}

    def close(self) -> None:
        """Nothing to release."""


class SQLiteAuthFailureStore(AuthFailureStore):
    """A table in the ledger's SQLite file, for the processes on one host."""

    def __init__(self, path: str, busy_timeout: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._conn = connect(path, busy_timeout)
        with self._lock:
            self._conn.execute(_TABLE.format(int="INTEGER"))
            self._conn.execute(_INDEX)

    def add(self, counts: Counts) -> None:
        rows = sorted((w, s[:MAX_SUBJECT], n) for (w, s), n in counts.items())
        if not rows:
            return
        with self._lock, write_transaction(self._conn) as conn:
            conn.executemany(
                "INSERT INTO auth_failures (window_index, subject, failures) VALUES (?, ?, ?)"
                " ON CONFLICT (window_index, subject)"
                " DO UPDATE SET failures = failures + excluded.failures",
                rows,
            )

    def at_least(self, window_index: int, failures: int) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT subject, failures FROM auth_failures"
                " WHERE window_index = ? AND failures >= ?",
                (window_index, failures),
            ).fetchall()
        return [(str(s), int(n)) for s, n in rows]

    def forget_before(self, window_index: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM auth_failures WHERE window_index < ?", (window_index,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresAuthFailureStore(AuthFailureStore):
    """A table in the ledger's PostgreSQL database (and `?schema=`), via a small pool."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        """`pool`'s connections are in autocommit mode, on the ledger's schema (search_path)."""
        self._pool = pool
        self._tables = TablesOnFirstUse(
            "anthra auth failures", [_TABLE.format(int="bigint"), _INDEX]
        )

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool.connection() as conn:
            self._tables.ensure(conn)
            yield conn

    def add(self, counts: Counts) -> None:
        # Rows in key order, so that concurrent syncs lock rows in the same order.
        rows = sorted((w, s[:MAX_SUBJECT], n) for (w, s), n in counts.items())
        if not rows:
            return
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO auth_failures (window_index, subject, failures)"
                " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) ORDER BY 1, 2"
                " ON CONFLICT (window_index, subject)"
                " DO UPDATE SET failures = auth_failures.failures + EXCLUDED.failures",
                ([w for w, _, _ in rows], [s for _, s, _ in rows], [n for _, _, n in rows]),
            )

    def at_least(self, window_index: int, failures: int) -> list[tuple[str, int]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT subject, failures FROM auth_failures"
                " WHERE window_index = %s AND failures >= %s",
                (window_index, failures),
            ).fetchall()
        return [(str(s), int(n)) for s, n in rows]

    def forget_before(self, window_index: int) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM auth_failures WHERE window_index < %s", (window_index,))

    def close(self) -> None:
        self._pool.close()


class RedisAuthFailureStore(AuthFailureStore):
    """A sorted set per window in Redis (`ANTHRA_REDIS_URL`), expiring a window after its end."""

    def __init__(
        self, url: str, window: float, timeout: float = 1.0, namespace: str = REDIS_KEY
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._ttl = max(2, math.ceil(2 * window) + 1)
        self._namespace = namespace

    def add(self, counts: Counts) -> None:
        if not counts:
            return
        pipe = self._redis.pipeline(transaction=False)
        windows = set()
        for (window_index, subject), count in sorted(counts.items()):
            pipe.zincrby(f"{self._namespace}{window_index}", count, subject[:MAX_SUBJECT])
            windows.add(window_index)
        for window_index in windows:
            pipe.expire(f"{self._namespace}{window_index}", self._ttl)
        pipe.execute()

    def at_least(self, window_index: int, failures: int) -> list[tuple[str, int]]:
        rows: Any = self._redis.zrangebyscore(
            f"{self._namespace}{window_index}", failures, "+inf", withscores=True
        )
        return [(_text(s), int(n)) for s, n in rows]

    def forget_before(self, window_index: int) -> None:
        """Nothing to do: each window's set expires by itself."""

    def close(self) -> None:
        self._redis.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def auth_failure_store_for(settings: Settings, backend: Backend) -> AuthFailureStore:
    """Redis when configured (shared by every replica whatever their database), else the
    backend's own store beside the ledger's events."""
    if settings.redis_url:
        return RedisAuthFailureStore(settings.redis_url, settings.auth_failure_window)
    return backend.auth_failure_store()

"""Key usage: last used and requests per key per UTC day, counted in memory, flushed in batches.

Usage is not an event (DESIGN.md). The verify path only appends the key (its record or its
id) to an in-memory list; a background flusher turns the lists into counts and upserts them
into two tables every `interval` seconds. Reads combine the tables with this process's
unflushed counts, so a process sees its own uses at once and other processes' within a flush.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg import Connection, sql
from psycopg.rows import tuple_row

from infra.database_url import parse_postgres_url
from infra.deadline import CONNECTION_ERRORS, StoreUnavailable, bounded, unavailable, within
from infra.event_store import store_env
from infra.outage import Outage
from infra.postgres_pool import pool
from infra.settings import Settings
from projections.verification_index import KeyRecord

log = logging.getLogger("anthra.usage")

DAY_SECONDS = 86_400
# A flush ends within this, stored or given back: a database that does not answer must not
# hold the flusher (nor the shutdown that waits for it).
FLUSH_WITHIN = 2.0
_EPOCH_DAY = date(1970, 1, 1)
# SQLite's default limit on host parameters was 999 before 3.32; stay well under it.
_SQLITE_CHUNK = 500

_DAILY_TABLE = (
    "CREATE TABLE IF NOT EXISTS key_usage_daily ("
    " key_id {uuid} NOT NULL, day {day} NOT NULL, count {count} NOT NULL,"
    " PRIMARY KEY (key_id, day))"
)
_LAST_USED_TABLE = (
    "CREATE TABLE IF NOT EXISTS key_last_used ("
    " key_id {uuid} PRIMARY KEY, last_used_at {instant} NOT NULL)"
)


def utc_day(epoch_seconds: float) -> date:
    """The UTC calendar day of an instant given in epoch seconds."""
    return _EPOCH_DAY + timedelta(days=math.floor(epoch_seconds / DAY_SECONDS))


def utc_instant(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


@dataclass
class UsageBatch:
    """Requests per (key, UTC day) and each key's latest use in epoch seconds."""

    counts: dict[tuple[UUID, date], int] = field(default_factory=dict)
    last_used: dict[UUID, float] = field(default_factory=dict)

    def merge(self, other: UsageBatch) -> None:
        """Add another batch's counts to this one; last used is the later of the two."""
        for key, requests in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + requests
        for key_id, instant in other.last_used.items():
            if instant > self.last_used.get(key_id, -math.inf):
                self.last_used[key_id] = instant

    @property
    def requests(self) -> int:
        """How many uses the batch counts, all keys and days together."""
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts or self.last_used)


class _Slot:
    """The uses of one `resolution`-second window of a UTC day, in the order they came."""

    __slots__ = ("day", "end", "keys", "retired", "start", "taken")

    def __init__(self, start: float, end: float, day: date) -> None:
        self.start = start
        self.end = end
        self.day = day
        self.keys: list[UUID | KeyRecord] = []
        self.taken = 0  # keys[:taken] have been counted
        self.retired = False  # no longer current, and found drained once already


# Matches no instant, so the first use opens the first real slot.
_NO_SLOT = _Slot(math.inf, -math.inf, _EPOCH_DAY)


class UsageCounter:
    """Counts verified requests per key in memory; the verify path pays one list append.

    `used` takes no lock and touches only the current slot, which the previous call left in the
    cache. Counting happens in `drain`, in C (`Counter`), on the flusher's thread. A dict of
    per-key counters on the verify path, with or without a lock, cost four to six times as
    much here: its lookups miss the cache on every call (bench/usage.py).

    No use is lost to a concurrent drain: a drain never swaps or clears a list that `used` may
    append to; it counts `keys[taken:len]` and moves `taken`. A slot leaves the registry only
    after it stopped being current and then drained empty twice, so a `used` that read the old
    slot just as a newer one replaced it has a whole flush interval to append.

    Last used is the start of the slot of the key's latest use: the instant rounded down to
    `resolution` seconds (1 by default).
    """

    def __init__(self, resolution: int = 1) -> None:
        if resolution < 1 or DAY_SECONDS % resolution:
            raise ValueError("resolution must be a whole number of seconds dividing a day")
        self.resolution = resolution
        self._slot = _NO_SLOT
        self._slots: dict[float, _Slot] = {}
        self._slots_lock = threading.Lock()  # opening and retiring slots
        self._drain_lock = threading.Lock()  # one counter of `keys[taken:]` at a time
        self._flush_lock = threading.RLock()  # a flush, from drain to commit
        self._held = UsageBatch()  # counted but not drained: given back, or counted by pending

    def used(self, key: UUID | KeyRecord, now: float) -> None:
        """Count one verified request of a key at `now` (epoch seconds): no lock, no I/O.

        `key` is the key's id or, cheaper, its KeyRecord: verify has just read the record, so
        it is in the cache, and it hashes by identity in C where a UUID hashes in Python.
        """
        slot = self._slot
        if slot.start <= now < slot.end:
            slot.keys.append(key)
        else:
            self._use_other_slot(key, now)

    def _use_other_slot(self, key: UUID | KeyRecord, now: float) -> None:
        """A new window (once a second), or a straggler stamped before the current window."""
        start = float(math.floor(now / self.resolution) * self.resolution)
        with self._slots_lock:
            slot = self._slots.get(start)
            if slot is None:
                slot = _Slot(start, start + self.resolution, utc_day(start))
                self._slots[start] = slot
            if self._slot is _NO_SLOT or start > self._slot.start:
                self._slot = slot
            slot.keys.append(key)

    def drain(self) -> UsageBatch:
        """Take every use counted since the last drain, and any batch given back by restore."""
        with self._drain_lock:
            batch = self._collect(retire=True)
            batch.merge(self._held)
            self._held = UsageBatch()
            return batch

    def restore(self, batch: UsageBatch) -> None:
        """Give back a drained batch that could not be stored; the next drain includes it."""
        with self._drain_lock:
            self._held.merge(batch)

    def pending(self) -> UsageBatch:
        """A copy of the uses counted here and not drained yet, batches given back included."""
        with self._drain_lock:
            # Counted once: the next drain hands out what this counts, without counting again.
            self._held.merge(self._collect())
            return UsageBatch(dict(self._held.counts), dict(self._held.last_used))

    @contextmanager
    def flushing(self) -> Iterator[UsageBatch]:
        """Drain for a flush; if the block raises, the batch is given back, so nothing is lost."""
        with self._flush_lock:
            batch = self.drain()
            try:
                yield batch
            except BaseException:
                self.restore(batch)
                raise

    @contextmanager
    def between_flushes(self) -> Iterator[UsageBatch]:
        """The pending uses, with no flush committing until the block ends.

        A reader that adds the store's counts to these inside the block counts every use once:
        it never sees a batch both in the store and pending, nor in neither.
        """
        with self._flush_lock:
            yield self.pending()

    def _collect(self, retire: bool = False) -> UsageBatch:
        """Count the uses appended since the last collect; a drain also retires slots."""
        with self._slots_lock:
            slots = sorted(self._slots.values(), key=lambda s: s.start)
            current = self._slot
        per_day: dict[date, Counter[UUID | KeyRecord]] = {}
        latest: dict[UUID | KeyRecord, float] = {}
        emptied: list[_Slot] = []
        for slot in slots:
            end = len(slot.keys)
            if end > slot.taken:
                counted = Counter(islice(slot.keys, slot.taken, end))
                slot.taken = end
                # Slots run oldest first, so each key ends with the start of its latest slot.
                latest.update(dict.fromkeys(counted, slot.start))
                same_day = per_day.get(slot.day)
                if same_day is None:
                    per_day[slot.day] = counted
                else:
                    same_day.update(counted)
            elif retire and slot is not current:
                # Only drains retire: a slot's grace is then flush intervals, however often
                # reports read.
                if slot.retired:
                    emptied.append(slot)
                slot.retired = True
        if emptied:
            with self._slots_lock:
                for slot in emptied:
                    # A straggler may have appended under the lock since the check above.
                    if self._slots.get(slot.start) is slot and len(slot.keys) == slot.taken:
                        del self._slots[slot.start]
        return _batch_of(per_day, latest)


def _batch_of(
    per_day: dict[date, Counter[UUID | KeyRecord]], latest: dict[UUID | KeyRecord, float]
) -> UsageBatch:
    """Counts by record or id, as a batch by key id; hashes each UUID once where it can."""
    counts: dict[tuple[UUID, date], int] = {}
    last_used: dict[UUID, float] = {}
    key_ids: dict[UUID | KeyRecord, UUID] = {}
    for key in latest:
        key_ids[key] = key if isinstance(key, UUID) else key.key_id
    for key, instant in latest.items():
        key_id = key_ids[key]
        size = len(last_used)
        # UUID.__hash__ is Python code: insert once, and look again only if the id was there
        # already (a key counted both by record and by id).
        last_used.setdefault(key_id, instant)
        if len(last_used) == size and instant > last_used[key_id]:
            last_used[key_id] = instant
    for day, counted in per_day.items():
        for key, requests in counted.items():
            pair = (key_ids[key], day)
            size = len(counts)
            counts.setdefault(pair, requests)
            if len(counts) == size:
                counts[pair] += requests
    return UsageBatch(counts, last_used)


# Stores


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

    def unused_since(self, key_ids: Iterable[UUID], cutoff: datetime) -> set[UUID]:
        """The keys never used, or last used before `cutoff`."""
        wanted = set(key_ids)
        last = self.last_used(wanted)
        return {k for k in wanted if k not in last or last[k] < cutoff}

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


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


class SQLiteUsageStore(UsageStore):
    """The two tables in the ledger's SQLite file: WAL, a busy timeout, one locked connection."""

    def __init__(self, path: Path | str, busy_timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # Switching the journal mode needs the file to itself and fails at once, "database
            # is locked", while another process writes: the event store has usually switched
            # it already, so only ask when it has not.
            (mode,) = self._conn.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                self._conn.execute("PRAGMA journal_mode=WAL")
            types = {"uuid": "TEXT", "day": "TEXT", "count": "INTEGER", "instant": "REAL"}
            self._conn.execute(_DAILY_TABLE.format(**types))
            self._conn.execute(_LAST_USED_TABLE.format(**types))

    def add(self, batch: UsageBatch) -> None:
        counts = sorted((str(k), d.isoformat(), n) for (k, d), n in batch.counts.items())
        last = sorted((str(k), t) for k, t in batch.last_used.items())
        with self._lock:
            # IMMEDIATE takes the write lock up front: a deferred transaction that has to
            # upgrade fails with SQLITE_BUSY at once instead of waiting out the busy timeout.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO key_usage_daily (key_id, day, count) VALUES (?, ?, ?)"
                    " ON CONFLICT (key_id, day) DO UPDATE SET count = count + excluded.count",
                    counts,
                )
                self._conn.executemany(
                    "INSERT INTO key_last_used (key_id, last_used_at) VALUES (?, ?)"
                    " ON CONFLICT (key_id) DO UPDATE"
                    " SET last_used_at = max(last_used_at, excluded.last_used_at)",
                    last,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _select(self, sql: str, key_ids: Iterable[UUID], *extra: object) -> list[Any]:
        ids = sorted({str(k) for k in key_ids})
        rows: list[Any] = []
        with self._lock:
            for i in range(0, len(ids), _SQLITE_CHUNK):
                chunk = ids[i : i + _SQLITE_CHUNK]
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


class PostgresUsageStore(UsageStore):
    """The two tables in the ledger's PostgreSQL database (and `?schema=`), via a small pool."""

    def __init__(self, url: str, max_connections: int = 2) -> None:
        database = parse_postgres_url(url)
        schema = database.schema
        set_path = (
            sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)) if schema else None
        )

        def configure(conn: Connection[Any]) -> None:
            conn.autocommit = True
            if set_path is not None:
                conn.execute(set_path)

        self._tables_ready = False
        # Opening does not wait for a connection: a database down at start only fails flushes,
        # which keep their batches and try again.
        self._pool = pool(
            database.conninfo,
            name="anthra-usage",
            min_size=1,
            max_size=max_connections,
            wait=database.connect_timeout,
            configure=configure,
            row_factory=tuple_row,
        )
        self._pool.open(wait=False)

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool.connection() as conn:
            if not self._tables_ready:
                with conn.transaction():
                    # Two processes creating the tables at once would collide in pg_type.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('anthra key usage'))")
                    types = {"uuid": "uuid", "day": "date", "count": "bigint"}
                    conn.execute(_DAILY_TABLE.format(**types))
                    conn.execute(_LAST_USED_TABLE.format(uuid="uuid", instant="timestamptz"))
                self._tables_ready = True
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


def usage_store_for(settings: Settings) -> UsageStore:
    """The usage store in the ledger's own database: memory, the SQLite file, or PostgreSQL."""
    backend = settings.backend
    if backend == "memory":
        return MemoryUsageStore()
    if backend == "sqlite":
        return SQLiteUsageStore(store_env(settings)["SQLITE_DBNAME"])
    return PostgresUsageStore(settings.database_url)


# Flushing and reading


class UsageFlusher:
    """Flushes a counter to a store every `interval` seconds, and once more on stop.

    A failed flush gives its batch back to the counter and the next one tries again. A flush
    whose COMMIT reached the database just as the connection died is tried again too, so in
    that rare case its uses count twice: usage is stored at least once, never lost.
    """

    def __init__(self, counter: UsageCounter, store: UsageStore, interval: float = 10.0) -> None:
        self.counter = counter
        self.store = store
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage(log, "usage flush")

    def flush(self) -> int:
        """Store what the counter holds; returns the requests stored. On failure keeps them."""
        with self.counter.flushing() as batch:
            if batch:
                self.store.add(batch)
        return batch.requests

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the timer and flush what is left, within `timeout` seconds in all.

        Call it after the server stops verifying. A flush in progress is waited for (it ends
        within its own deadline); what the last flush cannot store is counted in the log line.
        """
        give_up = time.monotonic() + timeout
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, give_up - time.monotonic()))
            self._thread = None
        failure = self._try_flush(max(0.0, give_up - time.monotonic()))
        if failure is not None:
            log.warning(
                "usage flush on stop failed (%s); requests not stored: %d",
                failure,
                self.counter.pending().requests,
            )

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            failure = self._try_flush(FLUSH_WITHIN)
            if failure is None:
                self._outage.succeeded()
            else:
                self._outage.failed(
                    failure, f"requests held for the next flush: {self.counter.pending().requests}"
                )

    def _try_flush(self, within_s: float) -> str | None:
        """Flush; on failure, the reason (the exception's class, for other than the database)."""
        try:
            with within(within_s):
                self.flush()
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            return unavailable(e).reason
        except Exception as e:
            # Its message may quote settings.
            return type(e).__name__
        return None


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
        last = self.last_used(wanted)
        return {k for k in wanted if k not in last or last[k] < cutoff}

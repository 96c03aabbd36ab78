"""Key usage: one contract over the memory, SQLite and PostgreSQL stores, and the counter."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
import pytest

from infra.backends import backend_for
from infra.usage_flusher import UsageFlusher
from ledger.usage_report import UsageReport
from projections.usage.counter import UsageBatch, UsageCounter
from projections.usage.memory import MemoryUsageStore
from projections.usage.store import UsageStore
from tests.conftest import FakeClock, settings_for

DAY = 86_400.0
MIDNIGHT = datetime(2027, 3, 14, tzinfo=UTC).timestamp()  # 00:00 UTC on DAY2
DAY1 = date(2027, 3, 13)
DAY2 = date(2027, 3, 14)
StoreFactory = Callable[[], UsageStore]


def at(seconds: float) -> datetime:
    """The instant `seconds` after MIDNIGHT."""
    return datetime.fromtimestamp(MIDNIGHT + seconds, UTC)


class StoreDownOnce(UsageStore):
    """A store whose first add fails as a database that is down would."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store
        self.failures_left = 1
        self.attempts = 0

    def add(self, batch: UsageBatch) -> None:
        self.attempts += 1
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionRefusedError("could not connect to postgresql://u:hunter2@db/ledger")
        self.store.add(batch)

    def last_used(self, key_ids: Iterable[UUID]) -> dict[UUID, datetime]:
        return self.store.last_used(key_ids)

    def daily(self, key_ids: Iterable[UUID], since: date) -> dict[UUID, dict[date, int]]:
        return self.store.daily(key_ids, since)

    def close(self) -> None:
        self.store.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class UsageContract:
    """Every backend passes these; subclasses provide `database_url`."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def open_store(self, database_url: str) -> Iterator[StoreFactory]:
        """Opens the backend's store as another process would: with its own connections."""
        opened: list[UsageStore] = []
        shared = MemoryUsageStore()

        backend = backend_for(settings_for(database_url))

        def open_one() -> UsageStore:
            # In memory, the "database" two processes share can only be one object.
            store = backend.usage_store() if backend.shared else shared
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            store.close()

    @pytest.fixture
    def store(self, open_store: StoreFactory) -> UsageStore:
        return open_store()

    def test_requests_are_counted_per_key_per_utc_day(self, store: UsageStore) -> None:
        counter = UsageCounter()
        flusher = UsageFlusher(counter, store)
        a, b = uuid4(), uuid4()
        # Key a: two requests before midnight UTC and three after, not in time order
        for seconds in (0.0, -90.0, 1.25, -0.5, 3600.0):
            counter.used(a, MIDNIGHT + seconds)
        # Key b: one request after midnight
        counter.used(b, MIDNIGHT + 30.0)
        # One flush stores all six
        assert flusher.flush() == 6
        # Each UTC day has its own count
        assert store.daily([a, b], since=DAY1) == {a: {DAY1: 2, DAY2: 3}, b: {DAY2: 1}}
        assert store.daily([a, b], since=DAY2) == {a: {DAY2: 3}, b: {DAY2: 1}}
        # Last used is each key's latest request, to the second
        assert store.last_used([a, b]) == {a: at(3600), b: at(30)}
        # A later flush adds to the day's count and moves last used on
        counter.used(a, MIDNIGHT + 7200.9)
        assert flusher.flush() == 1
        assert store.daily([a], since=DAY2) == {a: {DAY2: 4}}
        assert store.last_used([a]) == {a: at(7200)}
        # A flush with nothing counted writes nothing
        assert flusher.flush() == 0

    def test_last_used_only_moves_forward(self, open_store: StoreFactory) -> None:
        key = uuid4()
        first, second = UsageCounter(), UsageCounter()
        # One process flushes a use at 10:00
        first.used(key, MIDNIGHT + 10 * 3600)
        UsageFlusher(first, open_store()).flush()
        # Another flushes, later, a use it saw at 09:00
        second.used(key, MIDNIGHT + 9 * 3600)
        UsageFlusher(second, open_store()).flush()
        # Last used stays at 10:00; both uses count
        store = open_store()
        assert store.last_used([key]) == {key: at(10 * 3600)}
        assert store.daily([key], since=DAY2) == {key: {DAY2: 2}}
        # A use at 11:00 moves it forward
        second.used(key, MIDNIGHT + 11 * 3600)
        UsageFlusher(second, store).flush()
        assert store.last_used([key]) == {key: at(11 * 3600)}

    def test_two_processes_flushing_to_one_database_add_up(self, open_store: StoreFactory) -> None:
        keys = [uuid4() for _ in range(20)]
        rounds, per_round = 10, 200
        errors: list[BaseException] = []

        def process(seconds: float) -> None:
            # Its own counter and connections; a flush after every round of uses
            try:
                counter, store = UsageCounter(), open_store()
                flusher = UsageFlusher(counter, store)
                for _ in range(rounds):
                    for i in range(per_round):
                        counter.used(keys[i % len(keys)], MIDNIGHT + seconds)
                    flusher.flush()
            except BaseException as e:
                errors.append(e)
                raise

        # Four processes, two on each side of midnight, flushing at the same time
        threads = [threading.Thread(target=process, args=(s,)) for s in (-1.0, 1.0, 5.0, -30.0)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        # Every use is counted once, on its own day
        per_key_per_process = rounds * per_round // len(keys)
        expected = {DAY1: 2 * per_key_per_process, DAY2: 2 * per_key_per_process}
        daily = open_store().daily(keys, since=DAY1)
        assert daily == {key: expected for key in keys}
        assert open_store().last_used(keys) == {key: at(5) for key in keys}

    def test_a_key_never_used_says_so(self, store: UsageStore) -> None:
        never, recent, long_ago = uuid4(), uuid4(), uuid4()
        counter = UsageCounter()
        # One key used an hour ago, one 40 days ago, one never
        counter.used(recent, MIDNIGHT - 3600)
        counter.used(long_ago, MIDNIGHT - 40 * DAY)
        UsageFlusher(counter, store).flush()
        # The unused key has no last use and no counts
        assert store.last_used([never]) == {}
        assert store.daily([never], since=DAY1 - timedelta(days=365)) == {}
        # Unused for 30 days: the key never used, and the one last used 40 days ago
        cutoff = at(-30 * DAY)
        report = UsageReport(store, UsageCounter())
        assert report.unused_since([never, recent, long_ago], cutoff) == {never, long_ago}
        assert report.unused_since([], cutoff) == set()

    def test_a_failed_flush_loses_nothing(self, store: UsageStore) -> None:
        down_once = StoreDownOnce(store)
        counter = UsageCounter()
        flusher = UsageFlusher(counter, down_once)
        key = uuid4()
        # Three uses; the flush fails as the database is down
        for seconds in (10.0, 11.0, 12.5):
            counter.used(key, MIDNIGHT + seconds)
        with pytest.raises(ConnectionRefusedError):
            flusher.flush()
        # The uses are still pending here, and none reached the store
        assert counter.pending().counts == {(key, DAY2): 3}
        assert store.daily([key], since=DAY1) == {}
        # Two more uses; the next flush stores all five
        counter.used(key, MIDNIGHT - 5.0)
        counter.used(key, MIDNIGHT + 20.0)
        assert flusher.flush() == 5
        assert store.daily([key], since=DAY1) == {key: {DAY1: 1, DAY2: 4}}
        assert store.last_used([key]) == {key: at(20)}
        assert not counter.pending()

    def test_the_flusher_retries_in_the_background_and_logs_no_secret(
        self, store: UsageStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        down_once = StoreDownOnce(store)
        counter = UsageCounter()
        flusher = UsageFlusher(counter, down_once, interval=0.01)
        key = uuid4()
        counter.used(key, MIDNIGHT + 1.0)
        # The first flush fails, a warning says so, and a later one stores the use
        with caplog.at_level(logging.WARNING, logger="anthra.usage"):
            flusher.start()
            try:
                wait_for(lambda: store.daily([key], since=DAY2) == {key: {DAY2: 1}})
            finally:
                flusher.stop()
        assert down_once.attempts >= 2
        warnings = [r.getMessage() for r in caplog.records if r.name == "anthra.usage"]
        assert warnings == [
            "usage flush failing: ConnectionRefusedError; requests held for the next flush: 1"
        ]
        assert not any("hunter2" in r.getMessage() or r.exc_info for r in caplog.records)

    def test_stopping_the_flusher_flushes(self, store: UsageStore) -> None:
        counter = UsageCounter()
        flusher = UsageFlusher(counter, store, interval=3600)
        flusher.start()
        key = uuid4()
        # A use, and the flusher stopped long before its first timer
        counter.used(key, MIDNIGHT + 42.0)
        flusher.stop()
        # The use is stored
        assert store.daily([key], since=DAY2) == {key: {DAY2: 1}}
        assert store.last_used([key]) == {key: at(42)}

    def test_the_report_shows_this_processs_uses_before_a_flush(
        self, open_store: StoreFactory
    ) -> None:
        store = open_store()
        counter = UsageCounter()
        report = UsageReport(store, counter, clock=FakeClock(MIDNIGHT + 3600))
        flusher = UsageFlusher(counter, store)
        key, other_key = uuid4(), uuid4()
        # Three uses, not flushed: the report shows them at once
        for seconds in (60.0, 61.0, 62.5):
            counter.used(key, MIDNIGHT + seconds)
        assert report.daily([key]) == {key: {DAY2: 3}}
        assert report.last_used([key]) == {key: at(62)}
        # After the flush: the same numbers, nothing counted twice
        flusher.flush()
        assert report.daily([key]) == {key: {DAY2: 3}}
        assert report.last_used([key]) == {key: at(62)}
        # A new use adds to the stored ones
        counter.used(key, MIDNIGHT + 100.0)
        assert report.daily([key, other_key]) == {key: {DAY2: 4}}
        assert report.last_used([key, other_key]) == {key: at(100)}
        # Another process's flushed uses show too
        elsewhere = UsageCounter()
        elsewhere.used(other_key, MIDNIGHT - 10.0)
        UsageFlusher(elsewhere, open_store()).flush()
        assert report.daily([key, other_key]) == {key: {DAY2: 4}, other_key: {DAY1: 1}}
        # Only the last `days` days count: today alone leaves yesterday out
        assert report.daily([key, other_key], days=1) == {key: {DAY2: 4}}
        assert report.unused_since([key, other_key], at(0)) == {other_key}


class TestMemory(UsageContract):
    @pytest.fixture
    def database_url(self) -> str:
        return "memory:"


class TestSQLite(UsageContract):
    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgres(UsageContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url

    def test_the_tables_live_in_the_urls_schema(self, store: UsageStore, postgres_url: str) -> None:
        store.last_used([uuid4()])
        schema = postgres_url.rsplit("schema=", 1)[1]
        with psycopg.connect(postgres_url.split("?")[0]) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " ORDER BY 1",
                (schema,),
            ).fetchall()
        assert tables == [("key_last_used",), ("key_usage_daily",)]


def test_concurrent_uses_are_all_counted_while_a_flusher_drains() -> None:
    store = MemoryUsageStore()
    counter = UsageCounter()
    flusher = UsageFlusher(counter, store, interval=0.001)
    keys = [uuid4() for _ in range(10)]
    uses = 100_000

    def verifying() -> None:
        used = counter.used
        # 20 s of uses, half before midnight: a new slot each second, and stragglers
        for i in range(uses):
            used(keys[i % len(keys)], MIDNIGHT - 10.0 + i * (20.0 / uses))

    # Four threads use keys while the flusher drains every millisecond
    threads = [threading.Thread(target=verifying) for _ in range(4)]
    flusher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flusher.stop()
    # Every one of the 400,000 uses is stored, each on its own UTC day
    daily = store.daily(keys, since=DAY1)
    assert sum(sum(days.values()) for days in daily.values()) == 4 * uses
    per_key_per_day = 4 * uses // 2 // len(keys)
    assert daily == {key: {DAY1: per_key_per_day, DAY2: per_key_per_day} for key in keys}
    assert not counter.pending()

"""The failed-attempt stores on real SQLite, PostgreSQL and Redis, and what happens without them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.auth_failure_stores import (
    AuthFailureStore,
    MemoryAuthFailureStore,
    RedisAuthFailureStore,
    SQLiteAuthFailureStore,
    auth_failure_store_for,
)
from infra.auth_failure_sync import AuthFailureSync
from infra.auth_failures import AuthFailures
from infra.backends import backend_for
from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client, bearer, from_peer, mint
from tests.conftest import FakeClock, settings_for

Open = Callable[[], AuthFailureStore]


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
    """Opens stores on one shared database of the kind, as processes of one deployment would."""
    opened: list[AuthFailureStore] = []
    kind = request.param
    if kind == "memory":
        shared = MemoryAuthFailureStore()

        def make() -> AuthFailureStore:
            return shared
    elif kind == "sqlite":

        def make() -> AuthFailureStore:
            return SQLiteAuthFailureStore(str(tmp_path / "ledger.sqlite3"))
    elif kind == "postgres":
        request.applymarker(pytest.mark.postgres)
        url = request.getfixturevalue("postgres_url")

        def make() -> AuthFailureStore:
            return backend_for(settings_for(url)).auth_failure_store()
    else:
        request.applymarker(pytest.mark.redis)
        url = request.getfixturevalue("redis_url")
        namespace = f"anthra-test:{uuid.uuid4().hex}:"

        def make() -> AuthFailureStore:
            return RedisAuthFailureStore(url, window=60, namespace=namespace)

    def open_one() -> AuthFailureStore:
        store = make()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def test_counts_add_up_across_processes_and_windows_are_kept_apart(open_store: Open) -> None:
    # Two processes add their counts for the same window
    a, b = open_store(), open_store()
    a.add({(100, "ip:6.6.6.6"): 3, (100, "prefix:ant_live_Abc"): 1, (99, "ip:6.6.6.6"): 50})
    b.add({(100, "ip:6.6.6.6"): 2, (100, "ip:7.7.7.7"): 1})
    # Each sees the subjects at or above a count in a window, with the sum
    assert sorted(b.at_least(100, 2)) == [("ip:6.6.6.6", 5)]
    assert sorted(a.at_least(100, 1)) == [
        ("ip:6.6.6.6", 5),
        ("ip:7.7.7.7", 1),
        ("prefix:ant_live_Abc", 1),
    ]
    assert a.at_least(101, 1) == []
    # Nothing to add is nothing to do
    a.add({})


def test_old_windows_are_forgotten(open_store: Open) -> None:
    store = open_store()
    store.add({(98, "ip:6.6.6.6"): 9, (99, "ip:6.6.6.6"): 9, (100, "ip:6.6.6.6"): 1})
    store.forget_before(99)
    if not isinstance(store, RedisAuthFailureStore):  # in Redis each window expires by itself
        assert store.at_least(98, 1) == []
    assert store.at_least(99, 1) == [("ip:6.6.6.6", 9)]


@pytest.mark.redis
def test_in_redis_a_window_expires_after_twice_its_length(redis_url: str) -> None:
    namespace = f"anthra-test:{uuid.uuid4().hex}:"
    store = RedisAuthFailureStore(redis_url, window=60, namespace=namespace)
    store.add({(5, "ip:6.6.6.6"): 1})
    assert 120 <= redis.Redis.from_url(redis_url).ttl(f"{namespace}5") <= 121
    store.close()


@pytest.mark.postgres
def test_processes_starting_together_create_the_table_once(postgres_url: str) -> None:
    stores = [backend_for(settings_for(postgres_url)).auth_failure_store() for _ in range(4)]
    errors: list[BaseException] = []

    def first_sync(store: AuthFailureStore) -> None:
        try:
            store.add({(1, "ip:6.6.6.6"): 1})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=first_sync, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].at_least(1, 1) == [("ip:6.6.6.6", 4)]
    for store in stores:
        store.close()


def test_the_store_follows_the_configuration(tmp_path: Path) -> None:
    def store_for(settings: Settings) -> Any:
        return auth_failure_store_for(settings, backend_for(settings))

    sqlite = store_for(Settings(database_url=f"sqlite:{tmp_path / 'l.sqlite3'}"))
    assert isinstance(sqlite, SQLiteAuthFailureStore)
    assert isinstance(store_for(Settings(database_url="memory:")), MemoryAuthFailureStore)
    redis_store = store_for(Settings(database_url="memory:", redis_url="redis://127.0.0.1:6379/0"))
    assert isinstance(redis_store, RedisAuthFailureStore)
    for store in (sqlite, redis_store):
        store.close()


# An unreachable store


UNREACHABLE = {
    "redis": lambda: RedisAuthFailureStore("redis://127.0.0.1:1/0", window=60),
    "postgres": lambda: backend_for(
        settings_for("postgresql://postgres@127.0.0.1:1/test?connect_timeout=1")
    ).auth_failure_store(),
}


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
def test_an_unreachable_store_keeps_the_counts_and_limits_from_them_alone(kind: str) -> None:
    clock = FakeClock(start=6000.0)
    failures = AuthFailures(per_ip=3, per_prefix=0, window=60, clock=clock)
    store: AuthFailureStore = UNREACHABLE[kind]()
    sync = AuthFailureSync(failures, store, interval=1)
    for _ in range(2):
        assert failures.attempt_failed("6.6.6.6") is None
    with pytest.raises(Exception):  # noqa: PT011 -- whatever the client raises
        sync.sync()
    # Nothing lost: the counts wait for the next round, and this process still limits
    assert failures.take_unsent() == {(100, "ip:6.6.6.6"): 2}
    failures.give_back({(100, "ip:6.6.6.6"): 2})
    assert failures.attempt_failed("6.6.6.6") is None
    assert failures.attempt_failed("6.6.6.6") == 60
    # The background thread logs and goes on rather than stop
    sync._try_sync()
    assert sync._failing
    store.close()


def test_authentication_goes_on_when_the_limiter_store_is_unreachable() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url=ORIGIN,
        redis_url="redis://127.0.0.1:1/0",
        auth_failures_per_ip=3,
        auth_failure_sync_interval=0.05,
    )
    with api_client(settings) as client:
        from_peer(client, "6.6.6.6")
        token = mint(client)["token"]
        answers: list[Any] = []
        for _ in range(4):
            answers.append(client.get("/api/v1/account/whoami", headers=bearer("nope")).status_code)
            assert client.get("/api/v1/account/whoami", headers=bearer(token)).status_code == 200
        # Valid still accepted, invalid still refused: limited from this process's own counts
        assert answers == [401, 401, 401, 429]

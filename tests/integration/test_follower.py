"""A process's index follows the store, reconnects when it loses it, fails closed while it can't."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from infra.backends import backend_for
from infra.follower import IndexFollower
from ledger.key_ledger import KeyLedger
from projections.verification_index.index import IndexStale
from tests.conftest import settings_for

Opened = Callable[[str], tuple[KeyLedger, IndexFollower]]


@pytest.fixture
def open_process() -> Iterator[Opened]:
    """Opens a 'process': its own store connection, ledger, index and running follower."""
    opened: list[tuple[KeyLedger, IndexFollower]] = []

    def open_one(database_url: str) -> tuple[KeyLedger, IndexFollower]:
        backend = backend_for(settings_for(database_url))
        ledger = KeyLedger(backend.store_env())
        follower = IndexFollower(ledger, backend, poll_interval=0.05, heartbeat_interval=0.1)
        follower.start()
        opened.append((ledger, follower))
        return ledger, follower

    yield open_one
    for ledger, follower in opened:
        follower.stop()
        ledger.close()


def wait_until(condition: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.002)
    return time.monotonic() - started


def refused(ledger: KeyLedger, token: str) -> Callable[[], bool]:
    return lambda: ledger.verify(token, ["books:read"]).code == "invalid_token"


def mint(ledger: KeyLedger) -> tuple[str, str]:
    minted = ledger.mint(
        owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
    )
    return str(minted.record.key_id), minted.token


def test_sqlite_revocations_reach_another_process_by_polling(
    sqlite_url: str, open_process: Opened
) -> None:
    (a, _), (b, _) = open_process(sqlite_url), open_process(sqlite_url)
    key_id, token = mint(a)
    wait_until(lambda: b.verify(token, ["books:read"]).valid, within=1.0)
    a.revoke(key_id, actor="user:u1")
    assert wait_until(refused(b, token), within=1.0) < 1.0


@pytest.mark.postgres
def test_postgres_revocations_reach_another_process_and_survive_a_lost_connection(
    postgres_url: str, open_process: Opened
) -> None:
    # B's connections carry a name of their own, so that only its listener is killed below
    b_name = f"t-{uuid.uuid4().hex[:12]}"
    (a, _), (b, follower) = (
        open_process(postgres_url),
        open_process(f"{postgres_url}&application_name={b_name}"),
    )
    # A revocation on A reaches B through the subscription
    key_id, token = mint(a)
    wait_until(lambda: b.verify(token, ["books:read"]).valid, within=1.0)
    a.revoke(key_id, actor="user:u1")
    assert wait_until(refused(b, token), within=1.0) < 0.5

    # Kill B's LISTEN connection under it
    server_url = postgres_url.split("?")[0]
    with psycopg.connect(server_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"{b_name}-listener",),
        ).fetchall()
    assert killed, "found no LISTEN connection to kill"

    # B subscribes again and still sees the next revocation within a second
    key_id, token = mint(a)
    wait_until(lambda: b.verify(token, ["books:read"]).valid, within=1.0)
    a.revoke(key_id, actor="user:u1")
    assert wait_until(refused(b, token), within=1.0) < 1.0
    assert follower.ledger.index.lag() < 0.75


def test_an_index_that_cannot_reach_its_store_fails_closed(
    sqlite_url: str, open_process: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a, _), (b, _) = open_process(sqlite_url), open_process(sqlite_url)
    key_id, token = mint(a)
    wait_until(lambda: b.verify(token, ["books:read"]).valid, within=1.0)

    # B loses its store: every catch-up fails from now on
    def unreachable() -> int:
        raise psycopg.OperationalError("store unreachable")

    monkeypatch.setattr(b, "catch_up", unreachable)
    a.revoke(key_id, actor="user:u1")

    # Within a second B stops vouching for anything rather than accept the revoked token
    def stale() -> bool:
        try:
            b.verify(token, ["books:read"])
        except IndexStale:
            return True
        return False

    assert wait_until(stale, within=1.0) <= 1.0


def test_the_revoking_process_refuses_the_token_even_if_reading_back_fails(
    sqlite_url: str, open_process: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a, _) = open_process(sqlite_url)
    key_id, token = mint(a)

    # Reading the store back fails after the save has committed
    def unreachable() -> int:
        raise psycopg.OperationalError("store unreachable")

    monkeypatch.setattr(a, "catch_up", unreachable)
    a.revoke(key_id, actor="user:u1")
    # The revoke has returned: this process already refuses the token
    assert a.verify(token, ["books:read"]).code == "invalid_token"

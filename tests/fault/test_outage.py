"""PostgreSQL stopped under a running server: every answer is quick and honest, nothing changes,
and the server is back within seconds of the database, whatever the outage lasted."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Secrets, StartServer
from tests.fault.conftest import (
    HEARTBEAT,
    MAX_STALENESS,
    READY_AFTER_RETURN_WITHIN,
    SHUTDOWN_WITHIN,
    Figures,
    assert_unavailable,
    bearer,
    mint,
    quiet_outage_log,
    signed_in,
    timed,
    wait_until,
)
from tests.postgres_cluster import PostgresCluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

Start = Callable[..., PostgresCluster]
# Long enough for an uncapped backoff to have grown past the promise (1, 2, 4, 8 s...); the
# cap itself is proven in tests/unit/test_reconnect_backoff.py.
OUTAGE = 10.0


def test_an_outage_answers_503_at_once_changes_nothing_and_recovers_in_seconds(
    own_postgres: Start, start_server: StartServer, secrets_seen: Secrets, figures: Figures
) -> None:
    cluster = own_postgres()
    server = start_server(cluster.url)
    browser = signed_in(server, "alice", secrets_seen)
    key = mint(browser, secrets_seen, "before the outage")
    api = httpx.Client(base_url=server.url, timeout=5)
    assert api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200
    logged_before = len(server.log_lines())

    # PostgreSQL stops
    cluster.stop("fast")
    stopped_at = time.monotonic()

    # Verification fails closed within the staleness budget: the index cannot prove it is
    # current
    wait_until(
        lambda: api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 503,
        within=MAX_STALENESS + HEARTBEAT + 0.25,
        what="Bearer requests fail closed",
    )
    figures.add("outage: Bearer answered 503 after", time.monotonic() - stopped_at)
    assert api.get("/readyz").status_code == 503

    # Every write answers 503 with Retry-After, quickly, and says nothing was changed
    writes = {
        "mint": lambda: browser.post(
            "/api/v1/keys", json={"name": "during", "scopes": ["books:read"]}
        ),
        "revoke": lambda: browser.delete(f"/api/v1/keys/{key['id']}"),
        "set scopes": lambda: browser.put(
            f"/api/v1/keys/{key['id']}/scopes", json={"scopes": ["books:read"]}
        ),
    }
    for name, write in writes.items():
        response, took = timed(write)
        assert_unavailable(response, took, changes=True)
        figures.add(f"outage: {name} answered 503 in", took)

    # Reads that need the database answer 503 too
    for name, path in {
        "list keys": "/api/v1/keys",
        "history": f"/api/v1/keys/{key['id']}/history",
        "audit trail": "/api/v1/audit",
    }.items():
        response, took = timed(lambda path=path: browser.get(path))  # type: ignore[misc]
        assert_unavailable(response, took, changes=False)
        figures.add(f"outage: {name} answered 503 in", took)

    # PostgreSQL is back after a while
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
    cluster.start()

    # The server is ready, verifies and records again within seconds
    def serving() -> bool:
        return (
            api.get("/readyz").status_code == 200
            and api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200
            and browser.get("/api/v1/keys").status_code == 200
        )

    took = wait_until(serving, READY_AFTER_RETURN_WITHIN, "serving again after the outage")
    figures.add(f"outage of {OUTAGE:.0f} s: serving again after PostgreSQL was back in", took)
    # Nothing the outage refused was recorded
    keys = browser.get("/api/v1/keys").json()["keys"]
    assert [k["id"] for k in keys] == [key["id"]]
    assert keys[0]["status"] == "active"
    assert sorted(keys[0]["scopes"]) == ["account:read", "books:read"]
    history = browser.get(f"/api/v1/keys/{key['id']}/history").json()["events"]
    assert [e["type"] for e in history] == ["Minted"]
    # And writes work again
    mint(browser, secrets_seen, "after the outage")

    # The log tells the story once: no traceback, no line per attempt
    quiet_outage_log(server.log_lines()[logged_before:])
    browser.close()
    api.close()


def test_a_server_stops_within_seconds_while_the_database_is_down(
    own_postgres: Start, start_server: StartServer, secrets_seen: Secrets, figures: Figures
) -> None:
    cluster = own_postgres()
    server = start_server(cluster.url, ANTHRA_USAGE_FLUSH_INTERVAL="60")
    browser = signed_in(server, "alice", secrets_seen)
    key = mint(browser, secrets_seen)
    # A use waiting to be flushed: the last flush, on stop, cannot store it
    with httpx.Client(base_url=server.url, timeout=5) as api:
        assert api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200
    browser.close()

    # PostgreSQL crashes, and the server is asked to stop
    cluster.stop("immediate")
    time.sleep(1.0)
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=SHUTDOWN_WITHIN + 10)
    took = time.monotonic() - started
    figures.add("outage: shutdown took", took)
    assert took < SHUTDOWN_WITHIN
    lines = server.log_lines()
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines[-40:])
    assert any("usage flush on stop failed" in line for line in lines)

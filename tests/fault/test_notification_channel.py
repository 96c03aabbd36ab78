"""The index's notification channel is lost: its LISTEN connection killed by the database, or the
network to the database cut without a word. Verification never accepts a token revoked more
than a second ago, fails closed within the staleness budget while it cannot prove it is
current, and serves again within seconds of the channel coming back."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Secrets, StartServer
from tests.fault.conftest import (
    HEARTBEAT,
    MAX_STALENESS,
    READY_AFTER_RETURN_WITHIN,
    Figures,
    ProxyStart,
    assert_unavailable,
    bearer,
    mint,
    quiet_outage_log,
    signed_in,
    timed,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def named(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def test_a_killed_listen_connection_is_replaced_and_no_revocation_is_missed(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, figures: Figures
) -> None:
    a = start_server(postgres_url)
    name = f"t-{uuid.uuid4().hex[:12]}"
    b = start_server(named(postgres_url, name))
    browser = signed_in(a, "alice", secrets_seen)
    api = httpx.Client(base_url=b.url, timeout=5)
    logged_before = len(b.log_lines())

    for round_ in range(3):
        key = mint(browser, secrets_seen, f"round {round_}")
        wait_until(
            lambda key=key: (
                api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200
            ),
            within=1.0,
            what="B accepts the new key",
        )
        # The database kills B's LISTEN connection, and A revokes the key at once
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"{name}-listener",),
            ).fetchall()
        assert killed, "found no listener connection to kill"
        killed_at = time.monotonic()
        assert browser.delete(f"/api/v1/keys/{key['id']}").status_code == 200
        revoked_at = time.monotonic()

        # B never accepts it a second after the revoke; it refuses it with a 401
        def refused(key: dict[str, str] = key, revoked_at: float = revoked_at) -> bool:
            status = api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code
            assert status == 401 or time.monotonic() - revoked_at < 1.0, status
            return status == 401

        wait_until(refused, within=1.0, what="B refuses the revoked key")
        # And B is ready again
        took = wait_until(
            lambda: api.get("/readyz").status_code == 200, within=2.0, what="B ready again"
        )
        figures.add("LISTEN connection killed: ready again in", time.monotonic() - killed_at)
        assert took < READY_AFTER_RETURN_WITHIN

    quiet_outage_log(b.log_lines()[logged_before:])
    browser.close()
    api.close()


def test_a_cut_network_fails_closed_within_the_budget_and_never_hangs(
    postgres_url: str,
    postgres_server: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    figures: Figures,
    proxy: ProxyStart,
) -> None:
    a = start_server(postgres_url)
    cut_off = proxy(int(postgres_server.split(":")[-1].split("/")[0]))
    b = start_server(cut_off.url(postgres_url))
    from_a = signed_in(a, "alice", secrets_seen)
    from_b = signed_in(b, "alice", secrets_seen)
    key = mint(from_a, secrets_seen)
    other = mint(from_a, secrets_seen)
    api = httpx.Client(base_url=b.url, timeout=5)
    wait_until(
        lambda: api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200,
        within=1.0,
        what="B accepts the key",
    )
    logged_before = len(b.log_lines())

    # The network between B and PostgreSQL goes silent: nothing arrives, nothing closes
    cut_off.cut()
    cut_at = time.monotonic()

    # B stops vouching for tokens within the staleness budget (plus a heartbeat)
    def failing_closed() -> bool:
        return api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 503

    wait_until(failing_closed, within=MAX_STALENESS + HEARTBEAT + 0.25, what="B fails closed")
    figures.add("network cut: Bearer answered 503 after", time.monotonic() - cut_at)

    # A revocation made meanwhile is never accepted by B
    assert from_a.delete(f"/api/v1/keys/{key['id']}").status_code == 200
    assert api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 503

    # Writes and reads on B answer 503 in time rather than hang
    response, took = timed(lambda: from_b.delete(f"/api/v1/keys/{other['id']}"))
    assert_unavailable(response, took, changes=True)
    figures.add("network cut: revoke answered 503 in", took)
    response, took = timed(
        lambda: from_b.post("/api/v1/keys", json={"name": "x", "scopes": ["books:read"]})
    )
    assert_unavailable(response, took, changes=True)
    figures.add("network cut: mint answered 503 in", took)
    response, took = timed(lambda: from_b.get(f"/api/v1/keys/{other['id']}/history"))
    assert_unavailable(response, took, changes=False)
    figures.add("network cut: history answered 503 in", took)

    # The network is back: B serves again, refusing the key revoked during the cut
    time.sleep(max(0.0, 5.0 - (time.monotonic() - cut_at)))
    cut_off.heal()
    took = wait_until(
        lambda: (
            api.get("/api/v1/account/whoami", headers=bearer(other["token"])).status_code == 200
        ),
        within=READY_AFTER_RETURN_WITHIN,
        what="B serves again",
    )
    figures.add("network cut: serving again after the network was back in", took)
    assert api.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 401
    # The revoke B refused changed nothing
    history = from_a.get(f"/api/v1/keys/{other['id']}/history").json()["events"]
    assert [e["type"] for e in history] == ["Minted"]

    quiet_outage_log(b.log_lines()[logged_before:])
    for client in (from_a, from_b, api):
        client.close()

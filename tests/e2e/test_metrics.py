"""Prometheus metrics from real server processes: read by prometheus_client's own parser from a
two-worker server, on the main port to loopback only, or on a port of their own."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_two_worker_server_counts_every_worker_and_no_label_holds_a_secret(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(postgres_url, "--workers", "2")
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    alice = {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"}
    key = httpx.post(
        f"{server.url}/api/v1/keys", json={"name": "m", "scopes": ["books:read"]}, headers=alice
    ).json()
    secrets_seen.tokens.append(key["token"])
    bearer = {"Authorization": f"Bearer {key['token']}"}
    time.sleep(0.5)  # both workers know the key
    for _ in range(20):  # new connections: spread over both workers
        with httpx.Client() as client:
            client.get(f"{server.url}/api/v1/account/whoami", headers=bearer)
            client.get(f"{server.url}/api/v1/keys", headers=bearer)  # 403: no account:read
            client.get(
                f"{server.url}/api/v1/account/whoami",
                headers={"Authorization": "Bearer ant_live_" + "x" * 50},
            )
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"{server.url}/metrics").text
        seen = samples(text)
        valid = seen.get(("anthra_verifications_total", (("outcome", "valid"), ("route", "api"))))
        if (valid is not None and valid >= 40) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert valid == 40, text
    assert (
        seen[("anthra_verifications_total", (("outcome", "invalid_token"), ("route", "api")))] == 20
    )
    assert seen[("anthra_index_keys", ())] >= 1
    assert ("anthra_request_duration_seconds_count", (("route", "api"),)) in seen
    for secret in (key["token"][:12], key["id"], "alice"):
        assert secret not in text


def test_metrics_on_a_port_of_their_own_and_not_on_the_main_one(
    sqlite_url: str, start_server: StartServer
) -> None:
    port = free_port()
    server = start_server(sqlite_url, ANTHRA_METRICS_PORT=str(port))
    assert httpx.get(f"{server.url}/metrics").status_code == 404
    names: set[str] = set()
    deadline = time.monotonic() + 10
    while not {"anthra_index_keys", "anthra_index_lag_seconds"} <= names:
        assert time.monotonic() < deadline, names
        time.sleep(0.2)
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.TransportError:
            continue
        names = {family.name for family in text_string_to_metric_families(text)}

"""Fault fixtures: real servers on a PostgreSQL of the test's own (stopped, crashed, locked, cut),
a proxy that black-holes the network, and the figures each fault showed, printed at the end."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie

# The end-to-end fixtures, reused: servers whose every log line is searched for secrets.
from tests.e2e.conftest import Secrets, secrets_seen, start_server  # noqa: F401
from tests.e2e.server import ServerProcess
from tests.fault.proxy import TcpProxy

_FIGURES = pytest.StashKey[list[tuple[str, str]]]()
# What the service promises (README, Reliability): the fault tests hold it to these.
WRITE_ANSWERS_WITHIN = 3.0
READY_AFTER_RETURN_WITHIN = 5.0
SHUTDOWN_WITHIN = 5.0
MAX_STALENESS = 0.75
HEARTBEAT = 0.25


class Figures:
    """What each fault measured, for the table printed after the run."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.rows = rows

    def add(self, what: str, seconds: float) -> None:
        self.rows.append((what, f"{seconds:.2f} s"))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.config.stash.setdefault(_FIGURES, []))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_FIGURES, [])
    if not rows:
        return
    terminalreporter.section("fault figures (this run)")
    width = max(len(what) for what, _ in rows)
    for what, figure in rows:
        terminalreporter.write_line(f"{what:<{width}}  {figure}")


ProxyStart = Callable[[int], TcpProxy]


@pytest.fixture
def proxy() -> Iterator[ProxyStart]:
    proxies: list[TcpProxy] = []

    def start(target_port: int) -> TcpProxy:
        proxies.append(TcpProxy(target_port))
        return proxies[-1]

    yield start
    for p in proxies:
        p.close()


def signed_in(server: ServerProcess, user_id: str, secrets: Secrets) -> httpx.Client:
    """A browser signed in as the user, on the server; its cookie is searched for in the logs."""
    cookie = session_cookie(user_id)
    secrets.cookies.append(cookie)
    return httpx.Client(
        base_url=server.url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=WRITE_ANSWERS_WITHIN + 2,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint(browser: httpx.Client, secrets: Secrets, name: str = "k") -> dict[str, Any]:
    response = browser.post(
        "/api/v1/keys", json={"name": name, "scopes": ["account:read", "books:read"]}
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    secrets.tokens.append(key["token"])
    return key


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def wait_until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until the condition held; fails the test if it did not within `within`."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.02)


def assert_unavailable(response: httpx.Response, took: float, *, changes: bool) -> None:
    """A 503 the caller can act on: Retry-After, a JSON error saying what, and quickly."""
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert "database" in body["error_description"]
    if changes:
        assert "nothing was changed" in body["error_description"]
    assert took < WRITE_ANSWERS_WITHIN


def quiet_outage_log(lines: list[str]) -> None:
    """One line when a part of the service loses the database, one when it is back: no
    traceback, no line per attempt, never "failing" twice without "working again" between."""
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    assert not [line for line in lines if "error connecting in" in line]
    states: dict[str, list[str]] = {}
    for line in lines:
        for state in (" failing: ", " working again after "):
            if state in line:
                part = line.split(state)[0].split(": ", 1)[-1].strip()
                states.setdefault(part, []).append(state.strip())
    for part, seen in states.items():
        alternating = all(a != b for a, b in itertools.pairwise(seen))
        assert alternating and seen[0] == "failing:", f"{part} logged {seen}"

"""End-to-end fixtures: servers on a fresh PostgreSQL schema, and a check of every log line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import OPERATOR_SECRET, SECRET
from tests.e2e.browser import CHROMIUM_ARGS, chromium_path
from tests.e2e.server import ServerProcess, windows

StartServer = Callable[..., ServerProcess]


class Secrets:
    """Every token, session cookie and webhook signing secret a test handled, to look for in
    the logs afterwards."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.cookies: list[str] = []
        self.webhook_secrets: list[str] = []


@pytest.fixture
def secrets_seen() -> Secrets:
    return Secrets()


@pytest.fixture
def start_server(tmp_path: Path, secrets_seen: Secrets) -> Iterator[StartServer]:
    """Starts servers; afterwards stops them and proves no log line holds a secret."""
    servers: list[ServerProcess] = []

    def start(database_url: str, *args: str, wait: bool = True, **env: str) -> ServerProcess:
        server = ServerProcess(
            {
                "ANTHRA_DATABASE_URL": database_url,
                "AUTH_SECRET": SECRET,
                "ANTHRA_OPERATOR_SECRET": OPERATOR_SECRET,
                "ANTHRA_LOG_LEVEL": "DEBUG",
                **env,
            },
            tmp_path / f"server-{len(servers)}.log",
            tmp_path,
            args,
        )
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
    lines = [line for server in servers for line in server.log_lines()]
    assert lines, "the servers logged nothing; the check below would prove nothing"
    # A webhook secret is a secret whole: no 13 characters of it may show, as of a token.
    shown_once = secrets_seen.tokens + secrets_seen.webhook_secrets
    token_runs = set().union(*(windows(t, 13) for t in shown_once)) if shown_once else set()
    cookie_runs = (
        set().union(*(windows(c, 16) for c in secrets_seen.cookies))
        if secrets_seen.cookies
        else set()
    )
    for line in lines:
        leaked = [run for run in token_runs if run in line]
        assert not leaked, (
            f"a log line holds 13+ characters of a token or webhook secret: {line[:200]!r}"
        )
        leaked = [run for run in cookie_runs if run in line]
        assert not leaked, f"a log line holds part of a session cookie: {line[:200]!r}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium per test module, driven by Playwright.

    Not per session: Playwright's sync API keeps an event loop running in this thread while it
    is open, and async tests elsewhere in the suite need to start their own.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()

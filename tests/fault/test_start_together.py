"""Several servers started at the same moment on an empty database all start: the first creates
the tables while the others wait for it, instead of colliding in PostgreSQL's catalogue."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import ServerProcess
from tests.fault.conftest import bearer, mint, signed_in, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROUNDS = 2
SERVERS = 3


def test_servers_started_together_on_an_empty_database_all_start(
    postgres_server: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    separator = "&" if "?" in postgres_server else "?"
    for _ in range(ROUNDS):
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            # Started at once, on a schema with no tables yet
            url = f"{postgres_server}{separator}schema={schema}"
            servers = [start_server(url, wait=False) for _ in range(SERVERS)]
            for server in servers:
                server.wait_ready()
            # All of them serve the same ledger
            browser = signed_in(servers[0], "alice", secrets_seen)
            key = mint(browser, secrets_seen)
            browser.close()
            for server in servers:
                accepts(server, key["token"])
            for server in servers:
                server.stop()
        finally:
            with psycopg.connect(postgres_server, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def accepts(server: ServerProcess, token: str) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as api:
        wait_until(
            lambda: api.get("/api/v1/account/whoami", headers=bearer(token)).status_code == 200,
            within=1.0,
            what="every server accepts the key",
        )

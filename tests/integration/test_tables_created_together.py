"""Processes opening the ledger at the same moment on an empty PostgreSQL schema all open it: the
event store, the audit trail, the key states and usage create their tables one at a time."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from infra.backends import backend_for
from ledger.key_ledger import KeyLedger
from projections.usage.counter import UsageBatch
from tests.conftest import settings_for

pytestmark = pytest.mark.postgres

ROUNDS = 5
OPENERS = 4


@pytest.fixture
def empty_schema_urls(postgres_server: str) -> Iterator[list[str]]:
    """URLs of fresh schemas with no tables, dropped afterwards."""
    schemas = [f"t_{uuid.uuid4().hex[:16]}" for _ in range(ROUNDS)]
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for schema in schemas:
            admin.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_server else "?"
    yield [f"{postgres_server}{separator}schema={schema}" for schema in schemas]
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for schema in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_everything(url: str) -> None:
    """What a server does at start: every table of the ledger's, created if missing."""
    backend = backend_for(settings_for(url))
    ledger = KeyLedger(backend.store_env())
    try:
        backend.audit_view(ledger)
        backend.key_states_view(ledger)
        usage = backend.usage_store()
        try:
            usage.add(UsageBatch(last_used={uuid.uuid4(): 1.0}))
        finally:
            usage.close()
    finally:
        ledger.close()


def test_openers_starting_together_on_an_empty_schema_all_succeed(
    empty_schema_urls: list[str],
) -> None:
    for url in empty_schema_urls:
        failures = open_together(url)
        assert not failures, [f"{type(e).__name__}: {e}" for e in failures]


def open_together(url: str) -> list[BaseException]:
    """OPENERS threads opening the ledger at the same instant; what each raised, if anything."""
    failures: list[BaseException] = []
    start = threading.Barrier(OPENERS)

    def opener() -> None:
        start.wait()
        try:
            open_everything(url)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures

"""Shared fixtures: event-store backends, PostgreSQL schemas per test, a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from infra.settings import Settings
from tests.postgres_cluster import Certificates, PostgresCluster

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "ANTHRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ANTHRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test PostgreSQL URL; in CI a missing server fails the test instead of skipping it."""
    problem = _postgres_reachable()
    if problem is not None:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({problem}). Start PostgreSQL, or set "
            "ANTHRA_TEST_POSTGRES_URL to one you have, to run these tests."
        )
        _require(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database URL whose tables live in a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; in CI a missing server fails the test instead of skipping it."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        _require(
            f"Redis is not reachable at {REDIS_URL} ({type(e).__name__}). Start Redis, or set "
            "ANTHRA_TEST_REDIS_URL to one you have, to run these tests."
        )
    return REDIS_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'ledger.sqlite3'}"


def settings_for(database_url: str, **overrides: object) -> Settings:
    return Settings(database_url=database_url, **overrides)  # type: ignore[arg-type]


def _require(problem: str) -> None:
    """In CI a missing prerequisite fails the test; on a developer machine it skips, saying why."""
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def own_postgres() -> Iterator[Callable[..., PostgresCluster]]:
    """Starts PostgreSQL clusters of the test's own (initdb, a free port), destroyed afterwards."""
    from tests.postgres_cluster import postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        _require(
            "PostgreSQL's server programs (initdb, pg_ctl) were not found: install Debian's "
            "postgresql package, or put pg_config on PATH, to run the fault and TLS tests."
        )
        raise AssertionError("unreachable")
    clusters: list[PostgresCluster] = []

    def start(certificates: Certificates | None = None) -> PostgresCluster:
        cluster = PostgresCluster(bindir, certificates)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in clusters:
        cluster.destroy()

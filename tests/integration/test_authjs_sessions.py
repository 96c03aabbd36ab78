"""Auth.js database sessions: a live session token names its user; nothing else names anyone."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

from infra.authjs_sessions import DatabaseSessions, SessionClaims

pytestmark = pytest.mark.postgres

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none"

# @auth/pg-adapter's schema, as its documentation gives it.
ADAPTER_SCHEMA = """
CREATE TABLE verification_token (identifier TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL,
    token TEXT NOT NULL, PRIMARY KEY (identifier, token));
CREATE TABLE accounts (id SERIAL, "userId" INTEGER NOT NULL, type VARCHAR(255) NOT NULL,
    provider VARCHAR(255) NOT NULL, "providerAccountId" VARCHAR(255) NOT NULL,
    refresh_token TEXT, access_token TEXT, expires_at BIGINT, id_token TEXT, scope TEXT,
    session_state TEXT, token_type TEXT, PRIMARY KEY (id));
CREATE TABLE sessions (id SERIAL, "userId" INTEGER NOT NULL, expires TIMESTAMPTZ NOT NULL,
    "sessionToken" VARCHAR(255) NOT NULL, PRIMARY KEY (id));
CREATE TABLE users (id SERIAL, name VARCHAR(255), email VARCHAR(255),
    "emailVerified" TIMESTAMPTZ, image TEXT, PRIMARY KEY (id));
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class AdapterTables:
    """The adapter's tables in a test's own schema, written as Auth.js would write them."""

    url: str
    conn: psycopg.Connection[tuple[Any, ...]]

    def add_user(self, name: str | None = "Ada", email: str | None = "ada@example.org") -> int:
        row = self.conn.execute(
            "INSERT INTO users (name, email) VALUES (%s, %s) RETURNING id", (name, email)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def add_session(self, user_id: int, expires: datetime, token: str | None = None) -> str:
        token = token or str(uuid.uuid4())
        self.conn.execute(
            'INSERT INTO sessions ("userId", expires, "sessionToken") VALUES (%s, %s, %s)',
            (user_id, expires, token),
        )
        return token

    def delete_session(self, token: str) -> None:
        self.conn.execute('DELETE FROM sessions WHERE "sessionToken" = %s', (token,))


@pytest.fixture
def tables(postgres_url: str) -> Iterator[AdapterTables]:
    parts = urlsplit(postgres_url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(ADAPTER_SCHEMA)
        yield AdapterTables(postgres_url, conn)


@pytest.fixture
async def sessions(tables: AdapterTables) -> AsyncIterator[DatabaseSessions]:
    found = DatabaseSessions(tables.url)
    yield found
    await found.close()


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


# A live session


@pytest.mark.anyio
async def test_a_live_session_maps_to_its_user(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    user_id = tables.add_user(name="Ada Lovelace", email="ada@example.org")
    expires = in_days(30)
    token = tables.add_session(user_id, expires)
    assert await sessions.user(token) == SessionClaims(
        user_id=str(user_id),
        email="ada@example.org",
        name="Ada Lovelace",
        expires_at=expires.timestamp(),
    )


@pytest.mark.anyio
async def test_a_user_without_name_or_email_still_signs_in(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    user_id = tables.add_user(name=None, email=None)
    claims = await sessions.user(tables.add_session(user_id, in_days(1)))
    assert claims is not None
    assert (claims.user_id, claims.email, claims.name) == (str(user_id), None, None)


@pytest.mark.anyio
async def test_each_token_names_its_own_user(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    ada, grace = tables.add_user("Ada", "ada@example.org"), tables.add_user("Grace", "g@x.org")
    ada_token = tables.add_session(ada, in_days(1))
    grace_token = tables.add_session(grace, in_days(1))
    found = [await sessions.user(ada_token), await sessions.user(grace_token)]
    assert [claims and claims.user_id for claims in found] == [str(ada), str(grace)]


@pytest.mark.anyio
async def test_a_token_as_long_as_the_column_allows_is_looked_up(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    user_id = tables.add_user()
    token = tables.add_session(user_id, in_days(1), token="t" * 255)
    claims = await sessions.user(token)
    assert claims is not None
    assert claims.user_id == str(user_id)


# Sessions that have ended


@pytest.mark.anyio
async def test_an_expired_session_is_signed_out(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    token = tables.add_session(tables.add_user(), in_days(-1 / 86_400))
    assert await sessions.user(token) is None


@pytest.mark.anyio
async def test_a_deleted_session_is_signed_out_at_once(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    token = tables.add_session(tables.add_user(), in_days(30))
    assert await sessions.user(token) is not None
    # Signing out deletes the row; nothing is cached, so the next lookup sees it gone
    tables.delete_session(token)
    assert await sessions.user(token) is None


# Tokens that name no session


@pytest.mark.anyio
async def test_an_unknown_token_is_signed_out(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    tables.add_session(tables.add_user(), in_days(30))
    assert await sessions.user(str(uuid.uuid4())) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token",
    ["' OR 1=1 --", "x' OR '1'='1", '" OR 1=1 --', "'; DELETE FROM sessions; --"],
)
async def test_sql_in_a_token_is_just_an_unknown_token(
    tables: AdapterTables, sessions: DatabaseSessions, token: str
) -> None:
    live = tables.add_session(tables.add_user(), in_days(30))
    assert await sessions.user(token) is None
    assert await sessions.user(live) is not None


@pytest.mark.anyio
async def test_a_token_shared_by_two_sessions_is_refused(
    tables: AdapterTables, sessions: DatabaseSessions, caplog: pytest.LogCaptureFixture
) -> None:
    # The adapter has no unique index on "sessionToken"; which user wins must not be up to a scan
    token = tables.add_session(tables.add_user("Ada"), in_days(1))
    tables.add_session(tables.add_user("Eve"), in_days(1), token=token)
    with caplog.at_level(logging.DEBUG):
        assert await sessions.user(token) is None
    assert "shared" in caplog.text
    assert token not in caplog.text


# Malformed tokens: refused without asking the database, which here is unreachable


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "a" * 15,
        "a" * 256,
        "a" * 300,
        "abcdefgh\x00ijklmnop",
        "abcdefgh\nijklmnop",
        "abcdefgh\tijklmnop",
        "abcdefghéijklmnop",
        "abcdefgh\x7fijklmnop",
        "abcdefgh ijklmnop",
        "' OR 1=1 -- ' OR 1=1 --",
    ],
    ids=[
        "empty",
        "one char",
        "15 chars",
        "256 chars",
        "300 chars",
        "NUL",
        "newline",
        "tab",
        "non-ASCII",
        "DEL",
        "space",
        "SQL",
    ],
)
async def test_a_malformed_token_is_refused_without_a_query(token: str) -> None:
    unreachable = DatabaseSessions(UNREACHABLE)
    try:
        assert await unreachable.user(token) is None
    finally:
        await unreachable.close()


# The database unavailable


@pytest.mark.anyio
async def test_an_unreachable_database_raises_within_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = str(uuid.uuid4())
    unreachable = DatabaseSessions(UNREACHABLE)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(psycopg.OperationalError):
            await unreachable.user(token)
    finally:
        await unreachable.close()
    assert time.monotonic() - started < 8
    assert token not in caplog.text


@pytest.mark.anyio
async def test_a_stuck_query_is_cancelled_by_the_statement_timeout(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    token = tables.add_session(tables.add_user(), in_days(1))
    with psycopg.connect(urlsplit(tables.url)._replace(query="").geturl()) as locker:
        schema = parse_qs(urlsplit(tables.url).query)["schema"][0]
        locker.execute(
            sql.SQL("LOCK TABLE {}.sessions IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(schema)
            )
        )
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            await sessions.user(token)
        assert time.monotonic() - started < 4
    # The lock gone, the same pool answers again
    assert await sessions.user(token) is not None


@pytest.mark.anyio
async def test_connections_killed_by_a_restart_cost_no_request(tables: AdapterTables) -> None:
    name = f"anthra-test-{uuid.uuid4().hex[:12]}"
    found = DatabaseSessions(f"{tables.url}&application_name={name}")
    try:
        token = tables.add_session(tables.add_user(), in_days(1))
        assert await found.user(token) is not None
        killed = tables.conn.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (name,),
        ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        assert await found.user(token) is not None
    finally:
        await found.close()


@pytest.mark.anyio
async def test_a_pool_of_dead_connections_is_replaced_without_a_pause(
    tables: AdapterTables,
) -> None:
    name = f"anthra-test-{uuid.uuid4().hex[:12]}"
    found = DatabaseSessions(f"{tables.url}&application_name={name}")
    try:
        token = tables.add_session(tables.add_user(), in_days(1))
        # Lookups at once grow the pool to all its connections
        await asyncio.gather(*(found.user(token) for _ in range(8)))
        # A restart kills every one of them
        killed = tables.conn.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (name,),
        ).fetchone()
        assert killed is not None
        assert killed[0] >= 2
        # The next lookup skips the dead ones and answers at once, not after a backoff
        started = time.monotonic()
        assert await found.user(token) is not None
        assert time.monotonic() - started < 0.5
    finally:
        await found.close()


# Lifecycle


@pytest.mark.anyio
async def test_constructing_connects_to_nothing_and_close_is_idempotent() -> None:
    unreachable = DatabaseSessions(UNREACHABLE)
    await unreachable.close()
    await unreachable.close()


@pytest.mark.anyio
async def test_a_closed_lookup_raises_a_psycopg_error(
    tables: AdapterTables, sessions: DatabaseSessions
) -> None:
    token = tables.add_session(tables.add_user(), in_days(1))
    assert await sessions.user(token) is not None
    await sessions.close()
    with pytest.raises(psycopg.OperationalError):
        await sessions.user(token)


def test_the_api_signs_in_a_database_session_and_signs_out_a_deleted_one(
    tables: AdapterTables,
) -> None:
    from litestar.testing import TestClient

    from api.app import create_app
    from infra.settings import Settings

    # The ledger and Auth.js's tables share one PostgreSQL database
    user_id = tables.add_user(name="Grace", email="grace@example.org")
    token = tables.add_session(user_id, in_days(30))
    app = create_app(
        Settings(
            database_url=tables.url,
            authjs_database_url=tables.url,
            host="0.0.0.0",  # noqa: S104
            public_url="http://testserver",
        )
    )
    cookie = {"Cookie": f"authjs.session-token={token}", "Sec-Fetch-Site": "same-origin"}
    with TestClient(app) as client:
        # A live database session is the signed-in user, with every scope
        assert client.get("/api/v1/account", headers=cookie).json()["user_id"] == str(user_id)
        minted = client.post(
            "/api/v1/keys", json={"name": "db session", "scopes": ["books:read"]}, headers=cookie
        )
        assert minted.status_code == 201
        # Signed out in Auth.js (row deleted): signed out here at once
        tables.delete_session(token)
        assert client.get("/api/v1/account", headers=cookie).status_code == 401
        # An expired one is refused too
        expired = tables.add_session(user_id, in_days(-1))
        stale = {"Cookie": f"authjs.session-token={expired}"}
        assert client.get("/api/v1/account", headers=stale).status_code == 401


# Configured only when asked for


def _api(settings: Any) -> Any:
    from litestar.testing import TestClient

    from api.app import create_app

    return TestClient(create_app(settings))


def test_a_ledger_on_postgresql_without_the_setting_never_looks_sessions_up(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from infra.settings import Settings

    # JWT cookies only: the ledger's own database has no Auth.js tables, and none are needed
    settings = Settings(
        database_url=postgres_url, auth_secrets=("s" * 32,), public_url="http://testserver"
    )
    with _api(settings) as client, caplog.at_level(logging.INFO):
        assert client.app.state.authenticator.database_sessions is None
        for _ in range(50):
            answer = client.get(
                "/api/v1/account/whoami", headers={"Cookie": "authjs.session-token=x"}
            )
            assert answer.status_code == 401
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_configured_without_the_adapter_s_tables_the_start_fails_naming_them(
    postgres_url: str,
) -> None:
    from infra.authjs_sessions import SessionTablesMissing
    from infra.settings import Settings

    settings = Settings(
        database_url="memory:",
        authjs_database_url=postgres_url,
        auth_secrets=("s" * 32,),
        public_url="http://testserver",
    )
    with pytest.raises(BaseExceptionGroup) as failed, _api(settings):
        pass
    assert failed.group_contains(SessionTablesMissing, match="missing sessions.expires")


def test_a_session_database_outage_is_a_503_that_says_so_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from infra.settings import Settings

    settings = Settings(
        database_url="memory:",
        authjs_database_url=f"{UNREACHABLE}?connect_timeout=1",
        auth_secrets=("s" * 32,),
        public_url="http://testserver",
    )
    session = {"Cookie": f"authjs.session-token={uuid.uuid4()}"}
    with caplog.at_level(logging.INFO), _api(settings) as client:
        # A cookie that cannot be a session token is signed out without asking the database
        garbage = client.get("/api/v1/account/whoami", headers={"Cookie": "authjs.session-token=x"})
        assert garbage.status_code == 401
        # One that could be is a 503 naming what is unavailable, with Retry-After
        for _ in range(20):
            answer = client.get("/api/v1/account/whoami", headers=session)
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            assert answer.json()["error_description"] == (
                "the session database is unreachable; retry shortly"
            )
    # However many requests meet it, the outage is told once by each part that sees it: the
    # pool, the start-up check and the authenticator
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "session database failing" in w]) == 1
    assert len(warnings) <= 3, warnings
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("anthra"))

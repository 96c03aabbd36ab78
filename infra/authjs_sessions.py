"""Auth.js database sessions (@auth/pg-adapter): a session token to its user, from PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

import msgspec
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg_pool import PoolClosed

from infra.backends.postgres.pool import SteadyAsyncPool
from infra.backends.postgres.url import parse_postgres_url


class SessionClaims(msgspec.Struct, frozen=True):
    """Who a valid session speaks for: an Auth.js session cookie, or a database session."""

    user_id: str
    email: str | None
    name: str | None
    expires_at: float | None


log = logging.getLogger("anthra.authjs_database")

# Auth.js mints UUIDs (36 characters); a custom generateSessionToken makes random strings in
# hex, base64 or base64url. A cookie that cannot be one (too short, too long for the column,
# other characters) is signed out without a query: garbage costs the database nothing.
_WELL_FORMED: Final = re.compile(r"[A-Za-z0-9._~+/=-]{16,255}")
_STATEMENT_TIMEOUT: Final = "2s"
# The adapter puts no unique index on "sessionToken": fetch two so a shared token is refused
# rather than resolved to whichever row the scan meets first.
_LOOKUP: Final = """
    SELECT u.id, u.email, u.name, s.expires
    FROM sessions s JOIN users u ON s."userId" = u.id
    WHERE s."sessionToken" = %s AND s.expires > now()
    LIMIT 2
"""


_TABLES: Final = """
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name IN ('sessions', 'users')
"""
_NEEDED: Final = {
    "sessions": {"sessionToken", "userId", "expires"},
    "users": {"id", "email", "name"},
}


class SessionTablesMissing(Exception):
    """The session database answers, but @auth/pg-adapter's tables are not in it."""


class DatabaseSessions:
    """Auth.js database sessions read from @auth/pg-adapter's tables."""

    def __init__(self, database_url: str, *, max_size: int = 4) -> None:
        database = parse_postgres_url(database_url, "ANTHRA_AUTHJS_DATABASE_URL")
        params = dict(database.params)
        params.setdefault("application_name", "anthra-authjs-sessions")
        self._schema = database.schema
        self.description = database.describe()
        self._lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        # Each connection is tested before use, the next tried at once if it is dead, and a
        # lost one reconnected at most a second apart however long the database was away.
        self._pool = SteadyAsyncPool(
            make_conninfo("", **params),
            kwargs={"autocommit": True},
            min_size=1,
            max_size=max_size,
            open=False,
            configure=self._configure,
            timeout=database.connect_timeout,
            reconnect_timeout=365 * 86_400.0,
            name="authjs-sessions",
        )

    async def check_tables(self) -> None:
        """Raise SessionTablesMissing unless the adapter's tables and columns are there.

        psycopg errors (the database unreachable) propagate: the caller decides whether that
        stops a start.
        """
        pool = await self._open_pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(_TABLES)
            found: dict[str, set[str]] = {}
            for table, column in await cursor.fetchall():
                found.setdefault(table, set()).add(column)
        missing = [
            f"{table}.{column}"
            for table, columns in _NEEDED.items()
            for column in sorted(columns - found.get(table, set()))
        ]
        if missing:
            raise SessionTablesMissing(
                f"ANTHRA_AUTHJS_DATABASE_URL ({self.description}) has no Auth.js "
                f"@auth/pg-adapter tables: missing {', '.join(missing)}. Create them with the "
                "adapter's schema, or unset ANTHRA_AUTHJS_DATABASE_URL to accept JWT session "
                "cookies only."
            )

    async def user(self, session_token: str) -> SessionClaims | None:
        """The user a live session token belongs to, or None; psycopg errors propagate."""
        if not _WELL_FORMED.fullmatch(session_token):
            return None
        pool = await self._open_pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(_LOOKUP, (session_token,))
            rows = await cursor.fetchall()
        if len(rows) != 1:
            if rows:
                log.warning("database session refused: its token is shared by several sessions")
            return None
        user_id, email, name, expires = rows[0]
        return SessionClaims(
            user_id=str(user_id), email=email, name=name, expires_at=expires.timestamp()
        )

    async def close(self) -> None:
        """Close the pool's connections; later lookups raise PoolClosed."""
        async with self._lock:
            self._closed = True
            if self._opened:
                await self._pool.close()

    async def _open_pool(self) -> SteadyAsyncPool:
        if not self._opened:
            async with self._lock:
                if self._closed:
                    raise PoolClosed("the Auth.js session pool is closed")
                if not self._opened:
                    # Only starts the workers: the lookup's wait for a connection (the URL's
                    # connect_timeout) is then the one bound on how long a request is held.
                    await self._pool.open(wait=False)
                    self._opened = True
        return self._pool

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        # set_config, not SET, because SET takes no parameters.
        if self._schema is None:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (_STATEMENT_TIMEOUT,)
            )
        else:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, false),"
                " set_config('search_path', %s, false)",
                (_STATEMENT_TIMEOUT, _quote_identifier(self._schema)),
            )


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

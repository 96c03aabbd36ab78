"""Where the ledger keeps its events and read models — in memory, in a SQLite file, or in
PostgreSQL — chosen once, from the database URL, by the composition root.

A Backend builds everything that differs between them: the event store's environment, the views
of the read models (audit trail, key states, usage, failed attempts), and how a process learns of
other processes' writes (polling the store, or a LISTEN channel). No other module names a
backend or looks at the library's factory to find out which one it has.
"""

from __future__ import annotations

from pathlib import Path

from infra.backends.base import Backend
from infra.backends.memory import MemoryBackend
from infra.backends.postgres import PostgresBackend
from infra.backends.postgres.url import is_postgres_url, parse_postgres_url
from infra.backends.sqlite import DEFAULT_PATH, SQLiteBackend
from infra.settings import Settings, SettingsError

__all__ = ["Backend", "backend_for", "check_database_url"]

MEMORY = "memory:"
SQLITE = "sqlite:"


def check_database_url(url: str) -> None:
    """Refuse a database URL that names no backend, or a PostgreSQL parameter libpq lacks."""
    if is_postgres_url(url):
        parse_postgres_url(url)
    elif url and url != MEMORY and not url.startswith(SQLITE):
        raise SettingsError(
            "ANTHRA_DATABASE_URL must be unset (SQLite under ./var/), 'memory:', "
            "'sqlite:PATH' or 'postgresql://…'"
        )


def backend_for(settings: Settings) -> Backend:
    """The backend the database URL names: unset → the SQLite file under ./var/."""
    url = settings.database_url
    if url == MEMORY:
        return MemoryBackend()
    if is_postgres_url(url):
        return PostgresBackend(parse_postgres_url(url), settings.db_pool_size, settings.db_pool_max)
    return SQLiteBackend(Path(url.removeprefix(SQLITE)) if url else DEFAULT_PATH)

"""Which event store: one database URL chooses memory, SQLite or PostgreSQL for the library."""

from __future__ import annotations

from pathlib import Path

from infra.database_url import parse_postgres_url
from infra.postgres_store import CONNINFO, LOCK_TIMEOUT_SECONDS, POOL_MAX, POOL_WAIT
from infra.settings import DEFAULT_SQLITE_PATH, Settings


def store_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing environment for the configured database."""
    url = settings.database_url
    backend = settings.backend
    if backend == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if backend == "sqlite":
        path = Path(url.removeprefix("sqlite:")) if url else DEFAULT_SQLITE_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    return postgres_env(settings)


def postgres_env(settings: Settings) -> dict[str, str]:
    """The library's POSTGRES_* keys, and the whole connection string for our factory's pool."""
    url = parse_postgres_url(settings.database_url)
    params = url.params
    env = {
        "PERSISTENCE_MODULE": "infra.postgres_store:LedgerPostgresFactory",
        CONNINFO: url.conninfo,
        # The library insists on these; the pool connects with the connection string above.
        "POSTGRES_DBNAME": params.get("dbname", ""),
        "POSTGRES_HOST": params.get("host", ""),
        "POSTGRES_USER": params.get("user", ""),
        "POSTGRES_PASSWORD": "",
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        POOL_MAX: str(settings.db_pool_max),
        POOL_WAIT: params["connect_timeout"],
        # The library's LOCK TABLE before each write waits this long, not forever, for the table.
        "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
    }
    if url.schema:
        env["POSTGRES_SCHEMA"] = url.schema
    return env


def describe_store(settings: Settings) -> str:
    """Where the events are, for the start-up log line: never a password."""
    if settings.backend == "postgres":
        return parse_postgres_url(settings.database_url).describe()
    if settings.backend == "sqlite":
        return settings.database_url.removeprefix("sqlite:") or str(DEFAULT_SQLITE_PATH)
    return "in memory"

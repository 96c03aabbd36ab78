"""Which event store: one database URL chooses memory, SQLite or PostgreSQL for the library."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from infra.settings import DEFAULT_SQLITE_PATH, Settings, SettingsError


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
    return postgres_env(url)


def postgres_env(url: str) -> dict[str, str]:
    """postgresql://user:password@host:port/dbname?schema=… as the library's POSTGRES_* keys."""
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise SettingsError("ANTHRA_DATABASE_URL needs a database name: postgresql://host/DBNAME")
    query = parse_qs(parts.query)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", ["5"])[0],
        # LISTEN holds one connection; the pool must have room for commands beside it.
        "POSTGRES_POOL_SIZE": query.get("pool_size", ["5"])[0],
        "POSTGRES_MAX_OVERFLOW": "10",
        "POSTGRES_PRE_PING": "y",
    }
    if "schema" in query:
        env["POSTGRES_SCHEMA"] = query["schema"][0]
    return env


def redacted_url(url: str) -> str:
    """The database URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()

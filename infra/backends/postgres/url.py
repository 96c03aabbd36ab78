"""The PostgreSQL database URL, read once: every libpq parameter in it reaches every connection.

`ANTHRA_DATABASE_URL=postgresql://user:password@host:port/db?sslmode=verify-full&…` is handed
to libpq as it is, so `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `connect_timeout`,
`application_name`, `options`, host lists (`host1:5432,host2:5433`), `service` and every other
libpq parameter mean what libpq says they mean. The only parameter that is ours is `schema`
(the PostgreSQL schema the ledger's tables live in), and it is taken out before libpq sees the
URL. A parameter libpq does not know stops the start with its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.settings import SettingsError

SCHEMA: Final = "schema"
# Without its own connect_timeout libpq waits for the operating system (minutes): a write
# must fail fast instead, so a URL without one gets this many seconds.
DEFAULT_CONNECT_TIMEOUT: Final = "2"
_RENAMED: Final = {
    "pool_size": "ANTHRA_DB_POOL_SIZE (and ANTHRA_DB_POOL_MAX) set the pool's size",
}


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL URL as libpq parameters, plus the schema the ledger's tables live in."""

    params: Mapping[str, str] = field(repr=False)
    schema: str | None = None

    @property
    def conninfo(self) -> str:
        """The libpq connection string: every parameter of the URL, as libpq parsed it."""
        return make_conninfo("", **self.params)

    @property
    def connect_timeout(self) -> float:
        return float(self.params["connect_timeout"])

    def describe(self) -> str:
        """Where it connects, for logs: host, port, database, user and TLS mode, no password."""
        hosts = self.params.get("host") or "(libpq default)"
        port = self.params.get("port")
        where = f"{hosts}:{port}" if port else hosts
        parts = [f"{self.params.get('user', '(default user)')}@{where}"]
        parts.append(f"/{self.params.get('dbname', '(default)')}")
        if self.schema:
            parts.append(f" schema={self.schema}")
        parts.append(f" sslmode={self.params.get('sslmode', 'prefer')}")
        return "".join(parts)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def parse_postgres_url(url: str, variable: str = "ANTHRA_DATABASE_URL") -> PostgresUrl:
    """Read a postgresql:// URL; a parameter libpq cannot honour is a SettingsError naming it."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    for name, _value in pairs:
        if name in _RENAMED:
            raise SettingsError(f"{variable}: {name!r} is not a libpq parameter; {_RENAMED[name]}")
    schemas = [value for name, value in pairs if name == SCHEMA]
    kept = [(name, value) for name, value in pairs if name != SCHEMA]
    libpq_url = f"{base}?{urlencode(kept, quote_via=quote)}" if kept else base
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError as e:
        # libpq names the parameter ('invalid URI query parameter: "x"'); never the password.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "not a valid URL"
        raise SettingsError(f"{variable}: {reason}") from None
    values = {name: str(value) for name, value in params.items() if value is not None}
    values.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    try:
        if float(values["connect_timeout"]) <= 0:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"{variable}: connect_timeout must be a positive number of seconds"
        ) from None
    if not values.get("dbname") and not values.get("service"):
        raise SettingsError(f"{variable} needs a database name: postgresql://host/DBNAME")
    schema = schemas[-1] if schemas else None
    if schema == "":
        raise SettingsError(f"{variable}: schema= needs a schema name")
    return PostgresUrl(params=values, schema=schema)

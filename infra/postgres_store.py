"""The event store on PostgreSQL: the library's recorders on connections made from our URL.

The library builds its connection pool from five keywords (dbname, host, port, user, password)
and drops every other libpq parameter, `sslmode` included. This factory gives its datastore a
pool made from the whole connection string instead (infra.database_url), so TLS and every other
libpq setting of `ANTHRA_DATABASE_URL` hold for the events, the subscriptions and the read
models that share the datastore.
"""

from __future__ import annotations

from typing import Any, Final

from eventsourcing.postgres import PostgresFactory
from psycopg import Connection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

CONNINFO: Final = "ANTHRA_POSTGRES_CONNINFO"
POOL_MAX: Final = "ANTHRA_POSTGRES_POOL_MAX"
POOL_WAIT: Final = "ANTHRA_POSTGRES_POOL_WAIT"
# A lost connection is tried again at most this often, whatever the outage lasted, so a process
# is back within about a second of the database (the library's pool doubles its delay each time,
# to over a minute after a few minutes down).
RECONNECT_EVERY: Final = 1.0
_IDLE_IN_TRANSACTION: Final = "5s"


class _SteadyBackoff(AttemptWithBackoff):
    """Reconnection attempts a quarter of a second apart at first, then at most a second apart."""

    INITIAL_DELAY = 0.25

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_EVERY)


class SteadyPool(ConnectionPool[Connection[DictRow]]):
    """A pool that never gives up reconnecting, and never waits over a second between tries."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _SteadyBackoff(timeout=self.reconnect_timeout), growing)


def pool(
    conninfo: str,
    *,
    name: str,
    min_size: int,
    max_size: int,
    wait: float,
    configure: Any = None,
    row_factory: Any = dict_row,
) -> SteadyPool:
    """A pool on the whole connection string; opened by its first user, not here."""
    return SteadyPool(
        conninfo,
        kwargs={"row_factory": row_factory},
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=configure,
        timeout=wait,
        check=ConnectionPool.check_connection,
        reconnect_timeout=365 * 86_400.0,
        name=name,
    )


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, its datastore's pool replaced by one on our conninfo."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        datastore = self.datastore
        set_idle = sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
            sql.Literal(_IDLE_IN_TRANSACTION)
        )

        def after_connect(conn: Connection[DictRow]) -> None:
            conn.autocommit = True
            conn.execute(set_idle)

        # Never opened, so dropping it leaves nothing behind.
        datastore.pool = pool(  # type: ignore[assignment]
            self.env.get(CONNINFO) or "",
            name="anthra-events",
            min_size=int(self.env.get(self.POSTGRES_POOL_SIZE) or 5),
            max_size=int(self.env.get(POOL_MAX) or 15),
            wait=float(self.env.get(POOL_WAIT) or 2),
            configure=after_connect,
        )

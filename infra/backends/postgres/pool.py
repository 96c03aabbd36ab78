"""Connection pools that keep their promises when PostgreSQL does not.

psycopg_pool's defaults suit a database that is always there: it waits a full timeout for a
connection the database cannot give, sleeps one, two, four seconds between checks of dead
connections after a restart, doubles its reconnect delay to over a minute during a long outage,
logs a warning per failed attempt, and waits forever for a query the server never answers.
These pools instead:

- give up waiting at the operation's deadline (ledger.deadline), and after a quarter of a second
  while the database is known to be down, with StoreUnavailable saying why;
- check a connection that has sat idle before handing it out and, when it is dead, try the next
  one at once (one back from use less than half a second ago is handed out as it is: under load
  the check would be a round trip per operation; a read on a connection that died meanwhile is
  tried again, and a write that got no answer is looked for in the store, ledger.recording);
- reconnect at most a second apart, however long the outage lasted;
- cut a connection still busy at the operation's deadline (infra.backends.postgres.watchdog);
- log one line when the database becomes unreachable and one when it is back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from time import monotonic
from typing import Any, Final

from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from infra.backends.postgres.watchdog import Watchdog
from infra.outage import Outage
from ledger.deadline import StoreUnavailable, deadline, unavailable

log = logging.getLogger("anthra.database")

# A lost connection is tried again at most this often, whatever the outage lasted, so a process
# is back within about a second of the database (the library's pool doubles its delay each time,
# to over a minute after a few minutes down).
RECONNECT_EVERY: Final = 1.0
# While the pool's last attempt to connect failed, a caller waits this long for a connection
# rather than the full timeout: the database is down, and a 503 now beats a 503 in two seconds.
WAIT_WHILE_DOWN: Final = 0.25
# A connection that does not answer the check before it is handed out within this is dead.
CHECK_WITHIN: Final = 1.0
# A connection given back less than this long ago is handed out again without the check.
FRESH_FOR: Final = 0.5
CLOSE_WITHIN: Final = 0.5


class _SteadyBackoff(AttemptWithBackoff):
    """Reconnection attempts a quarter of a second apart at first, then at most a second apart."""

    INITIAL_DELAY = 0.25

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_EVERY)


class _PoolChatter(logging.Filter):
    """Drops psycopg_pool's per-checkout INFO lines and per-attempt warnings.

    The pools report an outage themselves, once when it starts and once when it ends.
    """

    _PER_ATTEMPT = ("error connecting in", "discarding closed connection")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        return not str(record.msg).startswith(self._PER_ATTEMPT)


def _quiet_pool_logger() -> None:
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(f, _PoolChatter) for f in logger.filters):
        logger.addFilter(_PoolChatter())


class SteadyPool(ConnectionPool[Connection[DictRow]]):
    """A pool that never gives up reconnecting, and never holds a caller past its deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _quiet_pool_logger()
        self.outage = Outage(log, f"database connection ({self.name})")
        self.watchdog = Watchdog(self.name)
        # When each connection came back from use in good order, by id: fresh ones skip the check.
        self._returned: dict[int, float] = {}

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        if self.closed and self._opened:
            # Said as "unavailable", so that the library's retries stop at once during shutdown.
            raise StoreUnavailable(f"the {self.name} pool is closed")
        super().open(wait, timeout)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection[DictRow]]:
        """A checked connection, cut if still in use at the deadline; StoreUnavailable if none."""
        until = deadline()
        conn = self._checked_out(until, self.timeout if timeout is None else timeout)
        try:
            with self.watchdog.watch(conn, until), conn:
                yield conn
        except BaseException:
            self._returned.pop(id(conn), None)
            raise
        else:
            self._returned[id(conn)] = monotonic()
        finally:
            self.putconn(conn)

    def close(self, timeout: float = CLOSE_WITHIN) -> None:
        self.watchdog.close()
        super().close(timeout)

    def _checked_out(self, until: float, wait: float) -> Connection[DictRow]:
        started = monotonic()
        give_up = min(until, started + wait)
        while True:
            if self.outage.ongoing:
                give_up = min(give_up, started + WAIT_WHILE_DOWN)
            left = give_up - monotonic()
            if left <= 0:
                raise self._unavailable(wait)
            try:
                # In slices, so that an outage noticed meanwhile ends the wait.
                conn = self.getconn(timeout=min(left, WAIT_WHILE_DOWN))
            except PoolTimeout:
                continue
            if monotonic() - self._returned.pop(id(conn), -math.inf) < FRESH_FOR:
                return conn
            try:
                with self.watchdog.watch(conn, min(until, monotonic() + CHECK_WITHIN)):
                    conn.execute("")
            except Exception:
                # Dead (the server restarted, or the connection was cut): the pool replaces it.
                self.putconn(conn)
                continue
            return conn

    def _unavailable(self, wait: float) -> StoreUnavailable:
        if self.outage.ongoing:
            return StoreUnavailable(f"the database is unreachable ({self.outage.reason})")
        if deadline() <= monotonic():
            return StoreUnavailable("the database did not answer in time")
        return StoreUnavailable(f"no database connection free within {wait:g} s")

    def _connect(self, timeout: float | None = None) -> Connection[DictRow]:
        try:
            conn = super()._connect(timeout)
        except Exception as e:
            self.outage.failed(unavailable(e).reason)
            raise
        self.outage.succeeded()
        return conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _SteadyBackoff(timeout=self.reconnect_timeout), growing)


class SteadyAsyncPool(AsyncConnectionPool[AsyncConnection[Any]]):
    """SteadyPool's promises for asyncio callers: checked connections, steady reconnection.

    Its caller bounds each lookup itself (asyncio cancels cleanly); a wait for a connection
    that does not come ends in psycopg_pool's PoolTimeout.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _quiet_pool_logger()
        self.outage = Outage(log, f"database connection ({self.name})")

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection[Any]]:
        wait = self.timeout if timeout is None else timeout
        give_up = monotonic() + wait
        while True:
            left = give_up - monotonic()
            if self.outage.ongoing:
                left = min(left, WAIT_WHILE_DOWN)
            # PoolTimeout, not StoreUnavailable: asyncio callers handle psycopg's errors.
            if left <= 0:
                raise PoolTimeout(f"no database connection within {wait:g} s")
            conn = await self.getconn(timeout=left)
            try:
                await conn.execute("")
            except Exception:
                await self.putconn(conn)
                continue
            break
        try:
            async with conn:
                yield conn
        finally:
            await self.putconn(conn)

    async def close(self, timeout: float = CLOSE_WITHIN) -> None:
        await super().close(timeout)

    async def _connect(self, timeout: float | None = None) -> AsyncConnection[Any]:
        try:
            conn = await super()._connect(timeout)
        except Exception as e:
            self.outage.failed(unavailable(e).reason)
            raise
        self.outage.succeeded()
        return conn

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        await super()._add_connection(
            attempt or _SteadyBackoff(timeout=self.reconnect_timeout), growing
        )


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
        reconnect_timeout=365 * 86_400.0,
        name=name,
    )

"""The event store on PostgreSQL: the library's recorders on connections made from our URL.

The library builds its connection pool from five keywords (dbname, host, port, user, password)
and drops every other libpq parameter, `sslmode` included. This factory gives its datastore a
pool made from the whole connection string instead (infra.backends.postgres.url), so TLS
and every other libpq setting of `ANTHRA_DATABASE_URL` hold for the events, the index listener
and the read models that share the datastore.

Its recorder keeps the library's SQL but not its patience: the library tries a failed read or
write ten times, each waiting for a pooled connection, which held a request for almost a minute
while the database was down. Here a lock held by someone else ends a wait after a second, a
connection error is tried again only while the operation's deadline allows (ledger.deadline),
and a write knows whether its COMMIT had been sent when it failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from psycopg import Connection, sql
from psycopg.rows import DictRow

from infra.backends.postgres.pool import SteadyPool, pool
from ledger.deadline import OutcomeUnknown, StoreUnavailable, time_left, unavailable

CONNINFO: Final = "ANTHRA_POSTGRES_CONNINFO"
POOL_MAX: Final = "ANTHRA_POSTGRES_POOL_MAX"
POOL_WAIT: Final = "ANTHRA_POSTGRES_POOL_WAIT"
# How long a statement waits for a lock another session holds (a LOCK TABLE, a long migration)
# before the operation gives up with a 503: whole seconds, as the library's own setting is.
LOCK_TIMEOUT_SECONDS: Final = 1
_IDLE_IN_TRANSACTION: Final = "5s"
# Without a deadline (background work), a failed read is tried this many times in all.
_ATTEMPTS: Final = 3
_PAUSE: Final = 0.05
# One advisory lock for every CREATE of the ledger's tables, in every process.
_CREATING_TABLES: Final = "anthra: creating tables"

R = TypeVar("R")


def _locked_out(error: BaseException) -> bool:
    """Whether the statement gave up waiting for a lock (lock_timeout) or was cancelled."""
    cause = error.__cause__ or error
    return isinstance(cause, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled)


def _tried_again(call: Callable[[], R], what: str) -> R:
    """Call; on a connection error try again while the deadline allows, then StoreUnavailable."""
    attempts = 0
    while True:
        try:
            return call()
        except (InterfaceError, OperationalError) as e:
            if _locked_out(e):
                raise StoreUnavailable(f"the events table is locked; {what} gave up") from e
            attempts += 1
            left = time_left()
            if (left == float("inf") and attempts >= _ATTEMPTS) or left < _PAUSE * 2:
                raise unavailable(e) from e
            time.sleep(_PAUSE)


@contextmanager
def creating_tables(datastore: PostgresDatastore) -> Iterator[None]:
    """Held while this process creates tables, so that any number of processes can start at once.

    Two processes creating the same table at once collide in PostgreSQL's catalogue (a duplicate
    pg_type row), and two recorders creating a tracking table both insert its migration row. The
    lock is taken on a connection of its own, so that a pool of one connection cannot deadlock.
    """
    conninfo = datastore.pool.conninfo
    assert isinstance(conninfo, str)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # A peer that hangs while holding it stops this start with an error, not forever.
        conn.execute("SET lock_timeout = '30s'")
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_CREATING_TABLES,))
        yield  # the lock ends with the connection


class LedgerRecorder(PostgresApplicationRecorder):
    """The library's application recorder, bounded by deadlines and lock timeouts, appending in
    one round trip."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = sql.Identifier(self.datastore.schema)
        append = sql.Identifier(f"anthra_append_{self.events_table_name}"[:63])
        # The library's transaction (lock the table, so that positions commit in the order they
        # are given; insert; notify) as one function: one statement in autocommit, so that the
        # lock is held for the server's work and COMMIT only, never across a round trip to this
        # process (whose thread may wait for Python's GIL meanwhile). The NOTIFY carries the
        # write's last position (delivered, as any NOTIFY, only if it commits): a listener
        # whose index is there already need not read the table, which matters when someone else
        # holds a lock on it; it names the schema, because a channel is the whole database's
        # (infra.backends.postgres.listener). The ids are given in the order of the events: the
        # sequence numbers the rows in the order unnest gives them, under the lock.
        self.sql_create_statements.append(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{append}(events {schema}.{event}[]) "
                "RETURNS bigint[] LANGUAGE plpgsql AS $$ "
                "DECLARE ids bigint[]; "
                "BEGIN "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "WITH inserted AS ("
                "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
                "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
                "RETURNING notification_id) "
                "SELECT array_agg(notification_id ORDER BY notification_id) INTO ids "
                "FROM inserted; "
                "PERFORM pg_notify({channel}, ids[array_upper(ids, 1)]::text || {at_schema}); "
                "RETURN ids; "
                "END $$"
            ).format(
                schema=schema,
                append=append,
                event=sql.Identifier(self.stored_event_type_name),
                table=sql.Identifier(self.events_table_name),
                channel=sql.Literal(self.channel_name),
                at_schema=sql.Literal(f"@{self.datastore.schema}"),
            )
        )
        self._append = sql.SQL("SELECT {schema}.{append}(%s) AS ids").format(
            schema=schema, append=append
        )

    def create_table(self) -> None:
        with creating_tables(self.datastore):
            super().create_table()

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        """Insert in one transaction; OutcomeUnknown if the connection failed on the way."""
        if not stored_events:
            return []
        events = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        attempts = 0
        while True:
            try:
                row = self._append_once(events)
                break
            except (InterfaceError, OperationalError) as e:
                if _locked_out(e):
                    raise StoreUnavailable("the events table is locked; nothing was saved") from e
                # The server refused the statement (its session was ending): nothing was
                # recorded, so trying again on another connection is safe.
                attempts += 1
                if time_left() < _PAUSE * 2 or attempts >= _ATTEMPTS:
                    raise unavailable(e) from e
                time.sleep(_PAUSE)
        assert row is not None
        ids: list[int] = row["ids"]
        return ids

    def _append_once(self, events: list[Any]) -> Any:
        with self.datastore.get_connection() as conn:
            if conn.closed:
                raise psycopg.OperationalError("the connection is closed")
            try:
                return conn.execute(self._append, (events,), prepare=True).fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                if e.sqlstate is None:
                    # Sent, and no answer: the COMMIT that ends the statement may have happened.
                    raise OutcomeUnknown(
                        "the database stopped answering while the change was being committed"
                    ) from e
                raise

    def select_events(self, originator_id: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        undecorated = PostgresApplicationRecorder.select_events.__wrapped__
        return _tried_again(lambda: undecorated(self, originator_id, **kwargs), "reading a key")

    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        undecorated = PostgresApplicationRecorder.select_notifications.__wrapped__
        return _tried_again(lambda: undecorated(self, *args, **kwargs), "reading the events")

    def max_notification_id(self) -> int | None:
        undecorated = PostgresApplicationRecorder.max_notification_id.__wrapped__
        last: int | None = _tried_again(lambda: undecorated(self), "reading the last position")
        return last


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, its datastore's pool replaced by one on our conninfo."""

    application_recorder_class = LedgerRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        datastore = self.datastore
        set_idle = sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
            sql.Literal(_IDLE_IN_TRANSACTION)
        )
        set_lock_timeout = sql.SQL("SET lock_timeout = {}").format(
            sql.Literal(f"{LOCK_TIMEOUT_SECONDS}s")
        )

        def after_connect(conn: Connection[DictRow]) -> None:
            conn.autocommit = True
            conn.execute(set_idle)
            conn.execute(set_lock_timeout)

        # Never opened, so dropping it leaves nothing behind.
        datastore.pool = pool(  # type: ignore[assignment]
            self.env.get(CONNINFO) or "",
            name="anthra-events",
            min_size=int(self.env.get(self.POSTGRES_POOL_SIZE) or 5),
            max_size=int(self.env.get(POOL_MAX) or 15),
            wait=float(self.env.get(POOL_WAIT) or 2),
            configure=after_connect,
        )


def events_pool(datastore: PostgresDatastore) -> SteadyPool:
    """The pool this factory gave the datastore."""
    assert isinstance(datastore.pool, SteadyPool)
    return datastore.pool

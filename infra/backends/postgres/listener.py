"""The index's notification channel on PostgreSQL: a LISTEN connection of the follower's own.

Every write of events NOTIFYs the recorder's channel in its transaction, and PostgreSQL
delivers a notification to a listening session as soon as the writer commits, and before the
answer to any query that session sends afterwards. So an answer to a `SELECT 1` on this
connection proves that every commit made before the query was sent has been notified: the
index is current as of the moment the round trip began, once it has caught up with what was
notified. That proof reads no table, so it holds while someone else locks the events table
(no commit is possible then either), and it fails, closing verification, as soon as the
channel itself is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Final

import psycopg
from psycopg import Connection, Notify, sql
from psycopg.conninfo import conninfo_to_dict

from infra.backends.postgres.watchdog import Watchdog

APPLICATION_NAME: Final = "anthra-index-listener"


class ChannelListener:
    """LISTENs on the events' channel on a connection made from the whole connection string."""

    def __init__(self, conninfo: str, channel: str, watchdog: Watchdog, schema: str = "") -> None:
        """`schema`: the events' schema, which the ledger's writers name in their notifications
        (a channel is the database's, shared by every schema in it)."""
        self.conninfo = conninfo
        self.channel = channel
        self.watchdog = watchdog
        self.schema = schema
        self._conn: Connection[tuple[object, ...]] | None = None
        params = conninfo_to_dict(conninfo)
        self._connect_timeout = float(params.get("connect_timeout") or 2)
        # Its own name, so that an operator (or a test) can tell it from pooled connections.
        named = str(params.get("application_name") or "")
        self._name = f"{named[:54]}-listener" if named else APPLICATION_NAME

    def open(self) -> None:
        """Connect and LISTEN; raises psycopg.Error if the database cannot be reached."""
        self.close()
        conn = psycopg.connect(self.conninfo, autocommit=True, application_name=self._name)
        try:
            with self.watchdog.watch(conn, time.monotonic() + self._connect_timeout):
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def notified(self, timeout: float) -> float:
        """Wait up to `timeout` seconds for notifications; the position they announce (below)."""
        conn = self._live()
        reached = _reached(conn.notifies(timeout=timeout, stop_after=1), self.schema)
        if reached:
            reached = max(reached, _reached(conn.notifies(timeout=0), self.schema))
        return reached

    def round_trip(self, within: float) -> float:
        """SELECT 1, cut if unanswered `within` seconds; what was notified meanwhile (below)."""
        conn = self._live()
        with self.watchdog.watch(conn, time.monotonic() + within):
            conn.execute("SELECT 1")
        # Notifications that arrived with the answer wait in psycopg's backlog.
        return _reached(conn.notifies(timeout=0), self.schema)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _live(self) -> Connection[tuple[object, ...]]:
        if self._conn is None:
            raise psycopg.OperationalError("the listener is not connected")
        return self._conn


def _reached(notifies: Iterable[Notify], schema: str) -> float:
    """The store position the notifications announce: 0 if none came, infinity if one came
    without a position (a writer that does not say), so that the caller reads the store.

    The ledger's writers say `position@schema`; a notification for another schema of the same
    database (another deployment on the same channel name) announces nothing here. A bare
    position, as earlier versions write, is taken as this schema's.
    """
    reached = 0.0
    for notify in notifies:
        position, at, named = notify.payload.partition("@")
        if at and named != schema:
            continue
        try:
            reached = max(reached, float(int(position)))
        except ValueError:
            reached = math.inf
    return reached

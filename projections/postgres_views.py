"""A read model's view in the ledger's PostgreSQL schema, with a tracking table of its own.

The twin of projections.sqlite_views: the view's tables and its tracking table (one row per
application, as the library's single-row tracking keeps it), created in one transaction, and
the tracked position moved in the same transaction as the view's rows. Only the library's public
datastore is used. Whoever creates the tables serialises creation across processes (the backend
takes an advisory lock around `create_table`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

# The row the library's own tracking tables carry once created.
_CREATED = "__migration__"


class PostgresTrackedView(TrackingRecorder):
    """Tables of a view and its own tracking table, created once, written in one transaction."""

    def __init__(self, datastore: PostgresDatastore, tracking_table: str) -> None:
        if not datastore.single_row_tracking:
            raise ValueError("the view needs single-row tracking (the library's default)")
        self.datastore = datastore
        self.schema = Identifier(datastore.schema)
        tracking = Identifier(tracking_table)
        self._create_tracking = SQL(
            "CREATE TABLE IF NOT EXISTS {0}.{1} (application_name text, notification_id bigint,"
            " PRIMARY KEY (application_name))"
        ).format(self.schema, tracking)
        upsert = SQL(
            "INSERT INTO {0}.{1} VALUES (%(application_name)s, %(notification_id)s) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = %(notification_id)s "
            "WHERE {0}.{1}.notification_id "
        ).format(self.schema, tracking)
        self._advance = upsert + SQL("< %(notification_id)s RETURNING notification_id")
        self._move = upsert + SQL("= %(after)s RETURNING notification_id")
        self._select_max = SQL(
            "SELECT MAX(notification_id) AS max FROM {0}.{1} WHERE application_name = %s"
        ).format(self.schema, tracking)
        self._mark_created = SQL(
            "INSERT INTO {0}.{1} VALUES (%s, 1) ON CONFLICT DO NOTHING"
        ).format(self.schema, tracking)

    def table(self, name: str) -> Composed:
        """A table of this view, qualified by the schema."""
        return SQL("{0}.{1}").format(self.schema, Identifier(name))

    @abstractmethod
    def table_statements(self) -> Sequence[Composed]:
        """CREATE TABLE and CREATE INDEX statements of the view's own tables."""

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._create_tracking)
            for statement in self.table_statements():
                curs.execute(statement)
            curs.execute(self._mark_created, (_CREATED,))

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self.track(curs, tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        rows = self.fetch(self._select_max, (application_name,))
        found: int | None = rows[0]["max"] if rows else None
        return found

    def track(self, curs: Cursor[DictRow], tracking: Tracking, after: int | None = None) -> None:
        """Move the tracked position forward in this transaction; with `after`, only from
        exactly there. IntegrityError if another process got there first."""
        curs.execute(
            self._advance if after is None else self._move,
            {
                "application_name": tracking.application_name,
                "notification_id": tracking.notification_id,
                "after": after,
            },
            prepare=True,
        )
        if curs.fetchone() is None:
            raise IntegrityError(
                f"failed to record tracking for {tracking.application_name} "
                f"{tracking.notification_id}"
            )

    def fetch(self, statement: Composed, params: Sequence[Any]) -> list[DictRow]:
        """Every row a read answers, on a pooled connection."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return curs.fetchall()


class TablesOnFirstUse:
    """Tables of a store of our own, created on its first connection, one process at a time."""

    def __init__(self, lock_name: str, statements: Sequence[str]) -> None:
        self.lock_name = lock_name
        self.statements = tuple(statements)
        self._ready = False

    def ensure(self, conn: Connection[Any]) -> None:
        """Create the tables if this process has not yet; a no-op afterwards."""
        if self._ready:
            return
        with conn.transaction():
            # Two processes creating the tables at once would collide in pg_type.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.lock_name,))
            for statement in self.statements:
                conn.execute(statement)
        self._ready = True

"""A read model's view in the ledger's SQLite file, with a tracking table of its own.

The library's SQLite tracking recorder keeps one shared `tracking` table and migrates it on
creation; each view here keeps its own table (`audit_tracking`, `key_states_tracking`), one row
per application, written in the same transaction as the view's rows. Only the library's public
datastore is used: its transactions and its cursor's rows.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from eventsourcing.persistence import IntegrityError, OperationalError, Tracking, TrackingRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

# A row the library's own tracking tables carry once created; kept so that a view made before
# this module reads as created.
_CREATED = "__migration__"


def sqlite_instant(at: datetime) -> str:
    """One fixed-width UTC form: comparing the text compares the instants, and it reads back
    as the same instant, in UTC."""
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat(
        timespec="microseconds"
    )


class SQLiteTrackedView(TrackingRecorder):
    """Tables of a view and its own tracking table, created once, written in one transaction."""

    def __init__(self, datastore: SQLiteDatastore, tracking_table: str) -> None:
        if not datastore.single_row_tracking:
            raise ValueError("the view needs single-row tracking (the library's default)")
        self.datastore = datastore
        self.tracking_table = tracking_table
        upsert = (
            f"INSERT INTO {tracking_table} VALUES (:application_name, :notification_id) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
            f"WHERE {tracking_table}.notification_id "
        )
        self._advance = upsert + "< :notification_id RETURNING notification_id"
        self._move = upsert + "= :after RETURNING notification_id"
        self._select_max = (
            f"SELECT MAX(notification_id) FROM {tracking_table} WHERE application_name=?"
        )

    @abstractmethod
    def table_statements(self) -> Sequence[str]:
        """CREATE TABLE and CREATE INDEX statements of the view's own tables."""

    def create_table(self) -> None:
        """Create the tables if missing; read only once they exist."""
        # Every start but the first finds them: a transaction that reads and then writes fails
        # at once, "database is locked", if another process committed in between, as it does
        # when a process starts beside busy ones.
        try:
            if self.max_tracking_id(_CREATED):
                return
        except OperationalError:
            pass
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.tracking_table} ("
                "application_name TEXT, notification_id INTEGER, "
                "PRIMARY KEY (application_name)) WITHOUT ROWID"
            )
            for statement in self.table_statements():
                c.execute(statement)
            c.execute(f"INSERT OR IGNORE INTO {self.tracking_table} VALUES (?, 1)", (_CREATED,))

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            self.track(c, tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_max, (application_name,))
            found: int | None = c.fetchone()[0]
            return found

    def track(self, c: SQLiteCursor, tracking: Tracking, after: int | None = None) -> None:
        """Move the tracked position forward in this transaction; with `after`, only from
        exactly there. IntegrityError if another process got there first."""
        c.execute(
            self._advance if after is None else self._move,
            {
                "application_name": tracking.application_name,
                "notification_id": tracking.notification_id,
                "after": after,
            },
        )
        if c.fetchone() is None:
            raise IntegrityError(
                f"{self.tracking_table}: failed to record tracking for "
                f"{tracking.application_name} {tracking.notification_id}"
            )


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection of a store of our own to the ledger's SQLite file, in WAL mode, for use by
    one thread at a time (its owner locks it), committing only when told."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    # Switching the journal mode needs the file to itself and fails at once, "database is
    # locked", while another process writes: the event store has usually switched it
    # already, so only ask when it has not.
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection that commits only when told: committed if the
    block ends, rolled back if it raises."""
    # IMMEDIATE takes the write lock up front: a deferred transaction that has to upgrade
    # fails with SQLITE_BUSY at once instead of waiting out the busy timeout.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

"""The audit trail's views: in memory, SQLite and PostgreSQL, beside the ledger's own events."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

import msgspec
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    OperationalError,
    Tracking,
)
from eventsourcing.popo import POPOFactory, POPOTrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresTrackingRecorder
from eventsourcing.sqlite import (
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteRecorder,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import retry
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from infra.ledger import LedgerStore
from infra.postgres_store import creating_tables
from projections.audit import AuditQuery, AuditRow, AuditView, as_utc

_MIGRATION = "__migration__"


def audit_view_for(store: LedgerStore) -> AuditView:
    """The audit view on the same database as the store, its tables created if missing."""
    factory = store.factory
    view: AuditView
    if isinstance(factory, SQLiteFactory):
        view = SQLiteAuditView(factory.datastore)
    elif isinstance(factory, PostgresFactory):
        view = PostgresAuditView(factory.datastore)
    elif isinstance(factory, POPOFactory):
        return _memory_view_beside(store.recorder)
    else:
        raise TypeError(f"no audit view for {type(factory).__name__}")
    view.create_table()
    return view


# An in-memory store is its recorder object: every view "on the same database" is the one
# kept beside it, so that two projectors over one memory store share it as they would a file.
_memory_views: WeakKeyDictionary[ApplicationRecorder, MemoryAuditView] = WeakKeyDictionary()
_memory_views_lock = threading.Lock()


def _memory_view_beside(recorder: ApplicationRecorder) -> MemoryAuditView:
    with _memory_views_lock:
        view = _memory_views.get(recorder)
        if view is None:
            view = _memory_views[recorder] = MemoryAuditView()
        return view


def _where(q: AuditQuery, mark: str, key: Any, at: Any) -> tuple[list[str], list[Any]]:
    """The query's conditions as SQL with `mark` placeholders, and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if q.owner_id is not None:
        clauses.append(f"owner_id = {mark}")
        params.append(q.owner_id)
    if q.key_id is not None:
        clauses.append(f"key_id = {mark}")
        params.append(key(q.key_id))
    if q.types:
        clauses.append(f"type IN ({', '.join([mark] * len(q.types))})")
        params.extend(q.types)
    if q.since is not None:
        clauses.append(f"at >= {mark}")
        params.append(at(q.since))
    if q.until is not None:
        clauses.append(f"at < {mark}")
        params.append(at(q.until))
    if q.cursor is not None:
        clauses.append(f"position {'<' if q.newest_first else '>'} {mark}")
        params.append(q.cursor)
    return clauses, params


def _tail(q: AuditQuery, clauses: list[str], mark: str) -> str:
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return f"{where}ORDER BY position {'DESC' if q.newest_first else 'ASC'} LIMIT {mark}"


class MemoryAuditView(POPOTrackingRecorder, AuditView):
    """Audit rows in process memory, for the in-memory backend and unit tests."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[AuditRow] = []
        self._positions: list[int] = []
        self._by_owner: dict[str, list[AuditRow]] = defaultdict(list)
        self._by_key: dict[UUID, list[AuditRow]] = defaultdict(list)

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            last = self._positions[-1] if self._positions else 0
            for row in rows:
                if row.position <= last or row.position > tracking.notification_id:
                    raise IntegrityError(f"audit position {row.position} is out of order")
                last = row.position
            self._insert_tracking(tracking)
            for row in rows:
                self._rows.append(row)
                self._positions.append(row.position)
                self._by_owner[row.owner_id].append(row)
                self._by_key[row.key_id].append(row)

    def head(self) -> tuple[int, str] | None:
        with self._database_lock:
            return (self._rows[-1].position, self._rows[-1].chain) if self._rows else None

    def owner_of(self, key_id: UUID) -> str | None:
        with self._database_lock:
            rows = self._by_key.get(key_id)
            return (rows[0].owner_id or None) if rows else None

    def query(self, q: AuditQuery) -> list[AuditRow]:
        with self._database_lock:
            if q.key_id is not None:
                candidates = self._by_key.get(q.key_id, [])
            elif q.owner_id is not None:
                candidates = self._by_owner.get(q.owner_id, [])
            else:
                candidates = self._rows
            if q.cursor is not None:
                # Rows are kept in position order: start at the cursor rather than scan to it.
                at = bisect_left if q.newest_first else bisect_right
                cut = at(candidates, q.cursor, key=lambda r: r.position)
                candidates = candidates[:cut] if q.newest_first else candidates[cut:]
            ordered = reversed(candidates) if q.newest_first else iter(candidates)
            found: list[AuditRow] = []
            for row in ordered:
                if q.admits(row):
                    found.append(row)
                    if len(found) == q.limit:
                        break
            return found

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        with self._database_lock:
            rows = self._rows if owner_id is None else self._by_owner.get(owner_id, [])
            start = bisect_right(rows, position, key=lambda r: r.position)
            return rows[start : start + limit]


_SQLITE_CREATE = (
    "CREATE TABLE IF NOT EXISTS audit_tracking ("
    "application_name TEXT, notification_id INTEGER, "
    "PRIMARY KEY (application_name)) WITHOUT ROWID",
    # An INTEGER PRIMARY KEY is the rowid: positions survive VACUUM.
    "CREATE TABLE IF NOT EXISTS audit_events ("
    "position INTEGER PRIMARY KEY, key_id TEXT NOT NULL, owner_id TEXT NOT NULL, "
    "type TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL, "
    "chain TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_events_owner ON audit_events (owner_id, position)",
    "CREATE INDEX IF NOT EXISTS audit_events_owner_key "
    "ON audit_events (owner_id, key_id, position)",
    "CREATE INDEX IF NOT EXISTS audit_events_owner_type ON audit_events (owner_id, type, position)",
    "CREATE INDEX IF NOT EXISTS audit_events_key ON audit_events (key_id, position)",
)
_SQLITE_MARK_MIGRATED = "INSERT OR IGNORE INTO audit_tracking VALUES (?, 1)"
_SQLITE_INSERT_TRACKING = (
    "INSERT INTO audit_tracking VALUES (:application_name, :notification_id) "
    "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
    "WHERE audit_tracking.notification_id < :notification_id "
    "RETURNING notification_id"
)
_SQLITE_MAX_TRACKING = "SELECT MAX(notification_id) FROM audit_tracking WHERE application_name=?"
_SQLITE_INSERT_ROWS = (
    "INSERT INTO audit_events (position, key_id, owner_id, type, at, actor, event, chain) "
    "VALUES (?,?,?,?,?,?,?,?)"
)
_SQLITE_SELECT = (
    "SELECT position, key_id, owner_id, type, at, actor, event, chain FROM audit_events "
)
_SQLITE_HEAD = "SELECT position, chain FROM audit_events ORDER BY position DESC LIMIT 1"
_SQLITE_OWNER = "SELECT owner_id FROM audit_events WHERE key_id = ? ORDER BY position LIMIT 1"


def _sqlite_at(at: datetime) -> str:
    # One fixed-width UTC form, so that comparing the text compares the instants.
    return as_utc(at).isoformat(timespec="microseconds")


def _sqlite_row(r: Any) -> AuditRow:
    return AuditRow(
        position=r["position"],
        key_id=UUID(r["key_id"]),
        owner_id=r["owner_id"],
        type=r["type"],
        at=datetime.fromisoformat(r["at"]),
        actor=r["actor"],
        event=msgspec.json.decode(r["event"]),
        chain=r["chain"],
    )


class SQLiteAuditView(SQLiteTrackingRecorder, AuditView):
    """Audit rows in the ledger's SQLite file (audit_events), tracked in audit_tracking."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)
        if not datastore.single_row_tracking:
            raise ValueError("the audit view needs single-row tracking (the library's default)")
        # The library's statements name its shared "tracking" table; this view keeps its own.
        self.insert_tracking_statement = _SQLITE_INSERT_TRACKING
        self.select_max_tracking_id_statement = _SQLITE_MAX_TRACKING

    def construct_create_table_statements(self) -> list[str]:
        return list(_SQLITE_CREATE)

    def _create_table(self, c: SQLiteCursor) -> None:
        # This table was never multi-row, so the library's migration (which renames its own
        # "tracking" table) does not apply; only its marker row is wanted.
        SQLiteRecorder._create_table(self, c)
        c.execute(_SQLITE_MARK_MIGRATED, (_MIGRATION,))
        self.tracking_migration_current = 1

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        params = [
            (
                r.position,
                str(r.key_id),
                r.owner_id,
                r.type,
                _sqlite_at(r.at),
                r.actor,
                msgspec.json.encode(r.event).decode(),
                r.chain,
            )
            for r in rows
        ]
        with self.datastore.transaction(commit=True) as c:
            # Tracking first: a process that lost the race fails before writing any row.
            self._insert_tracking(c, tracking)
            c.executemany(_SQLITE_INSERT_ROWS, params)

    def head(self) -> tuple[int, str] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SQLITE_HEAD)
            r = c.fetchone()
        return None if r is None else (r["position"], r["chain"])

    def owner_of(self, key_id: UUID) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SQLITE_OWNER, (str(key_id),))
            r = c.fetchone()
        return None if r is None else (r["owner_id"] or None)

    def query(self, q: AuditQuery) -> list[AuditRow]:
        clauses, params = _where(q, "?", str, _sqlite_at)
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SQLITE_SELECT + _tail(q, clauses, "?"), [*params, q.limit])
            return [_sqlite_row(r) for r in c.fetchall()]

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        q = AuditQuery(owner_id=owner_id, newest_first=False, cursor=position, limit=limit)
        return self.query(q)


def _postgres_row(r: DictRow) -> AuditRow:
    return AuditRow(
        position=r["position"],
        key_id=r["key_id"],
        owner_id=r["owner_id"],
        type=r["type"],
        at=as_utc(r["at"]),
        actor=r["actor"],
        event=msgspec.json.decode(r["event"]),
        chain=r["chain"],
    )


class PostgresAuditView(PostgresTrackingRecorder, AuditView):
    """Audit rows in the ledger's PostgreSQL schema (audit_events), tracked in audit_tracking."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="audit_tracking")
        if not datastore.single_row_tracking:
            raise ValueError("the audit view needs single-row tracking (the library's default)")
        schema, table = Identifier(datastore.schema), Identifier("audit_events")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                "position bigint PRIMARY KEY, key_id uuid NOT NULL, owner_id text NOT NULL, "
                "type text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, "
                "event jsonb NOT NULL, chain text NOT NULL)"
            ).format(schema, table)
        )
        # Index names are not schema-qualified; PostgreSQL puts them beside their table.
        for suffix, columns in (
            ("owner", "owner_id, position"),
            ("owner_key", "owner_id, key_id, position"),
            ("owner_type", "owner_id, type, position"),
            ("key", "key_id, position"),
        ):
            self.sql_create_statements.append(
                SQL("CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} (" + columns + ")").format(
                    Identifier(f"audit_events_{suffix}"), schema, table
                )
            )
        # COPY: five times the rate of a multi-row INSERT here, in the same transaction.
        self._copy_rows = SQL(
            "COPY {0}.{1} (position, key_id, owner_id, type, at, actor, event, chain) FROM STDIN"
        ).format(schema, table)
        self._select = SQL(
            # As text: msgspec decodes it several times faster than psycopg's json.loads.
            "SELECT position, key_id, owner_id, type, at, actor, event::text, chain FROM {0}.{1} "
        ).format(schema, table)
        self._head = SQL(
            "SELECT position, chain FROM {0}.{1} ORDER BY position DESC LIMIT 1"
        ).format(schema, table)
        self._owner = SQL(
            "SELECT owner_id FROM {0}.{1} WHERE key_id = %s ORDER BY position LIMIT 1"
        ).format(schema, table)

    def create_table(self) -> None:
        with creating_tables(self.datastore):
            super().create_table()

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: a process that lost the race fails before writing any row.
            self._insert_tracking(curs, tracking)
            with curs.copy(self._copy_rows) as copy:
                for r in rows:
                    copy.write_row(
                        (
                            r.position,
                            r.key_id,
                            r.owner_id,
                            r.type,
                            r.at,
                            r.actor,
                            msgspec.json.encode(r.event).decode(),
                            r.chain,
                        )
                    )

    def head(self) -> tuple[int, str] | None:
        r = self._fetch(self._head, ())
        return None if not r else (r[0]["position"], r[0]["chain"])

    def owner_of(self, key_id: UUID) -> str | None:
        r = self._fetch(self._owner, (key_id,))
        return (r[0]["owner_id"] or None) if r else None

    def query(self, q: AuditQuery) -> list[AuditRow]:
        clauses, params = _where(q, "%s", lambda k: k, as_utc)
        statement = self._select + SQL(_tail(q, clauses, "%s"))
        return [_postgres_row(r) for r in self._fetch(statement, [*params, q.limit])]

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        q = AuditQuery(owner_id=owner_id, newest_first=False, cursor=position, limit=limit)
        return self.query(q)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _fetch(self, statement: Composed, params: Sequence[Any]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return curs.fetchall()

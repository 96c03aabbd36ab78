"""The index snapshot on SQLite and PostgreSQL, and a warm start of the index from it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresTrackingRecorder
from eventsourcing.sqlite import (
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteRecorder,
    SQLiteTrackingRecorder,
)
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from infra.ledger import KeyLedger, LedgerStore
from infra.postgres_store import creating_tables
from projections.index_snapshot import (
    KeyState,
    SnapshotProjector,
    SnapshotView,
    collector_paused,
    scopes_text,
)
from projections.verification_index import KeyRecord, VerificationIndex

log = logging.getLogger("anthra.index_snapshot")

_MIGRATION = "__migration__"
# A state's columns, as KeyState names them; the load reads all but the last, in this order.
_COLUMNS = (
    "key_id",
    "owner_id",
    "name",
    "prefix",
    "digest",
    "scopes",
    "created_at",
    "expires_at",
    "revoked_at",
    "expired_at",
    "version",
    "minted_position",
)
# A newer state replaces an older one, never the other way round.
_UPSERT_TAIL = (
    " ON CONFLICT (key_id) DO UPDATE SET owner_id = excluded.owner_id, name = excluded.name, "
    "prefix = excluded.prefix, digest = excluded.digest, scopes = excluded.scopes, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at, "
    "revoked_at = excluded.revoked_at, expired_at = excluded.expired_at, "
    "version = excluded.version WHERE index_snapshot.version < excluded.version"
)


def snapshot_view_for(store: LedgerStore) -> SnapshotView | None:
    """The snapshot view beside the store's events, tables created if missing; None in memory."""
    factory = store.factory
    view: SnapshotView
    if isinstance(factory, SQLiteFactory):
        view = SQLiteSnapshotView(factory.datastore, store.name)
    elif isinstance(factory, PostgresFactory):
        view = PostgresSnapshotView(factory.datastore, store.name)
    else:
        # An in-memory store starts empty in every process: there is nothing to start from.
        return None
    view.create_table()
    return view


def _check_empty(into: VerificationIndex) -> None:
    if len(into):
        # Loading over records the index already holds could put an older state back.
        raise ValueError("load the snapshot into an empty index")


# SQLite


_SQLITE_CREATE = (
    "CREATE TABLE IF NOT EXISTS index_snapshot_tracking ("
    "application_name TEXT, notification_id INTEGER, "
    "PRIMARY KEY (application_name)) WITHOUT ROWID",
    # The Minted position is the rowid: a plain scan of the table is in minting order.
    "CREATE TABLE IF NOT EXISTS index_snapshot ("
    "key_id TEXT NOT NULL UNIQUE, owner_id TEXT NOT NULL, name TEXT NOT NULL, "
    "prefix TEXT NOT NULL, digest BLOB NOT NULL, scopes TEXT NOT NULL, "
    "created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, expired_at TEXT, "
    "version INTEGER NOT NULL, minted_position INTEGER PRIMARY KEY)",
)
_SQLITE_MARK_MIGRATED = "INSERT OR IGNORE INTO index_snapshot_tracking VALUES (?, 1)"
_SQLITE_INSERT_TRACKING = (
    "INSERT INTO index_snapshot_tracking VALUES (:application_name, :notification_id) "
    "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
    "WHERE index_snapshot_tracking.notification_id < :notification_id "
    "RETURNING notification_id"
)
_SQLITE_MOVE_TRACKING = (
    "INSERT INTO index_snapshot_tracking VALUES (:application_name, :notification_id) "
    "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
    "WHERE index_snapshot_tracking.notification_id = :after "
    "RETURNING notification_id"
)
_SQLITE_MAX_TRACKING = (
    "SELECT MAX(notification_id) FROM index_snapshot_tracking WHERE application_name=?"
)
_SQLITE_UPSERT = (
    "INSERT INTO index_snapshot (key_id, owner_id, name, prefix, digest, scopes, created_at, "
    "expires_at, revoked_at, expired_at, version, minted_position) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (key_id) DO UPDATE SET owner_id = excluded.owner_id, name = excluded.name, "
    "prefix = excluded.prefix, digest = excluded.digest, scopes = excluded.scopes, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at, "
    "revoked_at = excluded.revoked_at, expired_at = excluded.expired_at, "
    "version = excluded.version WHERE index_snapshot.version < excluded.version"
)
_SQLITE_SELECT_STATES = (
    "SELECT key_id, owner_id, name, prefix, digest, scopes, created_at, expires_at, "
    "revoked_at, expired_at, version, minted_position FROM index_snapshot "
)
_SQLITE_LOAD = (
    "SELECT key_id, owner_id, name, prefix, digest, scopes, created_at, expires_at, "
    "revoked_at, expired_at, version FROM index_snapshot ORDER BY minted_position"
)
# Well below SQLite's limit on parameters in one statement, whatever its build.
_SQLITE_CHUNK = 500


def _sqlite_at(at: datetime | None) -> str | None:
    # One fixed-width UTC form: it reads back as the same instant, in UTC.
    return None if at is None else at.astimezone(UTC).isoformat(timespec="microseconds")


class SQLiteSnapshotView(SQLiteTrackingRecorder, SnapshotView):
    """Key states in the ledger's SQLite file (index_snapshot), tracked in its own table."""

    def __init__(self, datastore: SQLiteDatastore, application_name: str = "ledger") -> None:
        super().__init__(datastore)
        self.application_name = application_name
        if not datastore.single_row_tracking:
            raise ValueError("the snapshot needs single-row tracking (the library's default)")
        # The library's statements name its shared "tracking" table; this view keeps its own.
        self.insert_tracking_statement = _SQLITE_INSERT_TRACKING
        self.select_max_tracking_id_statement = _SQLITE_MAX_TRACKING

    def construct_create_table_statements(self) -> list[str]:
        return list(_SQLITE_CREATE)

    def create_table(self) -> None:
        # Once the tables exist (every start but the first), read only: a transaction that
        # reads and then writes fails at once, "database is locked", if another process
        # committed in between, as it does when a process starts beside busy ones.
        try:
            if self.max_tracking_id(_MIGRATION):
                self.tracking_table_exists = True
                self.tracking_migration_previous = self.tracking_migration_current = 1
                return
        except OperationalError:
            pass
        super().create_table()

    def _create_table(self, c: SQLiteCursor) -> None:
        # This table was never multi-row, so the library's migration (which renames its own
        # "tracking" table) does not apply; only its marker row is wanted.
        SQLiteRecorder._create_table(self, c)
        c.execute(_SQLITE_MARK_MIGRATED, (_MIGRATION,))
        self.tracking_migration_current = 1

    def apply(
        self, changes: Sequence[KeyState], tracking: Tracking, *, after: int | None = None
    ) -> None:
        params = [
            (
                str(s.key_id),
                s.owner_id,
                s.name,
                s.prefix,
                s.digest,
                scopes_text(s.scopes),
                _sqlite_at(s.created_at),
                _sqlite_at(s.expires_at),
                _sqlite_at(s.revoked_at),
                _sqlite_at(s.expired_at),
                s.version,
                s.minted_position,
            )
            for s in changes
        ]
        with self.datastore.transaction(commit=True) as c:
            # Tracking first: it takes the write lock, and a process that lost the race fails
            # before writing any row.
            if after is None:
                self._insert_tracking(c, tracking)
            else:
                c.execute(
                    _SQLITE_MOVE_TRACKING,
                    {
                        "application_name": tracking.application_name,
                        "notification_id": tracking.notification_id,
                        "after": after,
                    },
                )
                if c.fetchone() is None:
                    raise IntegrityError(
                        f"snapshot is no longer at {after}: not moving it to "
                        f"{tracking.notification_id}"
                    )
            c.executemany(_SQLITE_UPSERT, params)

    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        ids = [str(k) for k in key_ids]
        found: dict[UUID, KeyState] = {}
        with self.datastore.transaction(commit=False) as c:
            raw = c.sqlite_cursor
            raw.row_factory = None
            for i in range(0, len(ids), _SQLITE_CHUNK):
                chunk = ids[i : i + _SQLITE_CHUNK]
                marks = ",".join("?" * len(chunk))
                raw.execute(f"{_SQLITE_SELECT_STATES} WHERE key_id IN ({marks})", chunk)
                for row in raw.fetchall():
                    state = _sqlite_state(row)
                    found[state.key_id] = state
        return found

    def load(self, into: VerificationIndex) -> int:
        _check_empty(into)
        add, shared_scopes, at = into.add, into.shared_scopes, datetime.fromisoformat
        # One frozenset per distinct stored text: a dict hit per row, not a set built.
        scope_sets: dict[str, frozenset[str]] = {}
        with collector_paused(), self.datastore.transaction(commit=False) as c:
            # One read transaction: in WAL mode its snapshot is fixed by the first read, so the
            # position and the rows belong together.
            position = self._max_tracking_id(self.application_name, c) or 0
            raw = c.sqlite_cursor
            raw.row_factory = None
            raw.execute(_SQLITE_LOAD)
            for (
                key_id,
                owner_id,
                name,
                prefix,
                digest,
                scope_text,
                created_at,
                expires_at,
                revoked_at,
                expired_at,
                version,
            ) in raw:
                scopes = scope_sets.get(scope_text)
                if scopes is None:
                    scopes = scope_sets[scope_text] = shared_scopes(scope_text.split())
                record = KeyRecord(
                    UUID(key_id),
                    owner_id,
                    name,
                    prefix,
                    digest,
                    scopes,
                    at(created_at),
                    None if expires_at is None else at(expires_at),
                )
                if revoked_at is not None:
                    record.revoked_at = at(revoked_at)
                if expired_at is not None:
                    record.expired_at = at(expired_at)
                if version != 1:
                    record.version = version
                add(record)
        into.position = position
        return position


def _sqlite_state(row: tuple[Any, ...]) -> KeyState:
    def at(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text)

    created_at = at(row[6])
    assert created_at is not None
    return KeyState(
        key_id=UUID(row[0]),
        owner_id=row[1],
        name=row[2],
        prefix=row[3],
        digest=row[4],
        scopes=tuple(row[5].split()),
        created_at=created_at,
        expires_at=at(row[7]),
        revoked_at=at(row[8]),
        expired_at=at(row[9]),
        version=row[10],
        minted_position=row[11],
    )


# PostgreSQL


_LOAD_CURSOR = "index_snapshot_load"
_LOAD_PAGE = 5_000


class PostgresSnapshotView(PostgresTrackingRecorder, SnapshotView):
    """Key states in the ledger's PostgreSQL schema (index_snapshot), tracked in its own table."""

    def __init__(self, datastore: PostgresDatastore, application_name: str = "ledger") -> None:
        super().__init__(datastore, tracking_table_name="index_snapshot_tracking")
        self.application_name = application_name
        if not datastore.single_row_tracking:
            raise ValueError("the snapshot needs single-row tracking (the library's default)")
        schema = Identifier(datastore.schema)
        table = Identifier("index_snapshot")
        columns = SQL(", ").join(map(Identifier, _COLUMNS))
        loaded = SQL(", ").join(map(Identifier, _COLUMNS[:-1]))
        tracking = Identifier("index_snapshot_tracking")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                "key_id uuid PRIMARY KEY, owner_id text NOT NULL, name text NOT NULL, "
                "prefix text NOT NULL, digest bytea NOT NULL, scopes text NOT NULL, "
                "created_at timestamptz NOT NULL, expires_at timestamptz, "
                "revoked_at timestamptz, expired_at timestamptz, version bigint NOT NULL, "
                "minted_position bigint NOT NULL)"
            ).format(schema, table)
        )
        # Index names are not schema-qualified; PostgreSQL puts them beside their table.
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} (minted_position)").format(
                Identifier("index_snapshot_minted_position"), schema, table
            )
        )
        self._move_tracking = SQL(
            "INSERT INTO {0}.{1} VALUES (%(application_name)s, %(notification_id)s) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = %(notification_id)s "
            "WHERE {0}.{1}.notification_id = %(after)s "
            "RETURNING notification_id"
        ).format(schema, tracking)
        # COPY into a temporary table, then one upsert from it: twice the rate of an upsert of
        # the batch as arrays (unnest) or of executemany, measured here, and COPY alone cannot
        # upsert. The table lives as long as the connection and empties at each commit.
        self._create_batch = SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS index_snapshot_batch (LIKE {0}.{1}) "
            "ON COMMIT DELETE ROWS"
        ).format(schema, table)
        self._copy_batch = SQL("COPY index_snapshot_batch ({0}) FROM STDIN").format(columns)
        self._upsert = SQL(
            "INSERT INTO {0}.{1} AS index_snapshot ({2}) SELECT {2} FROM index_snapshot_batch"
        ).format(schema, table, columns) + SQL(_UPSERT_TAIL)
        self._select_states = SQL("SELECT {2} FROM {0}.{1} WHERE key_id = ANY(%s::uuid[])").format(
            schema, table, columns
        )
        # In minting order, which the index keeps per owner: along the index on it, about a
        # second of the server's time for a million rows, while the client decodes.
        self._select_all = SQL("SELECT {2} FROM {0}.{1} ORDER BY minted_position").format(
            schema, table, loaded
        )

    def create_table(self) -> None:
        with creating_tables(self.datastore):
            super().create_table()

    def apply(
        self, changes: Sequence[KeyState], tracking: Tracking, *, after: int | None = None
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: the row lock orders competing writers, and the loser fails
            # before writing any row.
            if after is None:
                self._insert_tracking(curs, tracking)
            else:
                self._move(curs, tracking, after)
            if not changes:
                return
            curs.execute(self._create_batch)
            with curs.copy(self._copy_batch) as copy:
                for s in changes:
                    copy.write_row(
                        (
                            s.key_id,
                            s.owner_id,
                            s.name,
                            s.prefix,
                            s.digest,
                            scopes_text(s.scopes),
                            s.created_at,
                            s.expires_at,
                            s.revoked_at,
                            s.expired_at,
                            s.version,
                            s.minted_position,
                        )
                    )
            curs.execute(self._upsert)

    def _move(self, curs: Cursor[DictRow], tracking: Tracking, after: int) -> None:
        curs.execute(
            self._move_tracking,
            {
                "application_name": tracking.application_name,
                "notification_id": tracking.notification_id,
                "after": after,
            },
            prepare=True,
        )
        if curs.fetchone() is None:
            raise IntegrityError(
                f"snapshot is no longer at {after}: not moving it to {tracking.notification_id}"
            )

    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._select_states, (list(key_ids),))
            return {row[0]: _postgres_state(row) for row in curs}

    def load(self, into: VerificationIndex) -> int:
        _check_empty(into)
        add, shared_scopes = into.add, into.shared_scopes
        # One frozenset per distinct stored text: a dict hit per row, not a set built.
        scope_sets: dict[str, frozenset[str]] = {}
        with (
            collector_paused(),
            self.datastore.get_connection() as conn,
            conn.transaction(),
        ):
            # Repeatable read: the position and every row come from one snapshot of the
            # database, whatever commits meanwhile. UTC: datetimes as the events decode them.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            found = conn.execute(self.max_tracking_id_statement, (self.application_name,))
            position: int = (found.fetchone() or {}).get("max") or 0
            # A server-side cursor, binary, in pages: for a million rows it beat binary and text
            # COPY here by 0.5-1 s (fewer, larger reads; bench.cold_start compares them).
            with conn.cursor(_LOAD_CURSOR, binary=True, row_factory=tuple_row) as curs:
                curs.itersize = _LOAD_PAGE
                curs.execute(self._select_all)
                for (
                    key_id,
                    owner_id,
                    name,
                    prefix,
                    digest,
                    scope_text,
                    created_at,
                    expires_at,
                    revoked_at,
                    expired_at,
                    version,
                ) in curs:
                    scopes = scope_sets.get(scope_text)
                    if scopes is None:
                        scopes = scope_sets[scope_text] = shared_scopes(scope_text.split())
                    record = KeyRecord(
                        key_id, owner_id, name, prefix, digest, scopes, created_at, expires_at
                    )
                    if revoked_at is not None:
                        record.revoked_at = revoked_at
                    if expired_at is not None:
                        record.expired_at = expired_at
                    if version != 1:
                        record.version = version
                    add(record)
        into.position = position
        return position


def _postgres_state(row: tuple[Any, ...]) -> KeyState:
    return KeyState(
        key_id=row[0],
        owner_id=row[1],
        name=row[2],
        prefix=row[3],
        digest=row[4],
        scopes=tuple(row[5].split()),
        created_at=row[6],
        expires_at=row[7],
        revoked_at=row[8],
        expired_at=row[9],
        version=row[10],
        minted_position=row[11],
    )


# Starting a process


class IndexSnapshot:
    """One process's handle on the snapshot: its view and projector, one catch-up at a time."""

    def __init__(self, store: LedgerStore, view: SnapshotView) -> None:
        self.store = store
        self.view = view
        self.projector = SnapshotProjector(store.recorder, store.mapper, store.name, view)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, store: LedgerStore) -> IndexSnapshot | None:
        """The snapshot on the store's database; None for the in-memory store."""
        view = snapshot_view_for(store)
        return None if view is None else cls(store, view)

    def catch_up(self) -> int:
        """Project what the store holds beyond the snapshot; returns how many events."""
        with self._lock:
            return self.projector.catch_up()


# Projecting an event into the table costs about twice what applying it to the index does
# (it is decoded, then written): a snapshot far behind (the first start after it ships, say)
# is left for the follower to bring up to date, rather than delay this start.
CATCH_UP_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class WarmStart:
    """How a process's index got ready: from the snapshot, then the events after it."""

    snapshot_catch_up_s: float
    load_s: float
    replay_s: float
    keys: int
    position: int
    snapshot_position: int
    projected: int
    replayed: int

    @property
    def total_s(self) -> float:
        return self.snapshot_catch_up_s + self.load_s + self.replay_s


def warm_start(
    ledger: KeyLedger,
    snapshot: IndexSnapshot | None = None,
    *,
    catch_up_limit: int = CATCH_UP_LIMIT,
) -> WarmStart:
    """Bring the snapshot up to date, load it into the empty index, then replay what follows."""
    # Call it before the process serves commands, in place of a first `ledger.catch_up()`.
    # The snapshot only saves time: if it cannot be read, the index is built by replay.
    index = ledger.index
    if len(index):
        # Records are here already: loading could put older states back over them.
        snapshot = None
    elif snapshot is None:
        snapshot = IndexSnapshot.beside(ledger.store)
    projected, snapshot_position = 0, 0
    started = time.perf_counter()
    if snapshot is not None:
        try:
            projected = _catch_up_if_near(snapshot, catch_up_limit)
        except PersistenceError:
            # What the table holds is still consistent at its own position: load it.
            log.warning("index snapshot catch-up failed; loading it as it is", exc_info=True)
    caught_up = time.perf_counter()
    if snapshot is not None:
        try:
            snapshot_position = snapshot.view.load(index)
        except PersistenceError:
            # Records loaded so far are states as of the snapshot: replaying every event over
            # them still ends at the store's state, as each event applies to a key only once.
            log.warning("index snapshot load failed; replaying every event", exc_info=True)
    loaded = time.perf_counter()
    replayed = ledger.catch_up()
    done = time.perf_counter()
    return WarmStart(
        snapshot_catch_up_s=caught_up - started,
        load_s=loaded - caught_up,
        replay_s=done - loaded,
        keys=len(index),
        position=index.position,
        snapshot_position=snapshot_position,
        projected=projected,
        replayed=replayed,
    )


def _catch_up_if_near(snapshot: IndexSnapshot, limit: int) -> int:
    """Catch the snapshot up if it is at most `limit` events behind; returns how many it wrote."""
    store = snapshot.store
    behind = (store.recorder.max_notification_id() or 0) - (
        snapshot.view.max_tracking_id(store.name) or 0
    )
    if behind > limit:
        log.info(
            "index snapshot is %d events behind: replaying them into the index instead; "
            "the follower brings the table up to date",
            behind,
        )
        return 0
    return snapshot.catch_up()

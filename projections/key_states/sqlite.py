"""Key states in the ledger's SQLite file: the key states table and its tracking table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteDatastore

from projections.key_states.projection import collector_paused
from projections.key_states.view import (
    COLUMNS,
    LOADED,
    POLICY_COLUMNS,
    POLICY_TABLE,
    TABLE,
    TRACKING_TABLE,
    KeyState,
    KeyStatesView,
    PolicyState,
    load_rows,
    state_from_row,
    state_row,
)
from projections.sqlite_views import SQLiteTrackedView, sqlite_instant
from projections.verification_index.index import VerificationIndex

_TABLES = (
    # The Minted position is the rowid: a plain scan of the table is in minting order.
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "key_id TEXT NOT NULL UNIQUE, owner_id TEXT NOT NULL, name TEXT NOT NULL, "
    "prefix TEXT NOT NULL, digest BLOB NOT NULL, scopes TEXT NOT NULL, "
    "created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, expired_at TEXT, "
    "retires_at TEXT, suspended INTEGER NOT NULL, predecessor_id TEXT, successor_id TEXT, "
    "expires_ts REAL, lifetime REAL, retires_ts REAL, "
    "version INTEGER NOT NULL, minted_position INTEGER PRIMARY KEY)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_owner ON {TABLE} (owner_id, minted_position)",
    f"CREATE TABLE IF NOT EXISTS {POLICY_TABLE} (one INTEGER PRIMARY KEY CHECK (one = 1), "
    "version INTEGER NOT NULL, max_lifetime_days INTEGER, expiry_required INTEGER NOT NULL, "
    "revoke_unused_after_days INTEGER)",
)
# A newer state replaces an older one, never the other way round.
_UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (key_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:-1])
    + f" WHERE {TABLE}.version < excluded.version"
)
_UPSERT_POLICY = (
    f"INSERT INTO {POLICY_TABLE} (one, {', '.join(POLICY_COLUMNS)}) VALUES (1, ?, ?, ?, ?) "
    "ON CONFLICT (one) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in POLICY_COLUMNS)
    + f" WHERE {POLICY_TABLE}.version < excluded.version"
)
_SELECT_POLICY = f"SELECT {', '.join(POLICY_COLUMNS)} FROM {POLICY_TABLE}"
_SELECT_STATES = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} "
_SELECT_MINTED_BEFORE = (
    f"{_SELECT_STATES} WHERE created_at < ? AND revoked_at IS NULL AND expired_at IS NULL "
    "ORDER BY minted_position"
)
_SELECT_OWNED = f"{_SELECT_STATES} WHERE owner_id = ? ORDER BY minted_position"
_LOAD = f"SELECT key_id, {', '.join(LOADED)} FROM {TABLE}"
_LOAD_PAGE = 5_000
# Well below SQLite's limit on parameters in one statement, whatever its build.
_CHUNK = 500


def _stored(at: datetime | None) -> str | None:
    return None if at is None else sqlite_instant(at)


def _state(row: Sequence[Any]) -> KeyState:
    return state_from_row(row, key_id=UUID, instant=datetime.fromisoformat)


def _id_int(text: str) -> int:
    """A key id as the table stores it (a UUID's text) as the index holds it."""
    return int(text.replace("-", ""), 16)


class SQLiteKeyStatesView(SQLiteTrackedView, KeyStatesView):
    """Key states in the ledger's SQLite file."""

    def __init__(self, datastore: SQLiteDatastore, application_name: str = "ledger") -> None:
        super().__init__(datastore, TRACKING_TABLE)
        self.application_name = application_name

    def table_statements(self) -> Sequence[str]:
        return _TABLES

    def apply(
        self,
        changes: Sequence[KeyState],
        tracking: Tracking,
        *,
        after: int | None = None,
        policy: PolicyState | None = None,
    ) -> None:
        params = []
        for s in changes:
            row = list(state_row(s))
            row[0] = str(s.key_id)
            row[6:11] = [_stored(at) for at in row[6:11]]
            row[12:14] = [None if k is None else str(k) for k in row[12:14]]
            params.append(row)
        with self.datastore.transaction(commit=True) as c:
            # Tracking first: it takes the write lock, and a process that lost the race fails
            # before writing any row.
            self.track(c, tracking, after)
            c.executemany(_UPSERT, params)
            if policy is not None:
                c.execute(_UPSERT_POLICY, policy.row())

    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        ids = [str(k) for k in key_ids]
        found: dict[UUID, KeyState] = {}
        with self.datastore.transaction(commit=False) as c:
            raw = c.sqlite_cursor
            raw.row_factory = None
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                raw.execute(f"{_SELECT_STATES} WHERE key_id IN ({marks})", chunk)
                for row in raw.fetchall():
                    state = _state(row)
                    found[state.key_id] = state
        return found

    def keys_of(self, owner_id: str) -> list[KeyState]:
        with self.datastore.transaction(commit=False) as c:
            raw = c.sqlite_cursor
            raw.row_factory = None
            raw.execute(_SELECT_OWNED, (owner_id,))
            return [_state(row) for row in raw.fetchall()]

    def minted_before(self, cutoff: datetime) -> list[KeyState]:
        with self.datastore.transaction(commit=False) as c:
            raw = c.sqlite_cursor
            raw.row_factory = None
            raw.execute(_SELECT_MINTED_BEFORE, (sqlite_instant(cutoff),))
            return [_state(row) for row in raw.fetchall()]

    def load(self, into: VerificationIndex) -> int:
        with collector_paused(), self.datastore.transaction(commit=False) as c:
            # One read transaction: in WAL mode its snapshot is fixed by the first read, so the
            # position and the rows belong together.
            c.execute(self._select_max, (self.application_name,))
            position: int = c.fetchone()[0] or 0
            raw = c.sqlite_cursor
            raw.row_factory = None
            policy = raw.execute(_SELECT_POLICY).fetchone()
            if policy is not None:
                in_force = PolicyState.from_row(policy)
                into.set_terms(in_force.terms, in_force.version)
            raw.execute(_LOAD)
            load_rows(into, iter(partial(raw.fetchmany, _LOAD_PAGE), []), _id_int)
        into.position = position
        return position

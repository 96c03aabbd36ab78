"""The audit trail in the ledger's SQLite file: audit_events, tracked in audit_tracking."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteDatastore

from projections.audit_trail.sql import tail, where
from projections.audit_trail.view import AuditQuery, AuditRow, AuditView
from projections.sqlite_views import SQLiteTrackedView, sqlite_instant

_TABLES = (
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
_INSERT_ROWS = (
    "INSERT INTO audit_events (position, key_id, owner_id, type, at, actor, event, chain) "
    "VALUES (?,?,?,?,?,?,?,?)"
)
_SELECT = "SELECT position, key_id, owner_id, type, at, actor, event, chain FROM audit_events "
_HEAD = "SELECT position, chain FROM audit_events ORDER BY position DESC LIMIT 1"
_OWNER = "SELECT owner_id FROM audit_events WHERE key_id = ? ORDER BY position LIMIT 1"


def _row(r: Any) -> AuditRow:
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


class SQLiteAuditView(SQLiteTrackedView, AuditView):
    """Audit rows in the ledger's SQLite file."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore, "audit_tracking")

    def table_statements(self) -> Sequence[str]:
        return _TABLES

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        params = [
            (
                r.position,
                str(r.key_id),
                r.owner_id,
                r.type,
                sqlite_instant(r.at),
                r.actor,
                msgspec.json.encode(r.event).decode(),
                r.chain,
            )
            for r in rows
        ]
        with self.datastore.transaction(commit=True) as c:
            # Tracking first: a process that lost the race fails before writing any row.
            self.track(c, tracking)
            c.executemany(_INSERT_ROWS, params)

    def head(self) -> tuple[int, str] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_HEAD)
            r = c.fetchone()
        return None if r is None else (r["position"], r["chain"])

    def owner_of(self, key_id: UUID) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_OWNER, (str(key_id),))
            r = c.fetchone()
        return None if r is None else (r["owner_id"] or None)

    def query(self, q: AuditQuery) -> list[AuditRow]:
        clauses, params = where(q, "?", str, sqlite_instant)
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SELECT + tail(q, clauses, "?"), [*params, q.limit])
            return [_row(r) for r in c.fetchall()]

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        q = AuditQuery(owner_id=owner_id, newest_first=False, cursor=position, limit=limit)
        return self.query(q)

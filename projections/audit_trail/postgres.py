"""The audit trail in the ledger's PostgreSQL schema: audit_events, tracked in audit_tracking."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from projections.audit_trail.sql import tail, where
from projections.audit_trail.view import AuditQuery, AuditRow, AuditView, as_utc
from projections.postgres_views import PostgresTrackedView

_INDEXES = (
    ("owner", "owner_id, position"),
    ("owner_key", "owner_id, key_id, position"),
    ("owner_type", "owner_id, type, position"),
    ("key", "key_id, position"),
)


def _row(r: DictRow) -> AuditRow:
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


class PostgresAuditView(PostgresTrackedView, AuditView):
    """Audit rows in the ledger's PostgreSQL schema."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, "audit_tracking")
        table = self.table("audit_events")
        self._create = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "position bigint PRIMARY KEY, key_id uuid NOT NULL, owner_id text NOT NULL, "
                "type text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, "
                "event jsonb NOT NULL, chain text NOT NULL)"
            ).format(table),
            # Index names are not schema-qualified; PostgreSQL puts them beside their table.
            *(
                SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} (" + columns + ")").format(
                    Identifier(f"audit_events_{suffix}"), table
                )
                for suffix, columns in _INDEXES
            ),
        ]
        # COPY: five times the rate of a multi-row INSERT here, in the same transaction.
        self._copy_rows = SQL(
            "COPY {0} (position, key_id, owner_id, type, at, actor, event, chain) FROM STDIN"
        ).format(table)
        self._select = SQL(
            # As text: msgspec decodes it several times faster than psycopg's json.loads.
            "SELECT position, key_id, owner_id, type, at, actor, event::text, chain FROM {0} "
        ).format(table)
        self._head = SQL("SELECT position, chain FROM {0} ORDER BY position DESC LIMIT 1").format(
            table
        )
        self._owner = SQL(
            "SELECT owner_id FROM {0} WHERE key_id = %s ORDER BY position LIMIT 1"
        ).format(table)

    def table_statements(self) -> Sequence[Composed]:
        return self._create

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: a process that lost the race fails before writing any row.
            self.track(curs, tracking)
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
        r = self.fetch(self._head, ())
        return None if not r else (r[0]["position"], r[0]["chain"])

    def owner_of(self, key_id: UUID) -> str | None:
        r = self.fetch(self._owner, (key_id,))
        return (r[0]["owner_id"] or None) if r else None

    def query(self, q: AuditQuery) -> list[AuditRow]:
        clauses, params = where(q, "%s", lambda k: k, as_utc)
        statement = self._select + SQL(tail(q, clauses, "%s"))
        return [_row(r) for r in self.fetch(statement, [*params, q.limit])]

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        q = AuditQuery(owner_id=owner_id, newest_first=False, cursor=position, limit=limit)
        return self.query(q)

"""Key states in the ledger's PostgreSQL schema: key_states, tracked in key_states_tracking."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from projections.key_states.projection import collector_paused
from projections.key_states.view import (
    COLUMNS,
    LOADED,
    KeyState,
    KeyStatesView,
    load_rows,
    state_from_row,
    state_row,
)
from projections.postgres_views import PostgresTrackedView
from projections.verification_index.index import VerificationIndex

_LOAD_CURSOR = "key_states_load"
_LOAD_PAGE = 5_000


class PostgresKeyStatesView(PostgresTrackedView, KeyStatesView):
    """Key states in the ledger's PostgreSQL schema."""

    def __init__(self, datastore: PostgresDatastore, application_name: str = "ledger") -> None:
        super().__init__(datastore, "key_states_tracking")
        self.application_name = application_name
        table = self.table("key_states")
        columns = SQL(", ").join(map(Identifier, COLUMNS))
        self._create = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "key_id uuid PRIMARY KEY, owner_id text NOT NULL, name text NOT NULL, "
                "prefix text NOT NULL, digest bytea NOT NULL, scopes text NOT NULL, "
                "created_at timestamptz NOT NULL, expires_at timestamptz, "
                "revoked_at timestamptz, expired_at timestamptz, version bigint NOT NULL, "
                "minted_position bigint NOT NULL)"
            ).format(table),
            # Index names are not schema-qualified; PostgreSQL puts them beside their table.
            SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} (minted_position)").format(
                Identifier("key_states_minted_position"), table
            ),
        ]
        # COPY into a temporary table, then one upsert from it: twice the rate of an upsert of
        # the batch as arrays (unnest) or of executemany, measured here, and COPY alone cannot
        # upsert. The table lives as long as the connection and empties at each commit.
        self._create_batch = SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS key_states_batch (LIKE {0}) ON COMMIT DELETE ROWS"
        ).format(table)
        self._copy_batch = SQL("COPY key_states_batch ({0}) FROM STDIN").format(columns)
        # A newer state replaces an older one, never the other way round.
        self._upsert = SQL(
            "INSERT INTO {0} AS key_states ({1}) SELECT {1} FROM key_states_batch "
            "ON CONFLICT (key_id) DO UPDATE SET {2} WHERE key_states.version < excluded.version"
        ).format(
            table,
            columns,
            SQL(", ").join(SQL("{0} = excluded.{0}").format(Identifier(c)) for c in COLUMNS[1:-1]),
        )
        self._select_states = SQL("SELECT {1} FROM {0} WHERE key_id = ANY(%s::uuid[])").format(
            table, columns
        )
        # In minting order, which the index keeps per owner: along the index on it, about a
        # second of the server's time for a million rows, while the client decodes.
        self._select_all = SQL("SELECT {1} FROM {0} ORDER BY minted_position").format(
            table, SQL(", ").join(map(Identifier, LOADED))
        )

    def table_statements(self) -> Sequence[Composed]:
        return self._create

    def apply(
        self, changes: Sequence[KeyState], tracking: Tracking, *, after: int | None = None
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: the row lock orders competing writers, and the loser fails
            # before writing any row.
            self.track(curs, tracking, after)
            if not changes:
                return
            curs.execute(self._create_batch)
            with curs.copy(self._copy_batch) as copy:
                for s in changes:
                    copy.write_row(state_row(s))
            curs.execute(self._upsert)

    def states(self, key_ids: Collection[UUID]) -> dict[UUID, KeyState]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._select_states, (list(key_ids),))
            return {row[0]: state_from_row(row) for row in curs}

    def load(self, into: VerificationIndex) -> int:
        with (
            collector_paused(),
            self.datastore.get_connection() as conn,
            conn.transaction(),
        ):
            # Repeatable read: the position and every row come from one snapshot of the
            # database, whatever commits meanwhile. UTC: datetimes as the events decode them.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            found = conn.execute(self._select_max, (self.application_name,)).fetchone()
            position: int = (found or {}).get("max") or 0
            # A server-side cursor, binary, in pages: for a million rows it beat binary and text
            # COPY here by 0.5-1 s (fewer, larger reads; bench.cold_start compares them).
            with conn.cursor(_LOAD_CURSOR, binary=True, row_factory=tuple_row) as curs:
                curs.itersize = _LOAD_PAGE
                curs.execute(self._select_all)
                load_rows(into, curs)
        into.position = position
        return position

"""Key states in the ledger's PostgreSQL schema: the key states table and its tracking table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from projections.key_states.projection import collector_paused
from projections.key_states.view import (
    COLUMNS,
    FLAGS,
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
from projections.postgres_views import PostgresTrackedView
from projections.verification_index.index import VerificationIndex

_LOAD_CURSOR = "key_states_load"
_LOAD_PAGE = 5_000


class PostgresKeyStatesView(PostgresTrackedView, KeyStatesView):
    """Key states in the ledger's PostgreSQL schema."""

    def __init__(self, datastore: PostgresDatastore, application_name: str = "ledger") -> None:
        super().__init__(datastore, TRACKING_TABLE)
        self.application_name = application_name
        table = self.table(TABLE)
        columns = SQL(", ").join(map(Identifier, COLUMNS))
        self._create = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "key_id uuid PRIMARY KEY, owner_id text NOT NULL, name text NOT NULL, "
                "prefix text NOT NULL, digest bytea NOT NULL, scopes text NOT NULL, "
                "created_at timestamptz NOT NULL, expires_at timestamptz, "
                "revoked_at timestamptz, expired_at timestamptz, retires_at timestamptz, "
                "suspended boolean NOT NULL, predecessor_id uuid, successor_id uuid, "
                "expires_ts float8, lifetime float8, retires_ts float8, "
                "version bigint NOT NULL, minted_position bigint NOT NULL)"
            ).format(table),
            # Index names are not schema-qualified; PostgreSQL puts them beside their table.
            SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} (minted_position)").format(
                Identifier(f"{TABLE}_minted_position"), table
            ),
            SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} (owner_id, minted_position)").format(
                Identifier(f"{TABLE}_owner"), table
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (one int PRIMARY KEY CHECK (one = 1), "
                "version bigint NOT NULL, max_lifetime_days int, expiry_required boolean NOT NULL, "
                "revoke_unused_after_days int)"
            ).format(self.table(POLICY_TABLE)),
        ]
        policy_columns = SQL(", ").join(map(Identifier, POLICY_COLUMNS))
        self._upsert_policy = SQL(
            "INSERT INTO {0} AS policy (one, {1}) VALUES (1, %s, %s, %s, %s) "
            "ON CONFLICT (one) DO UPDATE SET {2} WHERE policy.version < excluded.version"
        ).format(
            self.table(POLICY_TABLE),
            policy_columns,
            SQL(", ").join(SQL("{0} = excluded.{0}").format(Identifier(c)) for c in POLICY_COLUMNS),
        )
        self._select_policy = SQL("SELECT {1} FROM {0}").format(
            self.table(POLICY_TABLE), policy_columns
        )
        # COPY into a temporary table, then one upsert from it: twice the rate of an upsert of
        # the batch as arrays (unnest) or of executemany, measured here, and COPY alone cannot
        # upsert. The table lives as long as the connection and empties at each commit.
        batch = Identifier(f"{TABLE}_batch")
        self._create_batch = SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {1} (LIKE {0}) ON COMMIT DELETE ROWS"
        ).format(table, batch)
        self._copy_batch = SQL("COPY {0} ({1}) FROM STDIN").format(batch, columns)
        # A newer state replaces an older one, never the other way round.
        self._upsert = SQL(
            "INSERT INTO {0} AS key_states ({1}) SELECT {1} FROM {3} "
            "ON CONFLICT (key_id) DO UPDATE SET {2} WHERE key_states.version < excluded.version"
        ).format(
            table,
            columns,
            SQL(", ").join(SQL("{0} = excluded.{0}").format(Identifier(c)) for c in COLUMNS[1:-1]),
            batch,
        )
        self._select_states = SQL("SELECT {1} FROM {0} WHERE key_id = ANY(%s::uuid[])").format(
            table, columns
        )
        # In no order: the index keeps none, and a plain scan is the server's quickest read.
        self._select_minted_before = SQL(
            "SELECT {1} FROM {0} WHERE created_at < %s AND revoked_at IS NULL "
            "AND expired_at IS NULL ORDER BY minted_position"
        ).format(table, columns)
        self._select_owned = SQL(
            "SELECT {1} FROM {0} WHERE owner_id = %s ORDER BY minted_position"
        ).format(table, columns)
        # The key id as its 16 bytes: the index keeps it as an int, and bytes make one quickly.
        loaded = [
            SQL("uuid_send(key_id)"),
            *(SQL(c) if c == FLAGS else Identifier(c) for c in LOADED),
        ]
        self._select_all = SQL("SELECT {1} FROM {0}").format(table, SQL(", ").join(loaded))

    def table_statements(self) -> Sequence[Composed]:
        return self._create

    def apply(
        self,
        changes: Sequence[KeyState],
        tracking: Tracking,
        *,
        after: int | None = None,
        policy: PolicyState | None = None,
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: the row lock orders competing writers, and the loser fails
            # before writing any row.
            self.track(curs, tracking, after)
            if policy is not None:
                curs.execute(self._upsert_policy, policy.row())
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
            return {row[0]: state_from_row(row, instant=_utc) for row in curs}

    def keys_of(self, owner_id: str) -> list[KeyState]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._select_owned, (owner_id,))
            return [state_from_row(row, instant=_utc) for row in curs]

    def minted_before(self, cutoff: datetime) -> list[KeyState]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._select_minted_before, (cutoff,))
            return [state_from_row(row, instant=_utc) for row in curs]

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
            policy = conn.execute(self._select_policy).fetchone()
            if policy is not None:
                in_force = PolicyState.from_row(list(policy.values()))
                into.set_terms(in_force.terms, in_force.version)
            # A server-side cursor, binary, a page a fetch: for a million rows it beat binary
            # and text COPY here (bench.cold_start compares them).
            with conn.cursor(_LOAD_CURSOR, binary=True, row_factory=tuple_row) as curs:
                curs.execute(self._select_all)
                load_rows(into, iter(partial(curs.fetchmany, _LOAD_PAGE), []), _id_int)
        into.position = position
        return position


# A key id as uuid_send gives it (16 bytes, big-endian), as the index holds it: called in C.
_id_int = partial(int.from_bytes, byteorder="big")


def _utc(at: datetime) -> datetime:
    """An instant as the events hold it, in UTC, whatever the session's time zone."""
    return at.astimezone(UTC)

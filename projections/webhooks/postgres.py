"""Webhook delivery state in the ledger's PostgreSQL schema: the SQLite store's twin, through
a small pool of the backend's (autocommit connections, one transaction per write)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection
from psycopg_pool import ConnectionPool

from projections.postgres_views import TablesOnFirstUse
from projections.webhooks.sqlite import _DELIVERY, _ENDPOINT, _delivery, _endpoint
from projections.webhooks.store import (
    DELIVERIES_INDEX,
    DELIVERIES_TABLE,
    ENDPOINTS_INDEX,
    ENDPOINTS_TABLE,
    PENDING,
    Attempt,
    Delivery,
    Endpoint,
    NewDelivery,
    WebhookStore,
)


class PostgresWebhookStore(WebhookStore):
    """The two tables in the ledger's PostgreSQL schema."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        """`pool`'s connections are in autocommit mode, on the ledger's schema (search_path)."""
        self._pool = pool
        types = {"uuid": "uuid", "real": "double precision", "blob": "bytea"}
        self._tables = TablesOnFirstUse(
            "anthra webhooks",
            [
                ENDPOINTS_TABLE.format(**types),
                ENDPOINTS_INDEX,
                DELIVERIES_TABLE.format(serial="bigserial PRIMARY KEY", **types),
                DELIVERIES_INDEX,
            ],
        )

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool.connection() as conn:
            self._tables.ensure(conn)
            yield conn

    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO webhook_endpoints VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL)",
                (
                    endpoint.endpoint_id,
                    endpoint.owner_id,
                    endpoint.url,
                    msgspec.json.encode(endpoint.event_types).decode(),
                    secret,
                    endpoint.created_at,
                    endpoint.position,
                    endpoint.status,
                    endpoint.reason,
                ),
            )

    def _endpoints(self, where: str, *args: Any) -> list[Endpoint]:
        with self._connection() as conn:
            rows = conn.execute(f"{_ENDPOINT} {where}", args).fetchall()
        return [_endpoint(row) for row in rows]

    def endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        found = self._endpoints("WHERE endpoint_id = %s", endpoint_id)
        return found[0] if found else None

    def endpoints_of(self, owner_id: str) -> list[Endpoint]:
        return self._endpoints("WHERE owner_id = %s ORDER BY created_at", owner_id)

    def enabled(self) -> list[Endpoint]:
        return self._endpoints("WHERE status = 'enabled' ORDER BY created_at")

    def secret(self, endpoint_id: UUID) -> str | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT secret FROM webhook_endpoints WHERE endpoint_id = %s", (endpoint_id,)
            ).fetchone()
        return row[0] if row and row[0] else None

    def set_status(self, endpoint_id: UUID, status: str, reason: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE webhook_endpoints SET status = %s, reason = %s,"
                " secret = CASE WHEN %s = 'deleted' THEN '' ELSE secret END"
                " WHERE endpoint_id = %s",
                (status, reason, status, endpoint_id),
            )

    def enqueue(
        self,
        endpoint_id: UUID,
        read_from: int,
        read_to: int,
        deliveries: Sequence[NewDelivery],
        now: float,
    ) -> bool:
        with self._connection() as conn, conn.transaction():
            moved = conn.execute(
                "UPDATE webhook_endpoints SET position = %s"
                " WHERE endpoint_id = %s AND position = %s",
                (read_to, endpoint_id, read_from),
            ).rowcount
            if not moved:
                return False
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO webhook_deliveries (endpoint_id, message_id, type, position,"
                    " payload, status, attempts, last_status, last_error, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, 0, NULL, '', %s)"
                    " ON CONFLICT (endpoint_id, message_id) DO NOTHING",
                    [
                        (endpoint_id, d.message_id, d.type, d.position, d.payload, PENDING, now)
                        for d in deliveries
                    ],
                )
            return True

    def next_pending(self, endpoint_id: UUID) -> Delivery | None:
        with self._connection() as conn:
            row = conn.execute(
                f"{_DELIVERY} WHERE endpoint_id = %s AND status = %s ORDER BY seq LIMIT 1",
                (endpoint_id, PENDING),
            ).fetchone()
        return _delivery(row) if row else None

    def record_attempt(self, endpoint_id: UUID, seq: int, attempt: Attempt) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = %s,"
                " last_status = %s, last_error = %s, next_attempt_at = %s, delivered_at = %s,"
                " first_attempt_at = COALESCE(first_attempt_at, %s)"
                " WHERE endpoint_id = %s AND seq = %s",
                (
                    attempt.status,
                    attempt.last_status,
                    attempt.last_error,
                    attempt.next_attempt_at,
                    attempt.delivered_at,
                    attempt.at,
                    endpoint_id,
                    seq,
                ),
            )

    def deliveries(self, endpoint_id: UUID, limit: int) -> list[Delivery]:
        with self._connection() as conn:
            rows = conn.execute(
                f"{_DELIVERY} WHERE endpoint_id = %s ORDER BY seq DESC LIMIT %s",
                (endpoint_id, limit),
            ).fetchall()
        return [_delivery(row) for row in rows]

    def lease(self, endpoint_id: UUID, holder: str, now: float, until: float) -> bool:
        # A lease row rather than an advisory lock: a session lock would tie the lease to one
        # pooled connection, and the row reads the same on SQLite.
        with self._connection() as conn:
            taken = conn.execute(
                "UPDATE webhook_endpoints SET lease_holder = %s, lease_until = %s"
                " WHERE endpoint_id = %s AND (lease_holder IS NULL OR lease_holder = %s"
                " OR lease_until <= %s)",
                (holder, until, endpoint_id, holder, now),
            ).rowcount
        return bool(taken)

    def release(self, endpoint_id: UUID, holder: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE webhook_endpoints SET lease_holder = NULL, lease_until = NULL"
                " WHERE endpoint_id = %s AND lease_holder = %s",
                (endpoint_id, holder),
            )

    def close(self) -> None:
        self._pool.close()

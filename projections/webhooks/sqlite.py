"""Webhook delivery state in the ledger's SQLite file: two tables, one locked connection."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec

from projections.sqlite_views import connect, write_transaction
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

_ENDPOINT = (
    "SELECT endpoint_id, owner_id, url, event_types, created_at, position, status, reason"
    " FROM webhook_endpoints"
)
_DELIVERY = (
    "SELECT seq, endpoint_id, message_id, type, position, payload, status, attempts,"
    " last_status, last_error, created_at, first_attempt_at, next_attempt_at, delivered_at"
    " FROM webhook_deliveries"
)


class SQLiteWebhookStore(WebhookStore):
    """The two tables in the ledger's SQLite file: WAL, a busy timeout, one locked connection."""

    def __init__(self, path: str, busy_timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._conn = connect(path, busy_timeout)
        types = {"uuid": "TEXT", "real": "REAL", "blob": "BLOB"}
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute(ENDPOINTS_TABLE.format(**types))
            conn.execute(ENDPOINTS_INDEX)
            conn.execute(DELIVERIES_TABLE.format(serial="INTEGER PRIMARY KEY", **types))
            conn.execute(DELIVERIES_INDEX)

    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO webhook_endpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    str(endpoint.endpoint_id),
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
        with self._lock:
            rows = self._conn.execute(f"{_ENDPOINT} {where}", args).fetchall()
        return [_endpoint(row) for row in rows]

    def endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        found = self._endpoints("WHERE endpoint_id = ?", str(endpoint_id))
        return found[0] if found else None

    def endpoints_of(self, owner_id: str) -> list[Endpoint]:
        return self._endpoints("WHERE owner_id = ? ORDER BY created_at", owner_id)

    def enabled(self) -> list[Endpoint]:
        return self._endpoints("WHERE status = 'enabled' ORDER BY created_at")

    def secret(self, endpoint_id: UUID) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT secret FROM webhook_endpoints WHERE endpoint_id = ?", (str(endpoint_id),)
            ).fetchone()
        return row[0] if row and row[0] else None

    def set_status(self, endpoint_id: UUID, status: str, reason: str) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute(
                "UPDATE webhook_endpoints SET status = ?, reason = ?,"
                " secret = CASE WHEN ? = 'deleted' THEN '' ELSE secret END WHERE endpoint_id = ?",
                (status, reason, status, str(endpoint_id)),
            )

    def enqueue(
        self,
        endpoint_id: UUID,
        read_from: int,
        read_to: int,
        deliveries: Sequence[NewDelivery],
        now: float,
    ) -> bool:
        with self._lock, write_transaction(self._conn) as conn:
            moved = conn.execute(
                "UPDATE webhook_endpoints SET position = ? WHERE endpoint_id = ? AND position = ?",
                (read_to, str(endpoint_id), read_from),
            ).rowcount
            if not moved:
                return False
            conn.executemany(
                "INSERT INTO webhook_deliveries (endpoint_id, message_id, type, position, payload,"
                " status, attempts, last_status, last_error, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 0, NULL, '', ?)"
                " ON CONFLICT (endpoint_id, message_id) DO NOTHING",
                [
                    (str(endpoint_id), d.message_id, d.type, d.position, d.payload, PENDING, now)
                    for d in deliveries
                ],
            )
            return True

    def next_pending(self, endpoint_id: UUID) -> Delivery | None:
        with self._lock:
            row = self._conn.execute(
                f"{_DELIVERY} WHERE endpoint_id = ? AND status = ? ORDER BY seq LIMIT 1",
                (str(endpoint_id), PENDING),
            ).fetchone()
        return _delivery(row) if row else None

    def record_attempt(self, endpoint_id: UUID, seq: int, attempt: Attempt) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?,"
                " last_status = ?, last_error = ?, next_attempt_at = ?, delivered_at = ?,"
                " first_attempt_at = COALESCE(first_attempt_at, ?)"
                " WHERE endpoint_id = ? AND seq = ?",
                (
                    attempt.status,
                    attempt.last_status,
                    attempt.last_error,
                    attempt.next_attempt_at,
                    attempt.delivered_at,
                    attempt.at,
                    str(endpoint_id),
                    seq,
                ),
            )

    def deliveries(self, endpoint_id: UUID, limit: int) -> list[Delivery]:
        with self._lock:
            rows = self._conn.execute(
                f"{_DELIVERY} WHERE endpoint_id = ? ORDER BY seq DESC LIMIT ?",
                (str(endpoint_id), limit),
            ).fetchall()
        return [_delivery(row) for row in rows]

    def lease(self, endpoint_id: UUID, holder: str, now: float, until: float) -> bool:
        with self._lock, write_transaction(self._conn) as conn:
            taken = conn.execute(
                "UPDATE webhook_endpoints SET lease_holder = ?, lease_until = ?"
                " WHERE endpoint_id = ? AND (lease_holder IS NULL OR lease_holder = ?"
                " OR lease_until <= ?)",
                (holder, until, str(endpoint_id), holder, now),
            ).rowcount
        return bool(taken)

    def release(self, endpoint_id: UUID, holder: str) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute(
                "UPDATE webhook_endpoints SET lease_holder = NULL, lease_until = NULL"
                " WHERE endpoint_id = ? AND lease_holder = ?",
                (str(endpoint_id), holder),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _endpoint(row: Any) -> Endpoint:
    endpoint_id, owner_id, url, types, created_at, position, status, reason = row
    return Endpoint(
        endpoint_id=UUID(str(endpoint_id)),
        owner_id=owner_id,
        url=url,
        event_types=tuple(msgspec.json.decode(types)),
        created_at=float(created_at),
        position=int(position),
        status=status,
        reason=reason,
    )


def _delivery(row: Any) -> Delivery:
    (seq, endpoint_id, message_id, type_, position, payload, status, attempts) = row[:8]
    last_status, last_error, created_at, first_attempt_at, next_attempt_at, delivered_at = row[8:]
    return Delivery(
        seq=int(seq),
        endpoint_id=UUID(str(endpoint_id)),
        message_id=message_id,
        type=type_,
        position=position,
        payload=bytes(payload),
        status=status,
        attempts=int(attempts),
        last_status=last_status,
        last_error=last_error,
        created_at=float(created_at),
        first_attempt_at=first_attempt_at,
        next_attempt_at=next_attempt_at,
        delivered_at=delivered_at,
    )

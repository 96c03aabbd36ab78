"""Webhook delivery state in memory: one process, nothing kept after it stops."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID

import msgspec

from projections.webhooks.store import (
    PENDING,
    Attempt,
    Delivery,
    Endpoint,
    NewDelivery,
    WebhookStore,
)


class MemoryWebhookStore(WebhookStore):
    """Dictionaries under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[UUID, Endpoint] = {}
        self._secrets: dict[UUID, str] = {}
        self._leases: dict[UUID, tuple[str, float]] = {}
        self._deliveries: dict[UUID, list[Delivery]] = {}
        self._seq = 0

    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        with self._lock:
            self._endpoints[endpoint.endpoint_id] = endpoint
            self._secrets[endpoint.endpoint_id] = secret
            self._deliveries.setdefault(endpoint.endpoint_id, [])

    def endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        with self._lock:
            return self._endpoints.get(endpoint_id)

    def endpoints_of(self, owner_id: str) -> list[Endpoint]:
        with self._lock:
            found = [e for e in self._endpoints.values() if e.owner_id == owner_id]
        return sorted(found, key=lambda e: e.created_at)

    def enabled(self) -> list[Endpoint]:
        with self._lock:
            found = [e for e in self._endpoints.values() if e.status == "enabled"]
        return sorted(found, key=lambda e: e.created_at)

    def secret(self, endpoint_id: UUID) -> str | None:
        with self._lock:
            return self._secrets.get(endpoint_id)

    def set_status(self, endpoint_id: UUID, status: str, reason: str) -> None:
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            if found is None:
                return
            self._endpoints[endpoint_id] = msgspec.structs.replace(
                found, status=status, reason=reason
            )
            if status == "deleted":
                self._secrets.pop(endpoint_id, None)

    def enqueue(
        self,
        endpoint_id: UUID,
        read_from: int,
        read_to: int,
        deliveries: Sequence[NewDelivery],
        now: float,
    ) -> bool:
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            if found is None or found.position != read_from:
                return False
            queue = self._deliveries.setdefault(endpoint_id, [])
            have = {d.message_id for d in queue}
            for new in deliveries:
                if new.message_id in have:
                    continue
                have.add(new.message_id)
                self._seq += 1
                queue.append(
                    Delivery(
                        seq=self._seq,
                        endpoint_id=endpoint_id,
                        message_id=new.message_id,
                        type=new.type,
                        position=new.position,
                        payload=new.payload,
                        status=PENDING,
                        attempts=0,
                        last_status=None,
                        last_error="",
                        created_at=now,
                        first_attempt_at=None,
                        next_attempt_at=None,
                        delivered_at=None,
                    )
                )
            self._endpoints[endpoint_id] = msgspec.structs.replace(found, position=read_to)
            return True

    def next_pending(self, endpoint_id: UUID) -> Delivery | None:
        with self._lock:
            return next(
                (d for d in self._deliveries.get(endpoint_id, []) if d.status == PENDING), None
            )

    def record_attempt(self, endpoint_id: UUID, seq: int, attempt: Attempt) -> None:
        with self._lock:
            queue = self._deliveries.get(endpoint_id, [])
            for i, d in enumerate(queue):
                if d.seq == seq:
                    queue[i] = msgspec.structs.replace(
                        d,
                        attempts=d.attempts + 1,
                        first_attempt_at=(
                            attempt.at if d.first_attempt_at is None else d.first_attempt_at
                        ),
                        status=attempt.status,
                        last_status=attempt.last_status,
                        last_error=attempt.last_error,
                        next_attempt_at=attempt.next_attempt_at,
                        delivered_at=attempt.delivered_at,
                    )

    def deliveries(self, endpoint_id: UUID, limit: int) -> list[Delivery]:
        with self._lock:
            return list(reversed(self._deliveries.get(endpoint_id, [])))[:limit]

    def lease(self, endpoint_id: UUID, holder: str, now: float, until: float) -> bool:
        with self._lock:
            current = self._leases.get(endpoint_id)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._leases[endpoint_id] = (holder, until)
            return True

    def release(self, endpoint_id: UUID, holder: str) -> None:
        with self._lock:
            if self._leases.get(endpoint_id, ("", 0.0))[0] == holder:
                del self._leases[endpoint_id]

    def close(self) -> None:
        pass

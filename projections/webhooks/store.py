"""Where webhook endpoints' delivery state lives: each endpoint's URL, secret, event types,
status and the store position it has read the audit trail to; each delivery's attempts. One
store per backend, beside the ledger's events; times are seconds since the epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Final
from uuid import UUID

import msgspec

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"

# The two tables, with each backend's column types. A delivery's `seq` orders an endpoint's
# deliveries (store order; an expiry notice where it was found).
ENDPOINTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS webhook_endpoints ("
    " endpoint_id {uuid} PRIMARY KEY, owner_id TEXT NOT NULL, url TEXT NOT NULL,"
    " event_types TEXT NOT NULL, secret TEXT NOT NULL, created_at {real} NOT NULL,"
    " position BIGINT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,"
    " lease_holder TEXT, lease_until {real})"
)
ENDPOINTS_INDEX = (
    "CREATE INDEX IF NOT EXISTS webhook_endpoints_owner ON webhook_endpoints (owner_id)"
)
DELIVERIES_TABLE = (
    "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
    " seq {serial}, endpoint_id {uuid} NOT NULL, message_id TEXT NOT NULL,"
    " type TEXT NOT NULL, position BIGINT, payload {blob} NOT NULL, status TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, last_status INTEGER, last_error TEXT NOT NULL,"
    " created_at {real} NOT NULL, first_attempt_at {real}, next_attempt_at {real},"
    " delivered_at {real},"
    " UNIQUE (endpoint_id, message_id))"
)
DELIVERIES_INDEX = (
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint"
    " ON webhook_deliveries (endpoint_id, status, seq)"
)


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as the deliverer reads it (never its secret)."""

    endpoint_id: UUID
    owner_id: str
    url: str
    event_types: tuple[str, ...]
    created_at: float
    position: int
    status: str
    reason: str = ""


class NewDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A message to send: its id (the `webhook-id`), type, store position and body."""

    message_id: str
    type: str
    position: int | None
    payload: bytes


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A message and what became of it so far."""

    seq: int
    endpoint_id: UUID
    message_id: str
    type: str
    position: int | None
    payload: bytes
    status: str
    attempts: int
    last_status: int | None
    last_error: str
    created_at: float
    first_attempt_at: float | None
    next_attempt_at: float | None
    delivered_at: float | None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """What one try of a delivery, made `at`, came to."""

    at: float
    status: str
    last_status: int | None
    last_error: str
    next_attempt_at: float | None
    delivered_at: float | None = None


class WebhookStore(ABC):
    """Endpoints and their deliveries, with a lease so that one process delivers each."""

    @abstractmethod
    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        """Keep a new endpoint and its signing secret."""

    @abstractmethod
    def endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        """One endpoint, or None."""

    @abstractmethod
    def endpoints_of(self, owner_id: str) -> list[Endpoint]:
        """An owner's endpoints (deleted ones too), oldest first."""

    @abstractmethod
    def enabled(self) -> list[Endpoint]:
        """Every enabled endpoint, oldest first."""

    @abstractmethod
    def secret(self, endpoint_id: UUID) -> str | None:
        """The endpoint's signing secret; None once it is deleted."""

    @abstractmethod
    def set_status(self, endpoint_id: UUID, status: str, reason: str) -> None:
        """Disable or delete an endpoint; deleting also erases its secret."""

    @abstractmethod
    def enqueue(
        self,
        endpoint_id: UUID,
        read_from: int,
        read_to: int,
        deliveries: Sequence[NewDelivery],
        now: float,
    ) -> bool:
        """In one transaction, add the deliveries (a message id it has already is skipped) and
        move the endpoint's position from `read_from` to `read_to`; false (nothing written) if
        the position was no longer `read_from`."""

    @abstractmethod
    def next_pending(self, endpoint_id: UUID) -> Delivery | None:
        """The endpoint's first pending delivery in its order, or None."""

    @abstractmethod
    def record_attempt(self, endpoint_id: UUID, seq: int, attempt: Attempt) -> None:
        """Count one more try of a delivery, and what it came to (the first one's time kept)."""

    @abstractmethod
    def deliveries(self, endpoint_id: UUID, limit: int) -> list[Delivery]:
        """The endpoint's latest deliveries, newest first."""

    @abstractmethod
    def lease(self, endpoint_id: UUID, holder: str, now: float, until: float) -> bool:
        """Take or renew the right to deliver the endpoint's messages until `until`; false if
        another holder's lease runs past `now`."""

    @abstractmethod
    def release(self, endpoint_id: UUID, holder: str) -> None:
        """Give the lease up, if held."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

"""A webhook endpoint an owner registers: where to send which of their keys' events, and when it
stopped (disabled after failing past the retry window, or deleted by its owner).

Its signing secret is in no event: events are kept forever, so the secret lives beside the
delivery state (erased with the endpoint) and is shown to the owner once, at registration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.actors import SYSTEM

# What an endpoint may ask for: the key events of the audit trail, and the notice of an expiry
# coming (7 days and 1 day before), which is no event of the store.
EXPIRING_SOON: Final = "ExpiringSoon"
SUBSCRIBABLE: Final = (
    "Minted",
    "ScopesSet",
    "Revoked",
    "Expired",
    "Rotated",
    "Suspended",
    "Resumed",
    EXPIRING_SOON,
)
# Days before a key's expiry at which an ExpiringSoon notice goes out, once each.
EXPIRY_NOTICE_DAYS: Final = (7, 1)
ENABLED: Final = "enabled"
DISABLED: Final = "disabled"
DELETED: Final = "deleted"


class WebhookEndpoint(Aggregate):
    """An owner's endpoint: its URL, the event types it wants, and whether it still receives."""

    class WebhookRegistered(Aggregate.Created):
        """An owner registered an endpoint (its secret is not recorded here)."""

        owner_id: str
        url: str
        event_types: list[str]
        actor: str
        at: datetime

    class WebhookDisabled(Aggregate.Event):
        """Deliveries stopped: the endpoint failed past the retry window."""

        reason: str
        actor: str
        at: datetime

    class WebhookDeleted(Aggregate.Event):
        """The owner removed the endpoint."""

        actor: str
        at: datetime

    @event(WebhookRegistered)
    def __init__(
        self,
        id: UUID,
        owner_id: str,
        url: str,
        event_types: list[str],
        actor: str,
        at: datetime,
    ) -> None:
        self.owner_id = owner_id
        self.url = url
        self.event_types = list(event_types)
        self.registered_at = at
        self.disabled_reason = ""
        self.deleted = False

    @classmethod
    def register(
        cls,
        *,
        endpoint_id: UUID,
        owner_id: str,
        url: str,
        event_types: list[str],
        actor: str,
        at: datetime,
    ) -> WebhookEndpoint:
        """Record WebhookRegistered (the URL and event types are checked in domain.webhooks)."""
        return cls(
            id=endpoint_id,
            owner_id=owner_id,
            url=url,
            event_types=event_types,
            actor=actor,
            at=at,
        )

    @property
    def status(self) -> str:
        if self.deleted:
            return DELETED
        return DISABLED if self.disabled_reason else ENABLED

    def disable(self, reason: str, at: datetime) -> bool:
        """Stop deliveries, saying why; false (nothing recorded) if they stopped already."""
        if self.status != ENABLED:
            return False
        self._disabled(reason=reason, actor=SYSTEM, at=at)
        return True

    @event(WebhookDisabled)
    def _disabled(self, reason: str, actor: str, at: datetime) -> None:
        self.disabled_reason = reason

    def delete(self, actor: str, at: datetime) -> bool:
        """Remove the endpoint; false (nothing recorded) if it is deleted already."""
        if self.deleted:
            return False
        self._deleted(actor=actor, at=at)
        return True

    @event(WebhookDeleted)
    def _deleted(self, actor: str, at: datetime) -> None:
        self.deleted = True


EVENT_TYPES: Final = tuple(
    c.__name__
    for c in (
        WebhookEndpoint.WebhookRegistered,
        WebhookEndpoint.WebhookDisabled,
        WebhookEndpoint.WebhookDeleted,
    )
)

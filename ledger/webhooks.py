"""Webhook endpoints: register, list, show, delete, and disable one that fails past the retry
window. Each change is an event of the endpoint's aggregate in the ledger's store (so the audit
trail shows it); the endpoint's signing secret and delivery state are kept in the webhook store.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from domain.errors import InvalidInput, TooManyWebhooks, WebhookNotFound
from domain.webhook_endpoint import DELETED, DISABLED, ENABLED, SUBSCRIBABLE, WebhookEndpoint
from domain.webhooks import SECRET_BYTES, SECRET_PREFIX, check_url
from ledger.deadline import bounded
from ledger.key_ledger import KeyLedger
from ledger.recording import Events, KeyBusy
from projections.webhooks.store import Delivery, Endpoint, WebhookStore

log = logging.getLogger("anthra.webhooks")
MAX_ENDPOINTS: Final = 10


class RegisteredEndpoint:
    """A new endpoint and its signing secret, which exists only in this object."""

    __slots__ = ("endpoint", "secret")

    def __init__(self, endpoint: Endpoint, secret: str) -> None:
        self.endpoint = endpoint
        self.secret = secret

    def __repr__(self) -> str:
        # The secret must never reach a log or a traceback through a repr.
        return f"RegisteredEndpoint(endpoint_id={self.endpoint.endpoint_id})"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_event_types(event_types: Sequence[str]) -> list[str]:
    """The types, each one an endpoint may ask for, once each, in the order asked."""
    if not event_types:
        raise InvalidInput("event_types", f"one or more of {', '.join(SUBSCRIBABLE)}")
    unknown = [t for t in event_types if t not in SUBSCRIBABLE]
    if unknown:
        raise InvalidInput(
            "event_types", f"unknown {unknown[0][:40]!r}; one or more of {', '.join(SUBSCRIBABLE)}"
        )
    return list(dict.fromkeys(event_types))


class Webhooks:
    """An owner's webhook endpoints, over the key ledger's store and the webhook store."""

    def __init__(
        self, ledger: KeyLedger, store: WebhookStore, *, allow_http_loopback: bool = False
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.allow_http_loopback = allow_http_loopback

    @bounded()
    def register(
        self, *, owner_id: str, url: str, event_types: Sequence[str], actor: str
    ) -> RegisteredEndpoint:
        """Record the endpoint and keep its secret; it receives what the store records next."""
        url = check_url(url, allow_http_loopback=self.allow_http_loopback)
        types = check_event_types(event_types)
        live = [e for e in self.store.endpoints_of(owner_id) if e.status != DELETED]
        if len(live) >= MAX_ENDPOINTS:
            raise TooManyWebhooks(MAX_ENDPOINTS)
        at = self.ledger.now()
        endpoint = Endpoint(
            endpoint_id=uuid4(),
            owner_id=owner_id,
            url=url,
            event_types=tuple(types),
            created_at=at.timestamp(),
            # What is in the store now is history: deliveries start with what comes next.
            position=self.ledger.recorder.max_notification_id() or 0,
            status=ENABLED,
        )
        secret = new_secret()
        # The secret first: an event naming an endpoint that has no secret could not be
        # delivered; a secret without its event is removed below, or never read.
        self.store.add_endpoint(endpoint, secret)
        registered = WebhookEndpoint.register(
            endpoint_id=endpoint.endpoint_id,
            owner_id=owner_id,
            url=url,
            event_types=types,
            actor=actor,
            at=at,
        )
        try:
            self.ledger.record(list(registered.collect_events()))
        except BaseException:
            self.store.set_status(endpoint.endpoint_id, DELETED, "not recorded")
            raise
        log.info(
            "webhook endpoint %s registered for %s by %s", endpoint.endpoint_id, owner_id, actor
        )
        return RegisteredEndpoint(endpoint, secret)

    @bounded()
    def endpoints_of(self, owner_id: str) -> list[Endpoint]:
        """An owner's endpoints that are not deleted, oldest first."""
        return [e for e in self.store.endpoints_of(owner_id) if e.status != DELETED]

    @bounded()
    def endpoint(self, endpoint_id: str | UUID, owner_id: str | None = None) -> Endpoint:
        """One endpoint; a deleted one, or another owner's, does not exist."""
        uuid = _parse(endpoint_id)
        found = self.store.endpoint(uuid)
        if found is None or found.status == DELETED:
            raise WebhookNotFound(str(uuid))
        if owner_id is not None and found.owner_id != owner_id:
            raise WebhookNotFound(str(uuid))
        return found

    @bounded()
    def deliveries(
        self, endpoint_id: str | UUID, owner_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The endpoint's latest deliveries, newest first."""
        endpoint = self.endpoint(endpoint_id, owner_id)
        return self.store.deliveries(endpoint.endpoint_id, limit)

    @bounded()
    def delete(self, endpoint_id: str | UUID, owner_id: str, actor: str) -> None:
        """Record the endpoint deleted and erase its secret; nothing more is sent to it."""
        endpoint = self.endpoint(endpoint_id, owner_id)
        self._change(endpoint.endpoint_id, lambda e: e.delete(actor, self.ledger.now()))
        self.store.set_status(endpoint.endpoint_id, DELETED, f"deleted by {actor}")

    @bounded()
    def disable(self, endpoint_id: UUID, reason: str) -> None:
        """Record the endpoint disabled, saying why; its owner sees the reason."""
        self._change(endpoint_id, lambda e: e.disable(reason, self.ledger.now()))
        self.store.set_status(endpoint_id, DISABLED, reason)
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)

    def _change(self, endpoint_id: UUID, command: Callable[[WebhookEndpoint], bool]) -> None:
        def decide() -> tuple[Events, Callable[[], None]]:
            try:
                endpoint: Any = self.ledger.repository.get(endpoint_id)
            except AggregateNotFoundError:
                raise WebhookNotFound(str(endpoint_id)) from None
            if not isinstance(endpoint, WebhookEndpoint):
                raise WebhookNotFound(str(endpoint_id))
            command(endpoint)
            return list(endpoint.collect_events()), lambda: None

        self.ledger.until_saved(decide, lambda: KeyBusy(endpoint_id, "the webhook endpoint"))


def _parse(endpoint_id: str | UUID) -> UUID:
    if isinstance(endpoint_id, UUID):
        return endpoint_id
    try:
        return UUID(endpoint_id)
    except (ValueError, TypeError, AttributeError):
        raise WebhookNotFound(str(endpoint_id)[:64]) from None

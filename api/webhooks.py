"""The webhooks API: an owner registers, lists, shows and deletes endpoints, and reads each
endpoint's deliveries. Managing where key events go is account administration: signed-in
sessions only, as minting is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter

from api.auth import principal_of, requires_session
from api.events import key_audit_event
from api.keys import key_view
from api.openapi import SESSION_ONLY
from api.problems import ErrorBody
from api.schemas import (
    ExpiringSoonNotice,
    RegisteredWebhook,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
    WebhookMessage,
    WebhookRequest,
)
from domain.webhook_endpoint import EXPIRING_SOON
from ledger.key_ledger import KeyLedger
from ledger.webhooks import Webhooks
from projections.audit_trail.view import AuditRow
from projections.key_states.view import KeyState
from projections.webhooks.store import Delivery, Endpoint

WebhookId = Annotated[
    str,
    PathParameter(
        description="The endpoint's id, as registering gave it", schema_extra={"format": "uuid"}
    ),
]
TOO_MANY = {409: ResponseSpec(ErrorBody, description="The caller has 10 endpoints already")}
NOT_FOUND = {404: ResponseSpec(ErrorBody, description="No such endpoint of the caller's")}


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def webhook_view(endpoint: Endpoint) -> Webhook:
    return Webhook(
        id=str(endpoint.endpoint_id),
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        status=endpoint.status,
        created_at=datetime.fromtimestamp(endpoint.created_at, UTC),
        disabled_reason=endpoint.reason or None,
    )


def delivery_view(delivery: Delivery) -> WebhookDelivery:
    return WebhookDelivery(
        id=delivery.message_id,
        type=delivery.type,
        position=delivery.position,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=datetime.fromtimestamp(delivery.created_at, UTC),
        first_attempt_at=_instant(delivery.first_attempt_at),
        last_status_code=delivery.last_status,
        last_error=delivery.last_error or None,
        next_attempt_at=_instant(delivery.next_attempt_at),
        delivered_at=_instant(delivery.delivered_at),
    )


class WebhookPayloads:
    """Webhook bodies in the wire form the audit trail and the event stream use."""

    def __init__(self, ledger: KeyLedger) -> None:
        self.ledger = ledger

    def event(self, row: AuditRow) -> bytes:
        return _encoder.encode(
            WebhookMessage(type=row.type, timestamp=row.at, data=key_audit_event(row))
        )

    def expiring_soon(self, state: KeyState, days: int) -> bytes:
        assert state.expires_at is not None
        notice = ExpiringSoonNotice(
            key=key_view(state, self.ledger), days=days, expires_at=state.expires_at
        )
        return _encoder.encode(
            WebhookMessage(type=EXPIRING_SOON, timestamp=self.ledger.now(), data=notice)
        )


_encoder = msgspec.json.Encoder()


class WebhooksController(Controller):
    """Endpoints that receive the signed-in user's key events."""

    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    guards = [requires_session]
    security = SESSION_ONLY

    @post("/", status_code=201, responses=TOO_MANY, sync_to_thread=True)
    def register(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[WebhookRequest],
        webhooks: NamedDependency[Webhooks],
    ) -> RegisteredWebhook:
        """Register an endpoint; its signing secret is in this answer only."""
        principal = principal_of(request)
        registered = webhooks.register(
            owner_id=principal.user_id,
            url=data.url,
            event_types=data.event_types,
            actor=principal.actor,
        )
        return RegisteredWebhook(
            webhook=webhook_view(registered.endpoint), secret=registered.secret
        )

    @get("/", sync_to_thread=True)
    def list_webhooks(
        self, request: Request[Any, Any, Any], webhooks: NamedDependency[Webhooks]
    ) -> WebhookList:
        """The caller's endpoints, oldest first (never their secrets)."""
        owner_id = principal_of(request).user_id
        return WebhookList(webhooks=[webhook_view(e) for e in webhooks.endpoints_of(owner_id)])

    @get("/{webhook_id:str}", responses=NOT_FOUND, sync_to_thread=True)
    def show(
        self,
        request: Request[Any, Any, Any],
        webhook_id: WebhookId,
        webhooks: NamedDependency[Webhooks],
    ) -> Webhook:
        """One endpoint: enabled, or disabled and why."""
        return webhook_view(webhooks.endpoint(webhook_id, principal_of(request).user_id))

    @delete("/{webhook_id:str}", status_code=204, responses=NOT_FOUND, sync_to_thread=True)
    def remove(
        self,
        request: Request[Any, Any, Any],
        webhook_id: WebhookId,
        webhooks: NamedDependency[Webhooks],
    ) -> None:
        """Delete an endpoint: nothing more is sent to it, and its secret is erased."""
        principal = principal_of(request)
        webhooks.delete(webhook_id, principal.user_id, principal.actor)

    @get("/{webhook_id:str}/deliveries", responses=NOT_FOUND, sync_to_thread=True)
    def deliveries(
        self,
        request: Request[Any, Any, Any],
        webhook_id: WebhookId,
        webhooks: NamedDependency[Webhooks],
    ) -> WebhookDeliveryList:
        """The endpoint's latest 100 deliveries, newest first: status, attempts, last answer."""
        found = webhooks.deliveries(webhook_id, principal_of(request).user_id)
        return WebhookDeliveryList(deliveries=[delivery_view(d) for d in found])

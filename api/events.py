"""A key's events on the wire, spelt once: a key's history, the audit trail and the command line
answer the same tagged union from the same fields the audit trail keeps of each event."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from api.schemas import AuditEvent, HistoryEvent, WebhookEvent
from domain.actors import kind_and_id
from domain.api_key import EVENT_TYPES, EventType
from domain.timeline import scope_change
from domain.webhook_endpoint import EVENT_TYPES as WEBHOOK_EVENT_TYPES
from projections.audit_trail.projection import event_fields
from projections.audit_trail.view import AuditRow

# The event types a key's history holds; other aggregates share the store (idempotency records).
KEY_EVENT_TYPES = frozenset(EVENT_TYPES)
# What the audit trail shows: the keys' events, and the webhook endpoints' that receive them.
WebhookEventType = Literal["WebhookRegistered", "WebhookDisabled", "WebhookDeleted"]
AuditEventType = Literal[EventType, WebhookEventType]
AUDIT_EVENT_TYPES = KEY_EVENT_TYPES | frozenset(WEBHOOK_EVENT_TYPES)


def wire_event(
    type_: str,
    fields: dict[str, Any],
    *,
    at: datetime,
    actor: str,
    **common: Any,
) -> HistoryEvent:
    """An event's own fields with what every event shows: when, who, its version and context
    (and, from the audit trail, its position, key and chain value)."""
    event: HistoryEvent = msgspec.convert(
        _shown(type_, fields, at, actor, common), HistoryEvent, strict=False
    )
    return event


def _shown(
    type_: str, fields: dict[str, Any], at: datetime, actor: str, common: dict[str, Any]
) -> dict[str, Any]:
    """An event's fields, and what every event shows (the common ones that are set)."""
    kind, actor_id = kind_and_id(actor)
    shown = dict(fields)
    if type_ == "ScopesSet":
        added, removed = scope_change(shown["previous_scopes"], shown["scopes"])
        shown |= {"added": list(added), "removed": list(removed), "widened": bool(added)}
    shown |= {"type": type_, "at": at, "actor": actor, "actor_kind": kind, "actor_id": actor_id}
    shown |= {name: value for name, value in common.items() if value is not None}
    return shown


def history_event(event: Any) -> HistoryEvent:
    """A stored key event as its history shows it."""
    return wire_event(
        type(event).__name__,
        event_fields(event),
        at=event.at,
        actor=event.actor,
        version=event.originator_version,
        context=event.context,
    )


def audit_event(row: AuditRow) -> AuditEvent:
    """An audit row as the trail shows it: a key's event, or a webhook endpoint's."""
    if row.type not in WEBHOOK_EVENT_TYPES:
        return key_audit_event(row)
    common = {"position": row.position, "webhook_id": str(row.key_id), "chain": row.chain}
    shown = _shown(row.type, dict(row.event), row.at, row.actor, common)
    event: WebhookEvent = msgspec.convert(shown, WebhookEvent, strict=False)
    return event


def key_audit_event(row: AuditRow) -> HistoryEvent:
    """A key's audit row as the trail shows it."""
    fields = dict(row.event)
    return wire_event(
        row.type,
        fields,
        at=row.at,
        actor=row.actor,
        position=row.position,
        key_id=str(row.key_id),
        chain=row.chain,
    )

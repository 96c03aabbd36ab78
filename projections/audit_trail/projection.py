"""Projecting stored events into audit rows: what each event type shows, chained in order."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Mapper,
    Notification,
    Tracking,
)

from domain.api_key import ApiKey
from domain.lifetime_policy import LifetimePolicy
from domain.webhook_endpoint import WebhookEndpoint
from projections.audit_trail.chain import GENESIS, link
from projections.audit_trail.view import AuditRow, AuditTrailBroken, AuditView, as_utc
from projections.catch_up import ReadModelProjector

# Owners never change, so a cache is always right; bounded so that a long catch-up over
# millions of keys does not hold them all.
_OWNER_CACHE_SIZE = 100_000


# What each event type contributes to its row: an allow-list, so that a field added to an
# event later (a token, say) never reaches the audit trail without a decision here.


@singledispatch
def event_fields(e: Any) -> dict[str, Any]:
    """An event type the audit trail does not know yet: its context and version only."""
    return {}


@event_fields.register
def _minted(e: ApiKey.Minted) -> dict[str, Any]:
    # token_sha256 stays out: a digest is enough to test a leaked token against.
    fields = {"name": e.name, "prefix": e.prefix, "scopes": e.scopes, "expires_at": e.expires_at}
    # Only when there is one: rows written before rotation existed keep their exact fields.
    if e.predecessor_id is not None:
        fields["predecessor_id"] = str(e.predecessor_id)
    return fields


@event_fields.register
def _scopes_set(e: ApiKey.ScopesSet) -> dict[str, Any]:
    return {"scopes": e.scopes, "previous_scopes": e.previous_scopes}


@event_fields.register
def _revoked(e: ApiKey.Revoked) -> dict[str, Any]:
    return {"reason": e.reason}


@event_fields.register
def _rotated(e: ApiKey.Rotated) -> dict[str, Any]:
    return {"successor_id": str(e.successor_id), "retires_at": e.retires_at}


@event_fields.register
def _suspended(e: ApiKey.Suspended) -> dict[str, Any]:
    return {"reason": e.reason}


@event_fields.register
def _resumed(e: ApiKey.Resumed) -> dict[str, Any]:
    return {}


@event_fields.register
def _policy(e: LifetimePolicy.Set | LifetimePolicy.Changed) -> dict[str, Any]:
    return {
        "max_lifetime_days": e.max_lifetime_days,
        "expiry_required": e.expiry_required,
        "revoke_unused_after_days": e.revoke_unused_after_days,
    }


@event_fields.register
def _webhook_registered(e: WebhookEndpoint.WebhookRegistered) -> dict[str, Any]:
    # The signing secret is in no event; the URL and what it asked for are.
    return {"url": e.url, "event_types": e.event_types}


@event_fields.register
def _webhook_disabled(e: WebhookEndpoint.WebhookDisabled) -> dict[str, Any]:
    return {"reason": e.reason}


@event_fields.register
def _webhook_deleted(e: WebhookEndpoint.WebhookDeleted) -> dict[str, Any]:
    return {}


@event_fields.register
def _expired(e: ApiKey.Expired) -> dict[str, Any]:
    return {"expires_at": e.expires_at}


class RowMaker:
    """Turns notifications into audit rows, finding each key's owner once."""

    def __init__(self, mapper: Mapper[UUID], view: AuditView) -> None:
        self.mapper = mapper
        self.view = view
        self._owners: dict[UUID, str] = {}

    def row(self, n: Notification, chain: str) -> AuditRow:
        e: Any = self.mapper.to_domain_event(n)
        key_id = e.originator_id
        if isinstance(e, ApiKey.Minted | WebhookEndpoint.WebhookRegistered):
            owner_id = e.owner_id
            self._remember(key_id, owner_id)
        else:
            owner_id = self._owner(key_id)
        fields = event_fields(e)
        fields["context"] = getattr(e, "context", None)
        fields["version"] = e.originator_version
        return AuditRow(
            position=n.id,
            key_id=key_id,
            owner_id=owner_id,
            type=type(e).__name__,
            at=as_utc(getattr(e, "at", e.timestamp)),
            actor=getattr(e, "actor", ""),
            event=msgspec.to_builtins(fields),
            chain=chain,
        )

    def _owner(self, key_id: UUID) -> str:
        owner_id = self._owners.get(key_id)
        if owner_id is None:
            owner_id = self.view.owner_of(key_id) or ""
            if owner_id:
                self._remember(key_id, owner_id)
        return owner_id

    def _remember(self, key_id: UUID, owner_id: str) -> None:
        if len(self._owners) >= _OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners[key_id] = owner_id


class AuditProjector(ReadModelProjector):
    """Writes the audit rows of stored events, each position exactly once, chained in order."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        application_name: str,
        view: AuditView,
    ) -> None:
        super().__init__(recorder, application_name, view)
        self.view = view
        self._rows = RowMaker(mapper, view)

    def write(self, position: int, notifications: Sequence[Notification]) -> None:
        chain = self._chain_at(position)
        rows = []
        for n in notifications:
            chain = link(chain, n)
            rows.append(self._rows.row(n, chain))
        self.view.append(rows, Tracking(self.application_name, notifications[-1].id))

    def _chain_at(self, position: int) -> str:
        """The chain value of the row at `position`, the view's last."""
        head = self.view.head()
        if head is None and position == 0:
            return GENESIS
        if head is not None and head[0] > position:
            # Rows and tracking commit together: another process wrote after `position` was read.
            raise IntegrityError(f"the audit trail moved on from {position} to {head[0]}")
        if head is None or head[0] != position:
            # Extending a chain whose last link is missing would hide the damage.
            raise AuditTrailBroken(f"tracked position {position}, last audit row {head}")
        return head[1]

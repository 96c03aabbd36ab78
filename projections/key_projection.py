"""Applies key events to the verification index, one handler per event type."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.api_key import ApiKey
from projections.verification_index import KeyRecord, VerificationIndex


class KeyProjection(Projection[VerificationIndex]):
    """Keeps the verification index and the keys-by-owner read model current."""

    name = "keys"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _minted(self, domain_event: ApiKey.Minted, tracking: Tracking) -> None:
        e = domain_event
        if self.view.key(e.originator_id) is None:
            self.view.add(
                KeyRecord(
                    key_id=e.originator_id,
                    owner_id=e.owner_id,
                    name=e.name,
                    prefix=e.prefix,
                    digest=bytes.fromhex(e.token_sha256),
                    scopes=frozenset(e.scopes),
                    created_at=e.at,
                    expires_at=e.expires_at,
                )
            )
        self.view.insert_tracking(tracking)

    @process_event.register
    def _scopes_set(self, domain_event: ApiKey.ScopesSet, tracking: Tracking) -> None:
        e = domain_event
        record = self.view.key(e.originator_id)
        if record is not None:
            record.scopes = frozenset(e.scopes)
        self.view.insert_tracking(tracking)

    @process_event.register
    def _revoked(self, domain_event: ApiKey.Revoked, tracking: Tracking) -> None:
        e = domain_event
        record = self.view.key(e.originator_id)
        if record is not None and record.revoked_at is None:
            record.revoked_at = e.at
        self.view.insert_tracking(tracking)

    @process_event.register
    def _expired(self, domain_event: ApiKey.Expired, tracking: Tracking) -> None:
        e = domain_event
        record = self.view.key(e.originator_id)
        if record is not None and record.expired_at is None:
            record.expired_at = e.expires_at
        self.view.insert_tracking(tracking)

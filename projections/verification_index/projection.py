"""Applies key events to the verification index, one handler per event type."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.api_key import ApiKey
from domain.lifetime_policy import LifetimePolicy, terms_of
from projections.verification_index.index import (
    EXPIRED_FLAG,
    REVOKED_FLAG,
    SUSPENDED_FLAG,
    KeyRecord,
    VerificationIndex,
)


class KeyProjection(Projection[VerificationIndex]):
    """Keeps the verification index current.

    Applying is idempotent and ignores an event older than what a key already shows, so a
    process may apply its own events the moment it has saved them (read-your-writes) and
    meet them again, in store order, when it catches up.
    """

    name = "keys"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Apply the event, then record the position it came from."""
        self.apply(domain_event)
        self.view.insert_tracking(tracking)

    @singledispatchmethod
    def apply(self, domain_event: Any) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _minted(self, e: ApiKey.Minted) -> None:
        if self.view.key(e.originator_id) is not None:
            return
        expires_at = e.expires_at
        self.view.add(
            bytes.fromhex(e.token_sha256),
            KeyRecord(
                id_int=e.originator_id.int,
                owner_id=e.owner_id,
                scopes=self.view.shared_scopes(e.scopes),
                expires_ts=None if expires_at is None else expires_at.timestamp(),
                lifetime=None if expires_at is None else (expires_at - e.at).total_seconds(),
            ),
        )

    @apply.register
    def _scopes_set(self, e: ApiKey.ScopesSet) -> None:
        record = self._newer(e)
        if record is not None:
            record.scopes = self.view.shared_scopes(e.scopes)

    @apply.register
    def _revoked(self, e: ApiKey.Revoked) -> None:
        record = self._newer(e)
        if record is not None:
            record.flags |= REVOKED_FLAG

    @apply.register
    def _expired(self, e: ApiKey.Expired) -> None:
        record = self._newer(e)
        if record is not None:
            record.flags |= EXPIRED_FLAG

    @apply.register
    def _rotated(self, e: ApiKey.Rotated) -> None:
        record = self._newer(e)
        if record is not None:
            self.view.rotated(record, e.retires_at.timestamp())

    @apply.register
    def _suspended(self, e: ApiKey.Suspended) -> None:
        record = self._newer(e)
        if record is not None:
            record.flags |= SUSPENDED_FLAG

    @apply.register
    def _resumed(self, e: ApiKey.Resumed) -> None:
        record = self._newer(e)
        if record is not None:
            record.flags &= ~SUSPENDED_FLAG

    @apply.register
    def _policy_set(self, e: LifetimePolicy.Set) -> None:
        self.view.set_terms(terms_of(e), e.originator_version)

    @apply.register
    def _policy_changed(self, e: LifetimePolicy.Changed) -> None:
        self.view.set_terms(terms_of(e), e.originator_version)

    def _newer(self, e: Any) -> KeyRecord | None:
        """The key's record, now at the event's version, if the event is newer than it."""
        record = self.view.key(e.originator_id)
        if record is None or e.originator_version <= record.version:
            return None
        record.version = e.originator_version
        return record

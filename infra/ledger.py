"""The event-sourced key ledger: commands on ApiKey aggregates, saved to the event store."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from domain import token as token_format
from domain.api_key import ApiKey, Status
from domain.errors import KeyNotFound
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.idempotency import (
    SUPERSEDED,
    IdempotentRequest,
    check_key,
    fingerprint,
    record_id,
)
from infra.deadline import (
    CONNECTION_ERRORS,
    REQUEST_BUDGET,
    OutcomeUnknown,
    StoreUnavailable,
    bounded,
    extended,
    time_left,
    unavailable,
    within,
)
from projections.key_projection import KeyProjection
from projections.verification_index import KeyRecord, Verification, VerificationIndex

log = logging.getLogger("anthra.ledger")

Clock = Callable[[], float]
# Where a command came from: request id, client IP, user agent (never any part of a token).
Context = dict[str, str] | None
# Two processes changing one key at once: the loser reloads and decides again, after a
# random pause that grows with each loss, so that the same two do not collide in step.
_CONFLICT_ATTEMPTS = 12
_CONFLICT_PAUSE = 0.002
_CONFLICT_PAUSE_MAX = 0.1
# Learning whether a write whose COMMIT went unanswered was recorded: a short extra wait.
_OUTCOME_CHECK = 0.6
_PAGE = 500


class LedgerStore(Application[UUID]):
    """The eventsourcing application: where key events are appended and read back."""

    name = "ledger"
    is_snapshotting_enabled = False


class KeyBusy(Exception):
    """Other commands kept changing the key while this one tried to: nothing was changed."""

    def __init__(self, key_id: UUID, what: str = "") -> None:
        super().__init__(
            f"{what or f'key {key_id}'} is being changed by other requests at this moment; "
            "nothing was changed: retry"
        )
        self.key_id = key_id


class MintedKey:
    """A freshly minted key: the record, and the token, which exists only in this object."""

    __slots__ = ("record", "token")

    def __init__(self, token: str, record: KeyRecord) -> None:
        self.token = token
        self.record = record

    def __repr__(self) -> str:
        # The token must never reach a log or a traceback through a repr.
        return f"MintedKey(prefix={self.record.prefix!r}, key_id={self.record.key_id})"


def parse_key_id(key_id: str | UUID) -> UUID:
    """A key id from a URL or a command line; anything else is a key that does not exist."""
    if isinstance(key_id, UUID):
        return key_id
    try:
        return UUID(key_id)
    except (ValueError, TypeError, AttributeError):
        raise KeyNotFound(str(key_id)[:64]) from None


class KeyLedger:
    """Commands and queries over keys; a command's own events are in the index before it returns."""

    def __init__(
        self,
        store: LedgerStore,
        index: VerificationIndex | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.index = index if index is not None else VerificationIndex()
        self.projection = KeyProjection(view=self.index)
        self.clock = clock
        self._catch_up_lock = threading.Lock()
        # Usage counting (last used, requests per day): in memory, never I/O on this path.
        self.on_use: Callable[[KeyRecord, float], None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # Commands

    @bounded()
    def mint(
        self,
        *,
        owner_id: str,
        name: str,
        scopes: Sequence[str],
        expires_in_days: int | None,
        actor: str,
        context: Context = None,
        idempotency_key: str | None = None,
    ) -> MintedKey:
        """Mint a key; the token is returned once and only its sha256 is stored.

        Under an idempotency key, a retry of the same request supersedes the key the earlier
        attempt minted (its token may never have reached the client) with a new one.
        """
        request = (
            fingerprint("mint", name, sorted(set(scopes)), expires_in_days)
            if idempotency_key is not None
            else ""
        )
        pause = _CONFLICT_PAUSE
        for attempt in range(_CONFLICT_ATTEMPTS):
            at = self.now()
            token = token_format.generate()
            key = ApiKey.mint(
                key_id=uuid4(),
                owner_id=owner_id,
                name=name,
                token_sha256=token_format.digest(token).hex(),
                prefix=token_format.display_prefix(token),
                scopes=list(scopes),
                expires_in_days=expires_in_days,
                actor=actor,
                at=at,
                context=context,
            )
            events: list[DomainEventProtocol[UUID]] = list(key.collect_events())
            if idempotency_key is not None:
                events += self._supersede_on_retry(
                    owner_id, idempotency_key, request, key.id, at, actor, context
                )
            try:
                self._record(events)
            except _Conflict:
                log.info("idempotent mint raced another attempt, try %d; again", attempt + 1)
                if not self._pause(pause):
                    break
                pause = min(pause * 2, _CONFLICT_PAUSE_MAX)
                continue
            record = self.index.key(key.id)
            assert record is not None
            log.info("minted key %s (%s) for %s by %s", key.id, record.prefix, owner_id, actor)
            return MintedKey(token, record)
        raise KeyBusy(record_id(owner_id, idempotency_key or ""), f"{IDEMPOTENCY_HEADER} request")

    def _supersede_on_retry(
        self,
        owner_id: str,
        idempotency_key: str,
        request: str,
        key_id: UUID,
        at: datetime,
        actor: str,
        context: Context,
    ) -> list[DomainEventProtocol[UUID]]:
        """The idempotency record's events for a mint of `key_id`, and on a retry the earlier
        attempt's key revoked as superseded."""
        retried, events = self._begin(owner_id, idempotency_key, request, key_id, at)
        if retried is None:
            return events
        earlier = self._load(retried.key_id, owner_id)
        earlier.revoke(actor, SUPERSEDED, at, context)
        retried.retried(key_id=key_id, at=at)
        log.info("retried mint supersedes key %s", earlier.id)
        return [*earlier.collect_events(), *retried.collect_events()]

    def _begin(
        self, owner_id: str, idempotency_key: str, request: str, key_id: UUID, at: datetime
    ) -> tuple[IdempotentRequest | None, list[DomainEventProtocol[UUID]]]:
        """(None, the record's events) for a new request under the key; (the record, []) for a
        retry; IdempotencyKeyReused for another request within the window."""
        check_key(idempotency_key)
        found = self._request(owner_id, idempotency_key)
        if found is None:
            started = IdempotentRequest.start(
                owner_id=owner_id, key=idempotency_key, fingerprint=request, key_id=key_id, at=at
            )
            return None, list(started.collect_events())
        if not found.is_retry(request, at):
            found.restart(fingerprint=request, key_id=key_id, at=at)
            return None, list(found.collect_events())
        return found, []

    def _request(self, owner_id: str, idempotency_key: str) -> IdempotentRequest | None:
        try:
            found: Any = self.store.repository.get(record_id(owner_id, idempotency_key))
        except AggregateNotFoundError:
            return None
        if not isinstance(found, IdempotentRequest):  # pragma: no cover (ids are uuid5)
            return None
        return found

    @bounded()
    def set_scopes(
        self,
        key_id: str | UUID,
        scopes: Sequence[str],
        actor: str,
        owner_id: str | None = None,
        context: Context = None,
        idempotency_key: str | None = None,
    ) -> KeyRecord:
        """Replace an active key's scopes."""
        return self._change(
            key_id,
            owner_id,
            lambda key: key.set_scopes(list(scopes), actor, self.now(), context),
            idempotency=(idempotency_key, ("set_scopes", sorted(set(scopes)))),
        )

    @bounded()
    def revoke(
        self,
        key_id: str | UUID,
        actor: str,
        reason: str = "",
        owner_id: str | None = None,
        context: Context = None,
        idempotency_key: str | None = None,
    ) -> KeyRecord:
        """Revoke a key; revoking it again changes nothing and still succeeds."""
        record = self._change(
            key_id,
            owner_id,
            lambda key: key.revoke(actor, reason, self.now(), context),
            idempotency=(idempotency_key, ("revoke", reason)),
        )
        log.info("revoked key %s (%s) by %s", record.key_id, record.prefix, actor)
        return record

    @bounded()
    def expire(self, key_id: str | UUID) -> bool:
        """Record Expired for a key past its expiry; false if there was nothing to record."""
        changed: list[bool] = []

        def expire(key: ApiKey) -> bool:
            changed.append(key.expire(self.now()))
            return changed[-1]

        self._change(key_id, None, expire)
        return bool(changed and changed[-1])

    # Queries

    @bounded()
    def key(self, key_id: str | UUID, owner_id: str | None = None) -> KeyRecord:
        """One key as the index holds it; another owner's key does not exist."""
        uuid = parse_key_id(key_id)
        record = self.index.key(uuid)
        if record is None:
            # Another process may have minted it a moment ago: read the store before saying no.
            self.catch_up()
            record = self.index.key(uuid)
        if record is None or (owner_id is not None and record.owner_id != owner_id):
            raise KeyNotFound(str(uuid))
        return record

    def keys_of(self, owner_id: str) -> list[KeyRecord]:
        return self.index.keys_of(owner_id)

    @bounded()
    def history(
        self, key_id: str | UUID, owner_id: str | None = None
    ) -> list[DomainEventProtocol[UUID]]:
        """Every event of one key, oldest first, read from the store."""
        uuid = parse_key_id(key_id)
        events = list(self.store.events.get(uuid))
        if not events or not isinstance(events[0], ApiKey.Minted):
            raise KeyNotFound(str(uuid))
        if owner_id is not None and events[0].owner_id != owner_id:
            raise KeyNotFound(str(uuid))
        return events

    def verify(self, token: str, scopes: Sequence[str] = ()) -> Verification:
        """Verify against the index; a request made with a live key counts as a use of it."""
        now = self.clock()
        verification = self.index.verify(token, scopes, now)
        record = verification.record
        if record is not None and self.on_use is not None:
            self.on_use(record, now)
        return verification

    def status(self, record: KeyRecord) -> Status:
        return record.status(self.clock())

    def due_for_expiry(self) -> list[UUID]:
        """Keys whose expiry has passed but which have no Expired event yet."""
        now = self.clock()
        return [
            r.key_id
            for r in self.index.records()
            if r.expires_ts is not None
            and r.expires_ts <= now
            and r.revoked_at is None
            and r.expired_at is None
        ]

    # Following the store

    def catch_up(self) -> int:
        """Apply every stored event the index has not seen; returns how many."""
        applied = 0
        with self._catch_up_lock:
            while True:
                # Each page within its own deadline: a replay of the whole store at start
                # takes many, and each is quick unless the database is not answering.
                with within(REQUEST_BUDGET):
                    notifications = self.store.recorder.select_notifications(
                        start=self.index.position, limit=_PAGE, inclusive_of_start=False
                    )
                for notification in notifications:
                    self._apply(notification)
                applied += len(notifications)
                if len(notifications) < _PAGE:
                    return applied

    def apply_notification(self, notification: Notification) -> None:
        """Apply one notification delivered by a subscription, if the index has not already."""
        # The store commits in notification order (the library locks the table), so a
        # subscription never skips one; gaps in ids are rolled-back sequence values.
        with self._catch_up_lock:
            self._apply(notification)

    def _apply(self, notification: Notification) -> None:
        if notification.id <= self.index.position:
            return
        event = self.store.mapper.to_domain_event(notification)
        self.projection.process_event(event, Tracking(self.store.name, notification.id))

    # Saving

    def _change(
        self,
        key_id: str | UUID,
        owner_id: str | None,
        command: Callable[[ApiKey], bool],
        idempotency: tuple[str | None, tuple[str, object]] = (None, ("", None)),
    ) -> KeyRecord:
        uuid = parse_key_id(key_id)
        idempotency_key, arguments = idempotency
        pause = _CONFLICT_PAUSE
        for attempt in range(_CONFLICT_ATTEMPTS):
            key = self._load(uuid, owner_id)
            changed = command(key)
            events: list[DomainEventProtocol[UUID]] = list(key.collect_events())
            if idempotency_key is not None:
                request = fingerprint(arguments[0], str(uuid), arguments[1])
                # A retry of a command that is safe to repeat adds nothing to the record.
                events += self._begin(key.owner_id, idempotency_key, request, uuid, self.now())[1]
            if not events:
                return self.key(uuid)
            try:
                self._record(events)
                if not changed:
                    return self.key(uuid)
            except _Conflict:
                # Another process changed the key first: decide again on its latest state.
                log.info("conflict on key %s, attempt %d; retrying", uuid, attempt + 1)
                if not self._pause(pause):
                    break
                pause = min(pause * 2, _CONFLICT_PAUSE_MAX)
                continue
            return self.key(uuid)
        raise KeyBusy(uuid)

    @staticmethod
    def _pause(limit: float) -> bool:
        """A random pause before trying again, if the request's deadline leaves room for it."""
        wait = random.uniform(0, limit)
        if time_left() < wait + 0.1:
            return False
        time.sleep(wait)
        return True

    def _load(self, key_id: UUID, owner_id: str | None) -> ApiKey:
        try:
            key: Any = self.store.repository.get(key_id)
        except AggregateNotFoundError:
            raise KeyNotFound(str(key_id)) from None
        # The store holds other aggregates too (idempotency records): only keys are keys.
        if not isinstance(key, ApiKey) or (owner_id is not None and key.owner_id != owner_id):
            raise KeyNotFound(str(key_id))
        return key

    def _record(self, events: Sequence[DomainEventProtocol[UUID]]) -> None:
        try:
            self.store.save(*events)
        except IntegrityError:
            # Some stores try a save again on a dead connection: the first try may have
            # committed, and then the second finds its own events in the way.
            if not self._was_recorded(events):
                raise _Conflict from None
        except OutcomeUnknown:
            # The connection failed while committing: ask the store, briefly, how it ended.
            if not self._recorded_after_all(events):
                raise
        # Read-your-writes: apply this command's own events now, from memory, so the answer
        # holds even if reading the store back fails; catching up then fills in the rest.
        with self._catch_up_lock:
            for event in events:
                self.projection.apply(event)
        try:
            self.catch_up()
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            log.warning(
                "catch-up after a save failed (%s); the follower will catch up",
                unavailable(e).reason,
            )

    def _recorded_after_all(self, events: Sequence[DomainEventProtocol[UUID]]) -> bool:
        """Whether events whose COMMIT went unanswered show up in the store within a moment.

        Not finding them proves nothing (the COMMIT may still be on its way, or in progress
        on a slow server), so only finding them changes the answer.
        """
        with extended(_OUTCOME_CHECK):
            while time_left() > 0:
                try:
                    if self._was_recorded(events):
                        return True
                except (StoreUnavailable, *CONNECTION_ERRORS):
                    return False
                time.sleep(min(0.05, max(0.0, time_left())))
        return False

    def _was_recorded(self, events: Sequence[DomainEventProtocol[UUID]]) -> bool:
        # One transaction saves them all: if the last is stored as this one, all of them are.
        last: Any = events[-1]
        stored: list[Any] = list(
            self.store.events.get(
                last.originator_id, gt=last.originator_version - 1, lte=last.originator_version
            )
        )
        return bool(stored) and stored[0].timestamp == last.timestamp


class _Conflict(Exception):
    """Another writer saved a new version of an aggregate first."""

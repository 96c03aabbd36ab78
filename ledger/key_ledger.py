"""The key ledger: the application's verbs — mint, set scopes, revoke, expire, verify — and the
queries over keys, in the eventsourcing examples' style: load, call, save, answer.

Every command's events are in this process's verification index before it answers
(read-your-writes); other processes learn of them from the store (infra.follower).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, project_aggregate
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.utils import EnvType

from domain import token as token_format
from domain.api_key import BLOCKED, TERMINAL, ApiKey, Status
from domain.errors import KeyNotFound
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.idempotency import (
    SUPERSEDED,
    IdempotentRequest,
    check_key,
    fingerprint,
    record_id,
)
from ledger.deadline import (
    CONNECTION_ERRORS,
    REQUEST_BUDGET,
    StoreUnavailable,
    bounded,
    unavailable,
    within,
)
from ledger.key_states import KeyStates
from ledger.lifecycle import Lifecycle
from ledger.recording import Events, KeyBusy
from projections.key_states.memory import MemoryKeyStatesView
from projections.key_states.view import KeyState, KeyStatesView, state_of
from projections.verification_index.index import (
    EXPIRED_FLAG,
    REVOKED_FLAG,
    KeyRecord,
    Verification,
    VerificationIndex,
)
from projections.verification_index.projection import KeyProjection

log = logging.getLogger("anthra.ledger")

Clock = Callable[[], float]
# Where a command came from: request id, client IP, user agent (never any part of a token).
Context = dict[str, str] | None
# A use of a key, counted on the verify path: (its record, when).
OnUse = Callable[[KeyRecord, float], None]
_PAGE = 500
# How long a notification waits for this process's save under way to be applied (it is likely
# that save's own): far longer than applying takes, far shorter than revocation's budget.
_OWN_SAVE_WAIT = 0.02


class MintedKey:
    """A freshly minted key: its state, and the token, which exists only in this object."""

    __slots__ = ("record", "token")

    def __init__(self, token: str, record: KeyState) -> None:
        self.token = token
        self.record = record

    def __repr__(self) -> str:
        # The token must never reach a log or a traceback through a repr.
        return f"MintedKey(prefix={self.record.prefix!r}, key_id={self.record.key_id})"


def expiring_within(ledger: KeyLedger, states: Iterable[KeyState], days: int) -> list[KeyState]:
    """Of these keys, the live ones whose expiry comes within `days` days, soonest first."""
    now = ledger.now()
    horizon = now + timedelta(days=days)
    found = [
        s
        for s in states
        if s.expires_at is not None
        and now < s.expires_at <= horizon
        and ledger.status(s) not in TERMINAL
    ]
    found.sort(key=lambda s: s.expires_at or now)
    return found


def parse_key_id(key_id: str | UUID) -> UUID:
    """A key id from a URL or a command line; anything else is a key that does not exist."""
    if isinstance(key_id, UUID):
        return key_id
    try:
        return UUID(key_id)
    except (ValueError, TypeError, AttributeError):
        raise KeyNotFound(str(key_id)[:64]) from None


class KeyLedger(Lifecycle):
    """Keys' lives as events, and the verification index this process keeps of them."""

    name = "ledger"
    is_snapshotting_enabled = False

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Clock = time.time,
        on_use: OnUse | None = None,
        index: VerificationIndex | None = None,
        beside: KeyLedger | None = None,
    ) -> None:
        """`env` names the event store (infra.backends); `on_use` counts each verified use
        (no I/O); `index` is the verification index to keep (a new, empty one by default);
        `beside` opens another process's ledger on the same store connection (for an
        in-memory store, the only way to share it)."""
        self._beside = beside
        super().__init__(env)
        self.clock = clock
        self.on_use = on_use
        # Told of each event this index learns from the store (another process's change).
        self.on_applied: Callable[[Any], None] | None = None
        self.index = index if index is not None else VerificationIndex()
        self.projection = KeyProjection(view=self.index)
        self._catch_up_lock = threading.Lock()
        # What the key list and a key's page read: kept in memory unless the composition root
        # gives the backend's table (read_states_from).
        self.states = KeyStates(self, MemoryKeyStatesView(self.name))

    def read_states_from(self, view: KeyStatesView) -> KeyStates:
        """Read keys from this key-states view (the backend's table); returns its handle."""
        self.states = KeyStates(self, view)
        return self.states

    def construct_recorder(self) -> Any:
        return self._beside.recorder if self._beside is not None else super().construct_recorder()

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
        request = fingerprint("mint", name, sorted(set(scopes)), expires_in_days)

        def decide() -> tuple[Events, Callable[[], MintedKey]]:
            at = self.now()
            refusal = self.lifetime_terms().refusal(expires_in_days)
            if refusal is not None:
                raise refusal
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
            events: Events = list(key.collect_events())
            if idempotency_key is not None:
                events += self._supersede_on_retry(
                    owner_id, idempotency_key, request, key.id, at, actor, context
                )
            return events, lambda: self._minted(token, key, actor)

        return self.until_saved(
            decide,
            lambda: KeyBusy(
                record_id(owner_id, idempotency_key or ""), f"{IDEMPOTENCY_HEADER} request"
            ),
        )

    def _minted(self, token: str, key: ApiKey, actor: str) -> MintedKey:
        log.info("minted key %s (%s) for %s by %s", key.id, key.prefix, key.owner_id, actor)
        return MintedKey(token, state_of(key))

    @bounded()
    def set_scopes(
        self,
        key_id: str | UUID,
        scopes: Sequence[str],
        actor: str,
        owner_id: str | None = None,
        context: Context = None,
        idempotency_key: str | None = None,
    ) -> KeyState:
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
    ) -> KeyState:
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
    def key(self, key_id: str | UUID, owner_id: str | None = None) -> KeyState:
        """One key as the key states hold it; another owner's key does not exist."""
        uuid = parse_key_id(key_id)
        state = self._current_states().states([uuid]).get(uuid)
        if state is None:
            # Another process may have minted it a moment ago: read the store before saying no.
            self.catch_up()
            state = self._current_states().states([uuid]).get(uuid)
        if state is None or (owner_id is not None and state.owner_id != owner_id):
            raise KeyNotFound(str(uuid))
        return state

    @bounded()
    def keys_of(self, owner_id: str) -> list[KeyState]:
        """An owner's keys, oldest first."""
        return self._current_states().keys_of(owner_id)

    @bounded()
    def keys_minted_before(self, cutoff: datetime) -> list[KeyState]:
        """Every owner's keys minted before `cutoff` and neither revoked nor recorded expired,
        oldest first."""
        return self._current_states().minted_before(cutoff)

    def _current_states(self) -> KeyStatesView:
        """The key states, holding at least what this process's index holds (its own writes
        included)."""
        if self.states.projector.position() < self.index.position:
            self.states.catch_up()
        return self.states.view

    @bounded()
    def history(
        self, key_id: str | UUID, owner_id: str | None = None
    ) -> list[DomainEventProtocol[UUID]]:
        """Every event of one key, oldest first, read from the store."""
        uuid = parse_key_id(key_id)
        events = list(self.events.get(uuid))
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

    def status(self, state: KeyState) -> Status:
        """A key's status now, under the lifetime policy in force."""
        return state.status(self.now(), self.index.terms)

    def count_blocked(self) -> int:
        """How many keys the lifetime policy in force blocks now."""
        index, now = self.index, self.clock()
        return sum(1 for r in index.records() if r.blocked and index.status(r, now) == BLOCKED)

    def due_for_expiry(self) -> list[UUID]:
        """Keys whose expiry has passed but which have no Expired event yet (a key rotated out
        before its expiry never expires: it had ended already)."""
        now = self.clock()
        ended = REVOKED_FLAG | EXPIRED_FLAG
        index = self.index
        due = []
        for r in index.records():
            if r.expires_ts is None or r.expires_ts > now or r.flags & ended:
                continue
            retires = index.retires_ts(r)
            if retires is not None and retires < r.expires_ts:
                continue
            due.append(r.key_id)
        return due

    # Following the store

    def catch_up(self, notified: float = math.inf) -> int:
        """Apply every stored event the index has not seen; returns how many. With `notified`,
        the position a notification announced: nothing is read if the index is there already
        (the saving thread of this process applies its own events without reading the store,
        and may do so just after the notification arrives)."""
        applied = 0
        if notified != math.inf and self.index.position < notified:
            self.own_saves_applied(_OWN_SAVE_WAIT)
        with self._catch_up_lock:
            if self.index.position >= notified:
                return 0
            while True:
                # Each page within its own deadline: a replay of the whole store at start
                # takes many, and each is quick unless the database is not answering.
                with within(REQUEST_BUDGET):
                    notifications = self.recorder.select_notifications(
                        start=self.index.position, limit=_PAGE, inclusive_of_start=False
                    )
                for notification in notifications:
                    self._apply(notification)
                applied += len(notifications)
                if len(notifications) < _PAGE:
                    return applied

    def _apply(self, notification: Notification) -> None:
        if notification.id <= self.index.position:
            return
        event = self.mapper.to_domain_event(notification)
        self.projection.process_event(event, Tracking(self.name, notification.id))
        self.remembered.learnt(event)
        if self.on_applied is not None:
            self.on_applied(event)

    # Saving

    def recorded(self, events: Events, positions: Sequence[int] | None) -> None:
        # Read-your-writes: apply the saved events now, from memory. When the index holds
        # every position before them, they take their positions and the index is current
        # without reading the store; otherwise (another process wrote in between, or the
        # positions are not known) the answer still holds, and catching up fills in the rest.
        with self._catch_up_lock:
            index = self.index
            if positions and index.position >= positions[-1]:
                return
            if positions and index.position == positions[0] - 1:
                for event, position in zip(events, positions, strict=True):
                    self.projection.process_event(event, Tracking(self.name, position))
                return
            for event in events:
                self.projection.apply(event)
        try:
            self.catch_up()
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            log.warning(
                "catch-up after a save failed (%s); the follower will catch up",
                unavailable(e).reason,
            )

    def _change(
        self,
        key_id: str | UUID,
        owner_id: str | None,
        command: Callable[[ApiKey], bool],
        idempotency: tuple[str | None, tuple[str, object]] = (None, ("", None)),
    ) -> KeyState:
        uuid = parse_key_id(key_id)
        idempotency_key, (operation, argument) = idempotency

        def decide() -> tuple[Events, Callable[[], KeyState]]:
            key = self._load(uuid, owner_id)
            command(key)
            events: Events = list(key.collect_events())
            if idempotency_key is not None:
                request = fingerprint(operation, str(uuid), argument)
                # A retry of a command that is safe to repeat adds nothing to the record.
                events += self._begin(key.owner_id, idempotency_key, request, uuid, self.now())[1]
            return events, lambda: state_of(key)

        return self.until_saved(decide, lambda: KeyBusy(uuid))

    def _load(self, key_id: UUID, owner_id: str | None) -> ApiKey:
        key: Any = self.remembered_key(key_id)
        if key is None:
            events = list(self.events.get(key_id))
            key = project_aggregate(None, events)
            self.remembered.loaded(events)
        # The store holds other aggregates too (idempotency records): only keys are keys.
        if not isinstance(key, ApiKey) or (owner_id is not None and key.owner_id != owner_id):
            raise KeyNotFound(str(key_id))
        return key

    # Idempotency keys

    def _supersede_on_retry(
        self,
        owner_id: str,
        idempotency_key: str,
        request: str,
        key_id: UUID,
        at: datetime,
        actor: str,
        context: Context,
    ) -> Events:
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
    ) -> tuple[IdempotentRequest | None, Events]:
        """(None, the record's events) for a new request under the key; (the record, []) for a
        retry; IdempotencyKeyReused for another request within the window."""
        check_key(idempotency_key)
        try:
            found: Any = self.repository.get(record_id(owner_id, idempotency_key))
        except AggregateNotFoundError:
            started = IdempotentRequest.start(
                owner_id=owner_id, key=idempotency_key, fingerprint=request, key_id=key_id, at=at
            )
            return None, list(started.collect_events())
        if not found.is_retry(request, at):
            found.restart(fingerprint=request, key_id=key_id, at=at)
            return None, list(found.collect_events())
        return found, []

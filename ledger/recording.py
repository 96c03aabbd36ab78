"""Saving a command's events: one transaction (shared with the commands that waited meanwhile,
ledger.group_commit), conflicts decided again, the outcome of a cut COMMIT found out, and the
command's own events in the index before it answers."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from ledger.deadline import (
    CONNECTION_ERRORS,
    OutcomeUnknown,
    StoreUnavailable,
    extended,
    time_left,
    unavailable,
)
from ledger.group_commit import GroupCommit, Waiting
from ledger.remembered_keys import RememberedKeys

log = logging.getLogger("anthra.ledger")

T = TypeVar("T")
Events = list[DomainEventProtocol[UUID]]
# Two processes changing one aggregate at once: the loser reloads and decides again, after a
# random pause that grows with each loss, so that the same two do not collide in step.
_CONFLICT_ATTEMPTS = 12
_CONFLICT_PAUSE = 0.002
_CONFLICT_PAUSE_MAX = 0.1
# Learning whether a write whose COMMIT went unanswered was recorded: a short extra wait.
_OUTCOME_CHECK = 0.6


class KeyBusy(Exception):
    """Other commands kept changing the key while this one tried to: nothing was changed."""

    def __init__(self, key_id: UUID, what: str = "") -> None:
        super().__init__(
            f"{what or f'key {key_id}'} is being changed by other requests at this moment; "
            "nothing was changed: retry"
        )
        self.key_id = key_id


class Conflict(Exception):
    """Another writer saved a new version of an aggregate first."""


class Recording(Application[UUID]):
    """The saving half of the key ledger's application."""

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        self._group_commit: GroupCommit[Events] = GroupCommit(self._save_batch)
        # Saves follow one another (one group commit at a time): how many began and ended, so
        # that a notification of this process's own commit can wait for it to be applied.
        self._saves_begun = 0
        self._saves_ended = 0
        self._save_ended = threading.Condition()
        self.remembered = RememberedKeys()
        # Per thread: whether the decision under way may use remembered keys, and whether it did.
        self._deciding = threading.local()

    def until_saved(
        self, decide: Callable[[], tuple[Events, Callable[[], T]]], busy: Callable[[], Exception]
    ) -> T:
        """Decide a command on the latest state and save its events; when another writer got
        there first, decide again. `decide` answers the events and how to answer once saved.

        A decision may rest on keys this process remembers (ledger.remembered_keys): saving
        its events confirms it (a version taken meanwhile conflicts), but one that saves
        nothing, or refuses, is taken again on the keys as the store has them."""
        pause = _CONFLICT_PAUSE
        from_memory = True
        for attempt in range(_CONFLICT_ATTEMPTS):
            decided = self._decided(decide, from_memory)
            if decided is None:
                from_memory = False
                continue
            events, answer = decided
            if not events:
                return answer()
            try:
                self.record(events)
            except Conflict:
                self.remembered.forget({e.originator_id for e in events})
                log.info("conflicting write, attempt %d; deciding again", attempt + 1)
                wait = random.uniform(0, pause)
                if time_left() < wait + 0.1:
                    break
                time.sleep(wait)
                pause = min(pause * 2, _CONFLICT_PAUSE_MAX)
                continue
            return answer()
        raise busy()

    def remembered_key(self, key_id: UUID) -> Any:
        """The key as this process remembers it, if the decision under way may use it (and
        then it is marked as resting on memory); else None: load it from the store."""
        deciding = self._deciding
        if not getattr(deciding, "from_memory", False):
            return None
        key = self.remembered.key(key_id)
        if key is not None:
            deciding.used_memory = True
        return key

    def _decided(
        self, decide: Callable[[], tuple[Events, Callable[[], T]]], from_memory: bool
    ) -> tuple[Events, Callable[[], T]] | None:
        """`decide`'s outcome, or None when it saves nothing and rested on memory."""
        deciding = self._deciding
        deciding.from_memory = from_memory
        deciding.used_memory = False
        try:
            events, answer = decide()
        except (StoreUnavailable, OutcomeUnknown):
            raise
        except Exception:
            if deciding.used_memory:
                return None
            raise
        finally:
            deciding.from_memory = False
        if not events and deciding.used_memory:
            return None
        return events, answer

    def record(self, events: Events) -> None:
        """Save the events in one transaction, then apply them to this process's read models."""
        try:
            self._group_commit.save(events)
        except IntegrityError:
            # Some stores try a save again on a dead connection: the first try may have
            # committed, and then the second finds its own events in the way.
            if not self._was_recorded(events):
                raise Conflict from None
            self._saved(events, None)
        except OutcomeUnknown:
            # The connection failed while committing: ask the store, briefly, how it ended.
            if not self._recorded_after_all(events):
                raise
            self._saved(events, None)

    def recorded(self, events: Events, positions: Sequence[int] | None) -> None:
        """What to do once events are saved, at `positions` in the store (None: not known); the
        key ledger applies them to its index. Called by the thread that saved them, in the
        store's order, before any of their commands answers."""

    def own_saves_applied(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for the save under way, if any, to be applied: a
        notification that arrives meanwhile is most likely of its own commit."""
        with self._save_ended:
            begun = self._saves_begun
            self._save_ended.wait_for(lambda: self._saves_ended >= begun, timeout)

    def _save_batch(self, batch: list[Waiting[Events]]) -> None:
        with self._save_ended:
            self._saves_begun += 1
        try:
            self._save_together(batch)
        finally:
            with self._save_ended:
                self._saves_ended += 1
                self._save_ended.notify_all()

    def _save_together(self, batch: list[Waiting[Events]]) -> None:
        """Save every waiting command's events in one transaction; when one of them conflicts
        (a version or an idempotency record taken), each in a transaction of its own."""
        if len(batch) > 1:
            try:
                recordings = self.save(*(e for waiting in batch for e in waiting.item))
            except IntegrityError:
                for waiting in batch:
                    self._save_together([waiting])
                return
            except Exception as e:
                for waiting in batch:
                    waiting.error = e
                return
        else:
            try:
                recordings = self.save(*batch[0].item)
            except Exception as e:
                batch[0].error = e
                return
        positions = [r.notification.id for r in recordings] if recordings else None
        start = 0
        for waiting in batch:
            end = start + len(waiting.item)
            waiting.positions = positions[start:end] if positions else None
            start = end
        self._saved([e for waiting in batch for e in waiting.item], positions)

    def _saved(self, events: Events, positions: Sequence[int] | None) -> None:
        self.remembered.saved(events)
        self.recorded(events, positions)

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
                except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                    log.info("could not learn how a write ended (%s)", unavailable(e).reason)
                    return False
                time.sleep(min(0.05, max(0.0, time_left())))
        return False

    def _was_recorded(self, events: Sequence[DomainEventProtocol[UUID]]) -> bool:
        # One transaction saves them all: if the last is stored as this one, all of them are.
        last: Any = events[-1]
        stored: list[Any] = list(
            self.events.get(
                last.originator_id, gt=last.originator_version - 1, lte=last.originator_version
            )
        )
        return bool(stored) and stored[0].timestamp == last.timestamp

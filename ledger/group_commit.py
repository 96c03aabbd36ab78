"""Commands saved together: while one thread saves, the commands that arrive meanwhile wait, and
the next of them saves them all in one transaction.

The event store takes a table lock per transaction (so that positions are committed in order),
which makes every write in every process wait for the one before it, COMMIT and all. One
transaction for the many commands that waited behind the last one costs the store about what one
command costs, so under load the writes per second grow with the queue instead of stopping at
one transaction's pace. No thread of its own: the first waiting caller does the saving, within
the earliest deadline of those it saves for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Generic, TypeVar

from ledger.deadline import OutcomeUnknown, StoreUnavailable, deadline, within

Item = TypeVar("Item")
# A saver whose deadline passed long ago still answers (the watchdog cuts its connection at
# the deadline): past this, a caller still waiting for it reports the outcome unknown.
_STRAGGLER = 5.0


class Waiting(Generic[Item]):
    """One caller's command in the queue: what to save, until when, and how it ended."""

    __slots__ = ("deadline", "done", "error", "item", "positions", "turn")

    def __init__(self, item: Item, until: float) -> None:
        self.item = item
        self.deadline = until
        self.done = False
        self.positions: Sequence[int] | None = None
        self.error: BaseException | None = None
        # Set when the command is saved (done) or when it is this caller's turn to save.
        self.turn = threading.Event()


class GroupCommit(Generic[Item]):
    """Saves what callers hand it, together with what others handed it meanwhile."""

    def __init__(self, save: Callable[[list[Waiting[Item]]], None]) -> None:
        """`save` records each command's positions or error on it; it raises nothing."""
        self._save = save
        self._lock = threading.Lock()
        self._queue: list[Waiting[Item]] = []
        self._saving = False

    def save(self, item: Item) -> Sequence[int] | None:
        """Save `item` (with whatever else waits); its positions in the store, or its error."""
        me = Waiting(item, deadline())
        with self._lock:
            self._queue.append(me)
            lead = not self._saving
            self._saving = True
        if not lead:
            self._wait_for_turn(me)
        if not me.done:
            self._lead()
        if me.error is not None:
            raise me.error
        return me.positions

    def _wait_for_turn(self, me: Waiting[Item]) -> None:
        left = me.deadline - monotonic()
        if me.turn.wait(None if left == float("inf") else max(0.0, left)):
            return
        with self._lock:
            if me in self._queue:
                # Not taken by a saver yet: leave the queue having changed nothing.
                self._queue.remove(me)
                if me.turn.is_set():
                    self._pass_turn()
                raise StoreUnavailable("the database did not answer in time")
        # Taken by a saver, whose connection is cut at this deadline at the latest.
        if not me.turn.wait(_STRAGGLER):
            raise OutcomeUnknown("the write this command joined did not end in time")

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        now = monotonic()
        late = [w for w in batch if w.deadline <= now]
        batch = [w for w in batch if w.deadline > now]
        for waiting in late:
            waiting.error = StoreUnavailable("the database did not answer in time")
        try:
            if batch:
                with within(min(w.deadline for w in batch) - now):
                    self._save(batch)
        except BaseException as e:
            for waiting in batch:
                if waiting.positions is None and waiting.error is None:
                    waiting.error = e
            raise
        finally:
            with self._lock:
                self._pass_turn()
            for waiting in (*late, *batch):
                waiting.done = True
                waiting.turn.set()

    def _pass_turn(self) -> None:
        """The first caller still waiting saves next; with none, the next to come does."""
        if self._queue:
            self._queue[0].turn.set()
        else:
            self._saving = False

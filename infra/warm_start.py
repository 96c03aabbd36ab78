"""A process's verification index, ready quickly: loaded from the key states, then the events
after them replayed, instead of every event ever stored."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from eventsourcing.persistence import PersistenceError

from ledger.key_ledger import KeyLedger
from ledger.key_states import KeyStates

log = logging.getLogger("anthra.warm_start")

# Projecting an event into the table costs about twice what applying it to the index does
# (it is decoded, then written, after reading the states it changes): by default a start does
# not wait for the table, it replays the events after it into the index and leaves the table
# to the follower, which catches it up right after the start. At a million keys with ten
# thousand events after the table, projecting them first took 1.8-3 s, replaying them 0.1-0.3.
CATCH_UP_LIMIT = 0


@dataclass(frozen=True, slots=True)
class WarmStart:
    """How a process's index got ready: from the key states, then the events after them."""

    states_catch_up_s: float
    load_s: float
    replay_s: float
    keys: int
    position: int
    states_position: int
    projected: int
    replayed: int

    @property
    def total_s(self) -> float:
        return self.states_catch_up_s + self.load_s + self.replay_s


def warm_start(
    ledger: KeyLedger, states: KeyStates | None, *, catch_up_limit: int = CATCH_UP_LIMIT
) -> WarmStart:
    """Bring the key states up to date, load them into the empty index, then replay what
    follows; without key states (in memory), replay everything."""
    # Call it before the process serves commands, in place of a first `ledger.catch_up()`.
    # The key states only save time: if they cannot be read, the index is built by replay.
    index = ledger.index
    if len(index):
        # Records are here already: loading could put older states back over them.
        states = None
    projected, states_position = 0, 0
    started = time.perf_counter()
    if states is not None:
        try:
            projected = _catch_up_if_near(states, catch_up_limit)
        except PersistenceError:
            # What the table holds is still consistent at its own position: load it.
            log.warning("key states catch-up failed; loading them as they are", exc_info=True)
    caught_up = time.perf_counter()
    if states is not None:
        try:
            states_position = states.view.load(index)
        except PersistenceError:
            # Records loaded so far are states as of the table: replaying every event over
            # them still ends at the store's state, as each event applies to a key only once.
            log.warning("key states load failed; replaying every event", exc_info=True)
    loaded = time.perf_counter()
    replayed = ledger.catch_up()
    done = time.perf_counter()
    return WarmStart(
        states_catch_up_s=caught_up - started,
        load_s=loaded - caught_up,
        replay_s=done - loaded,
        keys=len(index),
        position=index.position,
        states_position=states_position,
        projected=projected,
        replayed=replayed,
    )


def _catch_up_if_near(states: KeyStates, limit: int) -> int:
    """Catch the key states up if at most `limit` events behind; returns how many it wrote."""
    behind = states.behind()
    if behind > limit:
        log.info(
            "key states are %d events behind: replaying them into the index instead; "
            "the follower brings the table up to date",
            behind,
        )
        return 0
    return states.catch_up()

"""Keeps a process's verification index current with the store, and says when it cannot."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from infra.backends.base import Backend
from infra.backends.postgres.listener import ChannelListener
from infra.outage import Outage
from infra.warm_start import warm_start
from ledger.deadline import CONNECTION_ERRORS, StoreUnavailable, unavailable, within
from ledger.key_ledger import KeyLedger
from ledger.key_states import KeyStates
from ledger.read_model import ReadModel

log = logging.getLogger("anthra.follower")

# After the channel is lost, the first reconnection is tried after this long, then at most
# every RECONNECT_MAX: a database back from an outage of any length is followed again at once.
RECONNECT_FIRST: Final = 0.05
RECONNECT_MAX: Final = 0.5
# A heartbeat unanswered this long means the channel is gone: cut it and connect again.
ROUND_TRIP_WITHIN: Final = 1.0
_STALE: Final = "verification answers 503 until it is back"
# Each catch-up of the read models (audit trail, key states) ends within this; one far behind
# commits page by page, and goes on from there the next time.
READ_MODELS_WITHIN: Final = 5.0


def reconnect_pauses() -> Iterator[float]:
    """The pauses between attempts to get the channel back: doubling, never over RECONNECT_MAX."""
    pause = RECONNECT_FIRST
    while True:
        yield pause
        pause = min(pause * 2, RECONNECT_MAX)


class IndexFollower:
    """Catches up at start, then follows the store as its backend allows: polls it, or LISTENs.

    The verification index comes first; the read models given (audit trail, key states) are
    caught up after it on every poll or heartbeat.
    """

    def __init__(
        self,
        ledger: KeyLedger,
        backend: Backend,
        *,
        key_states: KeyStates | None = None,
        read_models: Sequence[ReadModel[Any]] = (),
        poll_interval: float = 0.1,
        heartbeat_interval: float = 0.25,
        max_staleness: float = 0.75,
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        self.key_states = key_states
        self.read_models = [*read_models, *([key_states] if key_states is not None else [])]
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()
        self._channel = Outage(log, "index notification channel")
        self._polling = Outage(log, "index catch-up")
        self._read_models = Outage(log, "read model catch-up")
        # Only this process writes to a store of its own, and applies its own writes at once.
        ledger.index.max_staleness = max_staleness if backend.shared else float("inf")

    def start(self) -> None:
        """Catch up from the store, then follow it in background threads."""
        started = time.monotonic()
        warm = warm_start(self.ledger, self.key_states)
        self.ledger.index.confirm(started)
        # A million long-lived records need no cyclic GC: a full collection over them would
        # pause verification for over half a second.
        gc.freeze()
        self.ready.set()
        log.info(
            "index ready: %d keys, position %d, %.2f s (%s)",
            len(self.ledger.index),
            self.ledger.index.position,
            time.monotonic() - started,
            (
                f"key states loaded in {warm.load_s:.2f} s at {warm.states_position}, "
                f"then {warm.replayed} events in {warm.replay_s:.2f} s"
            )
            if self.key_states is not None
            else "every event replayed",
        )
        if not self.backend.shared:
            return
        listener = self.backend.listener(self.ledger)
        if listener is None:
            self._spawn(self._poll, "index-poll")
        else:
            self._spawn(lambda: self._listen(listener), "index-listener")
            self._spawn(self._follow_read_models, "read-models")

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the threads, waiting at most `timeout` seconds in all (they are daemons)."""
        self._stopping.set()
        give_up = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, give_up - time.monotonic()))
        self._threads.clear()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # Polling (SQLite): both the catch-up and the proof of freshness.

    def _poll(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            started = time.monotonic()
            try:
                self.ledger.catch_up()
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                self._polling.failed(unavailable(e).reason, _STALE)
                continue
            self.ledger.index.confirm(started)
            self._polling.succeeded()
            self._catch_up_read_models()

    # A LISTEN channel (PostgreSQL): notifications for catch-up, a round trip on the channel
    # for freshness.

    def _listen(self, listener: ChannelListener) -> None:
        pauses = reconnect_pauses()
        while not self._stopping.is_set():
            try:
                listener.open()
                if self._channel.ongoing:
                    from infra import metrics

                    metrics.FOLLOWER_RECONNECTS.inc()
                # LISTEN first, then read: a commit either is in what this reads or is
                # notified afterwards.
                started = time.monotonic()
                self.ledger.catch_up()
                self.ledger.index.confirm(started)
                self._channel.succeeded(f"caught up to position {self.ledger.index.position}")
                pauses = reconnect_pauses()
                self._follow(listener)
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                if not self._stopping.is_set():
                    self._channel.failed(unavailable(e).reason, _STALE)
            except Exception:
                # Not the database going away: worth a traceback, and a pause as after a loss.
                log.exception("index following failed; starting again")
            finally:
                listener.close()
            self._stopping.wait(next(pauses))

    def _follow(self, listener: ChannelListener) -> None:
        """Catch up on every notification; confirm freshness by a round trip every heartbeat."""
        index = self.ledger.index
        beat = time.monotonic() + self.heartbeat_interval
        while not self._stopping.is_set():
            wait = beat - time.monotonic()
            if wait > 0 and (reached := listener.notified(wait)) > index.position:
                self.ledger.catch_up(reached)
            if time.monotonic() < beat:
                continue
            started = time.monotonic()
            if (reached := listener.round_trip(ROUND_TRIP_WITHIN)) > index.position:
                self.ledger.catch_up(reached)
            # Every commit made before `started` has been notified, and applied above.
            index.confirm(started)
            beat = started + self.heartbeat_interval

    def _follow_read_models(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            self._catch_up_read_models()

    def _catch_up_read_models(self) -> None:
        for read_model in self.read_models:
            try:
                with within(READ_MODELS_WITHIN):
                    read_model.catch_up()
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                self._read_models.failed(unavailable(e).reason)
                return
            except Exception:
                log.warning("read model catch-up failed; will retry", exc_info=True)
                return
        self._read_models.succeeded()

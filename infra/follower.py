"""Keeps a process's verification index current with the store, and says when it cannot."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

from infra.index_snapshots import IndexSnapshot, warm_start
from infra.ledger import KeyLedger

log = logging.getLogger("anthra.follower")


class IndexFollower:
    """Catches up at start, then follows the store: polls SQLite, subscribes to PostgreSQL."""

    def __init__(
        self,
        ledger: KeyLedger,
        backend: str,
        *,
        poll_interval: float = 0.1,
        heartbeat_interval: float = 0.25,
        max_staleness: float = 0.75,
        snapshot: IndexSnapshot | None = None,
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        self.snapshot = snapshot
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscription: object | None = None
        self.ready = threading.Event()
        self._also: list[Callable[[], object]] = []
        # Only this process writes to an in-memory store, and it applies its own writes at once.
        ledger.index.max_staleness = float("inf") if backend == "memory" else max_staleness

    def also(self, follow: Callable[[], object]) -> None:
        """Another read model to catch up on every poll (after the index, which comes first)."""
        self._also.append(follow)

    def start(self) -> None:
        """Catch up from the store, then follow it in background threads."""
        started = time.monotonic()
        warm = warm_start(self.ledger, self.snapshot) if self.snapshot else None
        if warm is None:
            self.ledger.catch_up()
        self.ledger.index.confirm(started)
        # A million long-lived records need no cyclic GC: a full collection over them would
        # pause verification for over half a second.
        gc.freeze()
        self.ready.set()
        log.info(
            "index ready: %d keys, position %d, %.2f s (snapshot %s)",
            len(self.ledger.index),
            self.ledger.index.position,
            time.monotonic() - started,
            (
                f"load {warm.load_s:.2f} s at {warm.snapshot_position}, "
                f"then {warm.replayed} events in {warm.replay_s:.2f} s"
            )
            if warm
            else "none: replayed the store",
        )
        if self.backend == "memory":
            return
        self._spawn(self._poll, "index-poll")
        if self.backend == "postgres":
            self._spawn(self._subscribe, "index-subscription")

    def stop(self) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.stop()  # type: ignore[attr-defined]
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _poll(self) -> None:
        """Read the store on a timer; on PostgreSQL, the heartbeat behind the subscription."""
        interval = self.poll_interval if self.backend == "sqlite" else self.heartbeat_interval
        while not self._stopping.wait(interval):
            started = time.monotonic()
            try:
                self.ledger.catch_up()
            except Exception:
                # The index goes unconfirmed and verification answers 503 once it is stale.
                log.warning("index catch-up failed; will retry", exc_info=True)
                continue
            self.ledger.index.confirm(started)
            for follow in self._also:
                try:
                    follow()
                except Exception:
                    log.warning("read model catch-up failed; will retry", exc_info=True)

    def _subscribe(self) -> None:
        """Follow LISTEN/NOTIFY; when the connection dies, subscribe again from the position."""
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                with self.ledger.store.recorder.subscribe(gt=self.ledger.index.position) as sub:
                    self._subscription = sub
                    if self._stopping.is_set():
                        return
                    backoff = 0.05
                    for notification in sub:
                        self.ledger.apply_notification(notification)
            except Exception:
                if self._stopping.is_set():
                    return
                log.warning("index subscription lost; subscribing again", exc_info=True)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._subscription = None

"""The background thread that shares failed-attempt counts between processes.

Every `interval` seconds it adds this process's new counts to the shared store and reads back
the subjects over their limit in the current window. The store being unreachable limits only
the limiter: counts wait in memory for the next try and each process goes on deciding from its
own counts, while authentication itself goes on as before.
"""

from __future__ import annotations

import logging
import threading

from infra.auth_failure_stores import AuthFailureStore
from infra.auth_failures import AuthFailures
from ledger.deadline import REQUEST_BUDGET, within

log = logging.getLogger("anthra.auth_failures")


class AuthFailureSync:
    """Adds this process's failed attempts to the shared store and learns who is over a limit."""

    def __init__(self, failures: AuthFailures, store: AuthFailureStore, interval: float) -> None:
        self.failures = failures
        self.store = store
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._forgotten_before = -1
        self._failing = False

    def sync(self) -> None:
        """One round: store the new counts, then read who is over a limit. Raises on failure,
        with the counts kept for the next round."""
        unsent = self.failures.take_unsent()
        try:
            self.store.add(unsent)
        except BaseException:
            self.failures.give_back(unsent)
            raise
        window = self.failures.current_window()
        self.failures.learn_shared(window, self.store.at_least(window, self.failures.threshold))
        if window - 1 > self._forgotten_before:
            self.store.forget_before(window - 1)
            self._forgotten_before = window - 1

    def start(self) -> None:
        if not self.failures.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="auth-failure-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the thread; counts not shared yet are dropped (they only limit, and only for a
        minute), so a database down at shutdown cannot hold it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self._try_sync()

    def _try_sync(self) -> None:
        try:
            with within(REQUEST_BUDGET):
                self.sync()
        except Exception as e:
            # Once per outage: the class name only, as a message may quote the store's URL.
            if not self._failing:
                log.warning(
                    "failed-authentication store unreachable (%s); each process limits from its "
                    "own counts until it is back; authentication is unaffected",
                    type(e).__name__,
                )
            self._failing = True
        else:
            if self._failing:
                log.info("failed-authentication store reachable again")
            self._failing = False

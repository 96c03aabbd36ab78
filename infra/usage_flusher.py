"""Flushes this process's usage counts to the usage store every few seconds, and once on stop.

A failed flush gives its batch back to the counter and the next one tries again. A flush whose
COMMIT reached the database just as the connection died is tried again too, so in that rare case
its uses count twice: usage is stored at least once, never lost.
"""

from __future__ import annotations

import logging
import threading
import time

from infra.outage import Outage
from ledger.deadline import CONNECTION_ERRORS, StoreUnavailable, unavailable, within
from projections.usage.counter import UsageCounter
from projections.usage.store import UsageStore

log = logging.getLogger("anthra.usage")

# A flush ends within this, stored or given back: a database that does not answer must not
# hold the flusher (nor the shutdown that waits for it).
FLUSH_WITHIN = 2.0


class UsageFlusher:
    """Flushes a counter to a store every `interval` seconds, and once more on stop.

    A failed flush gives its batch back to the counter and the next one tries again. A flush
    whose COMMIT reached the database just as the connection died is tried again too, so in
    that rare case its uses count twice: usage is stored at least once, never lost.
    """

    def __init__(self, counter: UsageCounter, store: UsageStore, interval: float = 10.0) -> None:
        self.counter = counter
        self.store = store
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage(log, "usage flush")
        self._flushed_at = time.monotonic()

    def flush(self) -> int:
        """Store what the counter holds; returns the requests stored. On failure keeps them."""
        with self.counter.flushing() as batch:
            if batch:
                self.store.add(batch)
        self._flushed_at = time.monotonic()
        return batch.requests

    def lag(self) -> float:
        """Seconds since usage was last stored (or since the flusher was made)."""
        return time.monotonic() - self._flushed_at

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the timer and flush what is left, within `timeout` seconds in all.

        Call it after the server stops verifying. A flush in progress is waited for (it ends
        within its own deadline); what the last flush cannot store is counted in the log line.
        """
        give_up = time.monotonic() + timeout
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, give_up - time.monotonic()))
            self._thread = None
        failure = self._try_flush(max(0.0, give_up - time.monotonic()))
        if failure is not None:
            log.warning(
                "usage flush on stop failed (%s); requests not stored: %d",
                failure,
                self.counter.pending().requests,
            )

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            failure = self._try_flush(FLUSH_WITHIN)
            if failure is None:
                self._outage.succeeded()
            else:
                self._outage.failed(
                    failure, f"requests held for the next flush: {self.counter.pending().requests}"
                )

    def _try_flush(self, within_s: float) -> str | None:
        """Flush; on failure, the reason (the exception's class, for other than the database)."""
        try:
            with within(within_s):
                self.flush()
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            return unavailable(e).reason
        except Exception as e:
            # Its message may quote settings.
            return type(e).__name__
        return None

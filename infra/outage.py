"""One log line when something the service depends on becomes unavailable, and one when it is
back: however many requests meet the outage, and without a traceback for an expected failure."""

from __future__ import annotations

import logging
import threading
import time


def summary(error: BaseException) -> str:
    """The error's class and the first line of its message (libpq's reason, never a password)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class Outage:
    """Tracks whether one dependency is down; logs the transitions only."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.down = False
        self._since = 0.0
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        """A use of the dependency failed: logged if it was up until now."""
        if self.down:
            return
        with self._lock:
            if self.down:
                return
            self.down = True
            self._since = time.monotonic()
        self.log.warning("%s unavailable (%s)", self.what, summary(error))

    def recovered(self) -> None:
        """A use of the dependency succeeded: logged if it was down until now."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            lasted = time.monotonic() - self._since
        self.log.warning("%s available again after %.1f s", self.what, lasted)

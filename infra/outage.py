"""One log line when something starts failing, one when it works again: never one per attempt."""

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
    """The state of one dependency as this process sees it, logged only when it changes."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self.reason = ""

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, reason: str, consequence: str = "") -> None:
        """A failure: logged (at WARNING, no traceback) only if it is the first of an outage."""
        from infra import metrics  # here: serve names the metrics folder before it is imported

        metrics.STORE_ERRORS.labels(self.what).inc()
        with self._lock:
            self._failures += 1
            self.reason = reason
            if self._since is not None:
                return
            self._since = time.monotonic()
        tail = f"; {consequence}" if consequence else ""
        self.log.warning("%s failing: %s%s", self.what, reason, tail)

    def succeeded(self, detail: str = "") -> None:
        """A success: ends an outage, if there was one, with one line saying how long it lasted."""
        if self._since is None:
            return
        with self._lock:
            since, failures = self._since, self._failures
            if since is None:
                return
            self._since = None
            self._failures = 0
        self.log.info(
            "%s working again after %.1f s (%d failed attempt%s)%s",
            self.what,
            time.monotonic() - since,
            failures,
            "" if failures == 1 else "s",
            f"; {detail}" if detail else "",
        )

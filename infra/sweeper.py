"""Records Expired once per key after its expiry passes; verification never waits for it."""

from __future__ import annotations

import logging
import threading

from domain.errors import KeyNotFound
from infra.outage import Outage
from ledger.deadline import CONNECTION_ERRORS, StoreUnavailable, unavailable
from ledger.key_ledger import KeyLedger

log = logging.getLogger("anthra.sweeper")


class ExpirySweeper:
    """Appends Expired for keys past their expiry; safe with many processes."""

    def __init__(self, ledger: KeyLedger, interval: float = 30.0) -> None:
        self.ledger = ledger
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage(log, "expiry sweep")

    def sweep(self) -> int:
        """One pass: how many Expired events this process appended."""
        appended = 0
        for key_id in self.ledger.due_for_expiry():
            if self._stopping.is_set():
                break
            try:
                if self.ledger.expire(key_id):
                    appended += 1
            except KeyNotFound:
                continue
        return appended

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="expiry-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                appended = self.sweep()
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                self._outage.failed(unavailable(e).reason)
                continue
            except Exception:
                log.warning("expiry sweep failed; will retry", exc_info=True)
                continue
            self._outage.succeeded()
            if appended:
                log.info("expiry sweep recorded %d Expired events", appended)

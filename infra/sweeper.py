"""Records Expired once per key after its expiry passes (verification never waits for it), and,
when the lifetime policy says so, revokes keys unused for its number of days (reason `unused`)."""

from __future__ import annotations

import logging
import threading

from domain.actors import SYSTEM
from domain.errors import KeyNotActive, KeyNotFound
from infra.outage import Outage
from ledger.deadline import CONNECTION_ERRORS, StoreUnavailable, unavailable
from ledger.key_ledger import KeyLedger
from ledger.stale_keys import REASON, stale_keys
from ledger.usage_report import UsageReport

log = logging.getLogger("anthra.sweeper")


class ExpirySweeper:
    """Appends Expired for keys past their expiry, and revokes stale keys when the policy asks;
    safe with many processes (both are idempotent on the key's version)."""

    def __init__(
        self, ledger: KeyLedger, interval: float = 30.0, usage: UsageReport | None = None
    ) -> None:
        self.ledger = ledger
        self.usage = usage
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
        return appended + self.revoke_stale()

    def revoke_stale(self) -> int:
        """Revoke the keys unused for the policy's number of days (none when it sets none)."""
        days = self.ledger.lifetime_terms().revoke_unused_after_days
        if days is None or self.usage is None:
            return 0
        revoked = 0
        for record, _ in stale_keys(self.ledger, self.usage, days):
            if self._stopping.is_set():
                break
            try:
                self.ledger.revoke(record.key_id, actor=SYSTEM, reason=REASON)
            except (KeyNotFound, KeyNotActive):
                continue
            revoked += 1
        return revoked

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="expiry-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        from infra import metrics

        while not self._stopping.wait(self.interval):
            try:
                appended = self.sweep()
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                metrics.SWEEPER_RUNS.labels("store_unavailable").inc()
                self._outage.failed(unavailable(e).reason)
                continue
            except Exception:
                metrics.SWEEPER_RUNS.labels("failed").inc()
                log.warning("expiry sweep failed; will retry", exc_info=True)
                continue
            metrics.SWEEPER_RUNS.labels("ok").inc()
            metrics.SWEEPER_EVENTS.inc(appended)
            self._outage.succeeded()
            if appended:
                log.info("sweep recorded %d Expired or Revoked (unused) events", appended)

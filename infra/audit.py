"""The audit trail of one ledger: its view on the store's database, kept current by a projector."""

from __future__ import annotations

import math
import threading
import time

from infra.audit_views import audit_view_for
from infra.deadline import bounded
from infra.ledger import LedgerStore
from projections.audit import (
    AuditProjector,
    AuditQuery,
    AuditRow,
    ChainReport,
    verify_chain,
)

# Over the API a verification reads every event: at most one start per this many seconds.
VERIFY_INTERVAL = 10.0


class VerificationRunning(Exception):
    """A chain verification is already running in this process."""


class VerifiedTooRecently(Exception):
    """A chain verification started less than the interval ago; come back in `retry_after`."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after


class AuditTrail:
    """Queries, export and chain verification over the audit read model, caught up on demand."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.view = audit_view_for(store)
        self.projector = AuditProjector(store.recorder, store.mapper, store.name, self.view)
        self._lock = threading.Lock()
        self._verifying = threading.Lock()
        self._last_verify_started = -math.inf

    def catch_up(self) -> int:
        """Project what the store holds beyond the view; one projector at a time per process."""
        with self._lock:
            return self.projector.catch_up()

    @bounded()
    def query(self, query: AuditQuery) -> list[AuditRow]:
        """Rows matching the query, after catching up so a caller sees its own changes."""
        self.catch_up()
        return self.view.query(query)

    @bounded()
    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        return self.view.rows_after(position, limit, owner_id)

    def verify(self, min_interval: float = 0.0) -> ChainReport:
        """Recompute the chain from the stored events, and each row's fields from its event.

        It reads the whole store (tens of seconds at a million events), so one runs at a time
        per process, and at most one starts per `min_interval` seconds; a caller turned away is
        told to come back rather than queue behind it.
        """
        if not self._verifying.acquire(blocking=False):
            raise VerificationRunning
        try:
            wait = self._last_verify_started + min_interval - time.monotonic()
            if wait > 0:
                raise VerifiedTooRecently(math.ceil(wait))
            self._last_verify_started = time.monotonic()
            self.catch_up()
            return verify_chain(
                self.store.recorder,
                self.view,
                application_name=self.store.name,
                mapper=self.store.mapper,
            )
        finally:
            self._verifying.release()

"""The audit trail of one ledger: its view on the store's database, kept current by a projector."""

from __future__ import annotations

import threading

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


class VerificationRunning(Exception):
    """A chain verification is already running in this process."""


class AuditTrail:
    """Queries, export and chain verification over the audit read model, caught up on demand."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.view = audit_view_for(store)
        self.projector = AuditProjector(store.recorder, store.mapper, store.name, self.view)
        self._lock = threading.Lock()
        self._verifying = threading.Lock()

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

    def verify(self) -> ChainReport:
        """Recompute the chain from the stored events, and each row's fields from its event.

        It reads the whole store (tens of seconds at a million events), so one runs at a time
        per process; a second caller is told to come back rather than queue behind it.
        """
        if not self._verifying.acquire(blocking=False):
            raise VerificationRunning
        try:
            self.catch_up()
            return verify_chain(
                self.store.recorder,
                self.view,
                application_name=self.store.name,
                mapper=self.store.mapper,
            )
        finally:
            self._verifying.release()

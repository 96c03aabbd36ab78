"""The audit trail of one ledger: queries, export and the chain check over its read model, which
this process catches up on demand."""

from __future__ import annotations

import math
import threading
import time
from uuid import UUID

from eventsourcing.application import Application

from ledger.deadline import bounded
from ledger.read_model import ReadModel
from projections.audit_trail.check import check_chain
from projections.audit_trail.projection import AuditProjector
from projections.audit_trail.view import AuditQuery, AuditRow, AuditView, ChainReport

# Over the API a check reads every event: at most one start per this many seconds.
CHECK_INTERVAL = 10.0


class CheckRunning(Exception):
    """A check of the chain is already running in this process."""


class CheckedTooRecently(Exception):
    """A check of the chain started less than the interval ago; come back in `retry_after`."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after


class AuditTrail(ReadModel[AuditView]):
    """Queries, export and the chain check over the audit read model, caught up on demand."""

    def __init__(self, ledger: Application[UUID], view: AuditView) -> None:
        super().__init__(view, AuditProjector(ledger.recorder, ledger.mapper, ledger.name, view))
        self.ledger = ledger
        self._checking = threading.Lock()
        self._last_check_started = -math.inf

    @bounded()
    def query(self, query: AuditQuery) -> list[AuditRow]:
        """Rows matching the query, after catching up so a caller sees its own changes."""
        self.catch_up()
        return self.view.query(query)

    @bounded()
    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        return self.view.rows_after(position, limit, owner_id)

    def check_chain(self, min_interval: float = 0.0) -> ChainReport:
        """Recompute the chain from the stored events, and each row's fields from its event.

        It reads the whole store (tens of seconds at a million events), so one runs at a time
        per process, and at most one starts per `min_interval` seconds; a caller turned away is
        told to come back rather than queue behind it.
        """
        if not self._checking.acquire(blocking=False):
            raise CheckRunning
        try:
            wait = self._last_check_started + min_interval - time.monotonic()
            if wait > 0:
                raise CheckedTooRecently(math.ceil(wait))
            self._last_check_started = time.monotonic()
            self.catch_up()
            return check_chain(
                self.ledger.recorder,
                self.view,
                application_name=self.ledger.name,
                mapper=self.ledger.mapper,
            )
        finally:
            self._checking.release()

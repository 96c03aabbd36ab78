"""Checking the audit trail against the store: every link recomputed from the stored events."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from projections.audit_trail.chain import GENESIS, link
from projections.audit_trail.projection import RowMaker
from projections.audit_trail.view import AuditRow, AuditView, ChainReport


def check_chain(
    recorder: ApplicationRecorder,
    view: AuditView,
    batch: int = 1000,
    *,
    application_name: str = "ledger",
    mapper: Mapper[UUID] | None = None,
) -> ChainReport:
    """Recompute the chain from the store and compare it with the view, position by position."""
    # Events the view has not reached yet are not its fault: stop at its tracked position.
    # With a mapper, each row is also derived again from its event, so that an edit to the
    # audit table's own columns shows too (the chain covers the stored events only).
    head = view.head()
    end = max(view.max_tracking_id(application_name) or 0, head[0] if head else 0)
    rows_maker = RowMaker(mapper, view) if mapper is not None else None
    chain, position, checked = GENESIS, 0, 0

    def bad(at: int, reason: str) -> ChainReport:
        return ChainReport(
            ok=False,
            checked=checked,
            head_position=position,
            head_chain=chain,
            first_bad_position=at,
            reason=reason,
        )

    rows = _rows(view, end, batch)
    row = next(rows, None)
    for n in _notifications(recorder, end, batch):
        if row is not None and row.position < n.id:
            return bad(row.position, "audit record for an event that is not in the store")
        if row is None or row.position > n.id:
            return bad(n.id, "audit record missing")
        expected = link(chain, n)
        if row.chain != expected or row.key_id != n.originator_id:
            return bad(n.id, "stored event differs from the audit record")
        if rows_maker is not None and rows_maker.row(n, expected) != row:
            return bad(n.id, "audit record's fields differ from the stored event")
        chain, position, checked = expected, n.id, checked + 1
        row = next(rows, None)
    if row is not None:
        return bad(row.position, "audit record for an event that is not in the store")
    return ChainReport(ok=True, checked=checked, head_position=position, head_chain=chain)


def _notifications(recorder: ApplicationRecorder, end: int, batch: int) -> Iterator[Notification]:
    start = 0
    while start < end:
        page = recorder.select_notifications(
            start=start, limit=batch, stop=end, inclusive_of_start=False
        )
        yield from page
        if len(page) < batch:
            return
        start = page[-1].id


def _rows(view: AuditView, end: int, batch: int) -> Iterator[AuditRow]:
    position = 0
    while True:
        page = view.rows_after(position, batch)
        for row in page:
            if row.position > end:
                return
            yield row
        if len(page) < batch:
            return
        position = page[-1].position

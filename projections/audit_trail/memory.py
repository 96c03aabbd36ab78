"""The audit trail in process memory: for the in-memory backend and unit tests."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.popo import POPOTrackingRecorder

from projections.audit_trail.view import AuditQuery, AuditRow, AuditView


class MemoryAuditView(POPOTrackingRecorder, AuditView):
    """Audit rows in process memory, for the in-memory backend and unit tests."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[AuditRow] = []
        self._positions: list[int] = []
        self._by_owner: dict[str, list[AuditRow]] = defaultdict(list)
        self._by_key: dict[UUID, list[AuditRow]] = defaultdict(list)

    def append(self, rows: Sequence[AuditRow], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            last = self._positions[-1] if self._positions else 0
            for row in rows:
                if row.position <= last or row.position > tracking.notification_id:
                    raise IntegrityError(f"audit position {row.position} is out of order")
                last = row.position
            self._insert_tracking(tracking)
            for row in rows:
                self._rows.append(row)
                self._positions.append(row.position)
                self._by_owner[row.owner_id].append(row)
                self._by_key[row.key_id].append(row)

    def head(self) -> tuple[int, str] | None:
        with self._database_lock:
            return (self._rows[-1].position, self._rows[-1].chain) if self._rows else None

    def owner_of(self, key_id: UUID) -> str | None:
        with self._database_lock:
            rows = self._by_key.get(key_id)
            return (rows[0].owner_id or None) if rows else None

    def query(self, q: AuditQuery) -> list[AuditRow]:
        with self._database_lock:
            if q.key_id is not None:
                candidates = self._by_key.get(q.key_id, [])
            elif q.owner_id is not None:
                candidates = self._by_owner.get(q.owner_id, [])
            else:
                candidates = self._rows
            if q.cursor is not None:
                # Rows are kept in position order: start at the cursor rather than scan to it.
                at = bisect_left if q.newest_first else bisect_right
                cut = at(candidates, q.cursor, key=lambda r: r.position)
                candidates = candidates[:cut] if q.newest_first else candidates[cut:]
            ordered = reversed(candidates) if q.newest_first else iter(candidates)
            found: list[AuditRow] = []
            for row in ordered:
                if q.admits(row):
                    found.append(row)
                    if len(found) == q.limit:
                        break
            return found

    def rows_after(self, position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        with self._database_lock:
            rows = self._rows if owner_id is None else self._by_owner.get(owner_id, [])
            start = bisect_right(rows, position, key=lambda r: r.position)
            return rows[start : start + limit]

"""One reader of the audit trail for every event stream a process serves.

Each open stream used to catch the trail up and query it on every poll: a few hundred streams
made a few thousand queries a second against a quiet database. The tail does it once per round
for all of them — catches the trail up, reads the rows after its position (every owner's),
keeps the latest in memory — and each stream takes its rows (its owner's, or all) from there.
A stream that starts, or has fallen, before what the tail keeps reads that backlog from the
trail itself, then joins the tail. The tail runs while streams are open, and starts again at
the trail's head when the next one opens.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Sequence

import anyio

from ledger.audit_trail import AuditTrail
from projections.audit_trail.view import AuditRow

log = logging.getLogger("anthra.api")

BATCH = 100
# Rows kept for streams a little behind (a slow reader, one that just caught up on its backlog).
KEEP = 2_000


class AuditTail:
    """The audit trail's latest rows, read once per round for every stream of the process."""

    def __init__(
        self, audit: AuditTrail, poll_interval: float, keep: int = KEEP, batch: int = BATCH
    ) -> None:
        self.audit = audit
        self.poll_interval = poll_interval
        self.keep = keep
        self.batch = batch
        self.rows: list[AuditRow] = []
        self._positions: list[int] = []
        # Every row after `since` up to `position` is in `rows`; the tail has read to `position`.
        self.since = 0
        self.position = 0
        # When the last round that reached the end of the trail began (monotonic seconds).
        self.read_at = 0.0
        self.rounds = 0
        self._readers = 0
        self._task: asyncio.Task[None] | None = None
        # Made on the event loop that uses them (an app may be served by more than one loop
        # over its life, as in tests).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._round = asyncio.Event()
        self._starting = asyncio.Lock()

    async def join(self) -> None:
        """A stream opens: start the tail at the trail's head if it is not running."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._task, self._readers = loop, None, 0
            self._round, self._starting = asyncio.Event(), asyncio.Lock()
        self._readers += 1
        async with self._starting:
            if self._task is not None and not self._task.done():
                return
            try:
                await anyio.to_thread.run_sync(self.audit.catch_up)
                head = await anyio.to_thread.run_sync(self.audit.view.head)
            except BaseException:
                self._readers -= 1
                raise
            self.rows, self._positions = [], []
            self.since = self.position = head[0] if head else 0
            self.read_at = time.monotonic()
            self._task = loop.create_task(self._run())

    def leave(self) -> None:
        """A stream closed; the tail stops after its round once none is left."""
        self._readers -= 1

    def take(self, after: int, owner_id: str | None) -> list[AuditRow] | None:
        """The rows after `after` that the tail has read (the owner's, or everyone's for None);
        None when `after` is before what the tail keeps: read those from the trail."""
        if after < self.since:
            return None
        start = bisect.bisect_right(self._positions, after)
        if owner_id is None:
            return self.rows[start:]
        return [row for row in self.rows[start:] if row.owner_id == owner_id]

    async def next_round(self, timeout: float) -> None:
        """Wait for the next round to end, at most `timeout` seconds."""
        with anyio.move_on_after(timeout):
            await self._round.wait()

    async def _run(self) -> None:
        while self._readers > 0:
            started = time.monotonic()
            try:
                await anyio.to_thread.run_sync(self.audit.catch_up)
                while True:
                    rows = await anyio.to_thread.run_sync(
                        self.audit.rows_after, self.position, self.batch, None
                    )
                    self._add(rows)
                    if len(rows) < self.batch:
                        break
                self.read_at = started
            except Exception as e:
                # The streams hear nothing, heartbeats included, until the trail answers again.
                log.warning("event streams: reading the audit trail failed (%s)", type(e).__name__)
            self.rounds += 1
            ended, self._round = self._round, asyncio.Event()
            ended.set()
            await asyncio.sleep(self.poll_interval)

    def _add(self, rows: Sequence[AuditRow]) -> None:
        if not rows:
            return
        self.rows.extend(rows)
        self._positions.extend(row.position for row in rows)
        self.position = rows[-1].position
        over = len(self.rows) - self.keep
        if over > 0:
            self.since = self._positions[over - 1]
            del self.rows[:over], self._positions[:over]

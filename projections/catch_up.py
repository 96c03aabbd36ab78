"""The one catch-up loop of the read models kept in the database (audit trail, key states).

Each view tracks the store position it has reached, in the same transaction as its rows, and
refuses a write at a position it has reached already. Several processes may catch one view up
at once: each reads from the tracked position, writes, and when another process wrote first
(IntegrityError) goes on from where that one got to. Every position is written exactly once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Notification,
    TrackingRecorder,
)


class ReadModelProjector(ABC):
    """Projects stored events into a tracked view, a page at a time."""

    def __init__(
        self, recorder: ApplicationRecorder, application_name: str, view: TrackingRecorder
    ) -> None:
        self.recorder = recorder
        self.application_name = application_name
        self.tracked = view

    def position(self) -> int:
        """The store position the view has reached."""
        return self.tracked.max_tracking_id(self.application_name) or 0

    def catch_up(self, batch: int = 500) -> int:
        """Project every stored event beyond the view's position; returns how many this wrote."""
        written = 0
        while True:
            position = self.position()
            notifications = self.recorder.select_notifications(
                start=position, limit=batch, inclusive_of_start=False
            )
            if not notifications:
                return written
            try:
                self.write(position, notifications)
            except IntegrityError:
                # Another process wrote from this position first: go on from where it got to.
                # If nobody moved the position, the conflict is something else: do not loop.
                if self.position() == position:
                    raise
                continue
            written += len(notifications)
            if len(notifications) < batch:
                return written

    @abstractmethod
    def write(self, position: int, notifications: Sequence[Notification]) -> None:
        """Write what the notifications after `position` change, and track the last of them, in
        one transaction; IntegrityError if the view is no longer at `position`."""

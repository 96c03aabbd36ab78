"""A read model this process keeps current on demand: its view, its projector, one catch-up at a
time per process (several processes may catch one view up; each position is written once)."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from eventsourcing.persistence import TrackingRecorder

from projections.catch_up import ReadModelProjector

View = TypeVar("View", bound=TrackingRecorder)


class ReadModel(Generic[View]):
    """A view and the projector that keeps it current."""

    def __init__(self, view: View, projector: ReadModelProjector) -> None:
        self.view = view
        self.projector = projector
        self._lock = threading.Lock()

    def catch_up(self) -> int:
        """Project what the store holds beyond the view; returns how many events."""
        with self._lock:
            return self.projector.catch_up()

    def behind(self) -> int:
        """How many positions the store holds beyond the view."""
        projector = self.projector
        return (projector.recorder.max_notification_id() or 0) - projector.position()

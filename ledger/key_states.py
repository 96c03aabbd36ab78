"""Key states: each key's latest state as a table, kept current from the store."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application

from ledger.read_model import ReadModel
from projections.key_states.projection import KeyStatesProjector
from projections.key_states.view import KeyStatesView


class KeyStates(ReadModel[KeyStatesView]):
    """One process's handle on the key-states read model."""

    def __init__(self, ledger: Application[UUID], view: KeyStatesView) -> None:
        super().__init__(
            view, KeyStatesProjector(ledger.recorder, ledger.mapper, ledger.name, view)
        )

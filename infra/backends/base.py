"""What every backend builds: the event store's environment, the read models' views, the stores
of usage and failed attempts, and the way a process learns of other processes' writes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID

from eventsourcing.application import Application

from infra.auth_failure_stores import AuthFailureStore
from projections.audit_trail.view import AuditView
from projections.key_states.view import KeyStatesView
from projections.usage.store import UsageStore
from projections.webhooks.store import WebhookStore

if TYPE_CHECKING:
    from infra.backends.postgres.listener import ChannelListener


class Backend(ABC):
    """Where the ledger keeps its events and read models."""

    name: ClassVar[str]
    # Whether other processes may write to the same store, so that each must follow it; an
    # in-memory store is this process's alone.
    shared: ClassVar[bool] = True

    @abstractmethod
    def store_env(self) -> dict[str, str]:
        """The eventsourcing environment of the ledger's application (KeyLedger(env))."""

    @abstractmethod
    def describe(self) -> str:
        """Where the events are, for the start-up log line: never a password."""

    @abstractmethod
    def audit_view(self, ledger: Application[UUID]) -> AuditView:
        """The audit trail's view beside the ledger's events, its tables created if missing."""

    def key_states_view(self, ledger: Application[UUID]) -> KeyStatesView | None:
        """The key states' view, tables created if missing; None where every process starts
        from an empty store anyway."""
        return None

    @abstractmethod
    def usage_store(self) -> UsageStore:
        """Where flushed usage is kept."""

    @abstractmethod
    def webhook_store(self, ledger: Application[UUID]) -> WebhookStore:
        """Where webhook endpoints and their deliveries are kept, beside the ledger's events."""

    @abstractmethod
    def auth_failure_store(self) -> AuthFailureStore:
        """Where failed attempts are shared between processes (unless Redis is configured)."""

    def listener(self, ledger: Application[UUID]) -> ChannelListener | None:
        """A channel that announces other processes' writes; None: poll the store instead."""
        return None

"""The in-memory backend: one process, nothing kept after it stops (unit tests, `memory:`)."""

from __future__ import annotations

import threading
from typing import ClassVar
from uuid import UUID
from weakref import WeakKeyDictionary

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder

from infra.auth_failure_stores import AuthFailureStore, MemoryAuthFailureStore
from infra.backends.base import Backend
from projections.audit_trail.memory import MemoryAuditView
from projections.audit_trail.view import AuditView
from projections.usage.memory import MemoryUsageStore
from projections.usage.store import UsageStore
from projections.webhooks.memory import MemoryWebhookStore
from projections.webhooks.store import WebhookStore


class MemoryBackend(Backend):
    name: ClassVar[str] = "memory"
    shared: ClassVar[bool] = False

    def __init__(self) -> None:
        # An in-memory store is its recorder object: every view "on the same database" is the
        # one kept beside it, so that two ledgers over one memory store share it as they would
        # a file.
        self._audit_views: WeakKeyDictionary[ApplicationRecorder, MemoryAuditView] = (
            WeakKeyDictionary()
        )
        self._webhook_stores: WeakKeyDictionary[ApplicationRecorder, MemoryWebhookStore] = (
            WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def store_env(self) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    def describe(self) -> str:
        return "in memory"

    def audit_view(self, ledger: Application[UUID]) -> AuditView:
        with self._lock:
            view = self._audit_views.get(ledger.recorder)
            if view is None:
                view = self._audit_views[ledger.recorder] = MemoryAuditView()
            return view

    def usage_store(self) -> UsageStore:
        return MemoryUsageStore()

    def webhook_store(self, ledger: Application[UUID]) -> WebhookStore:
        with self._lock:
            store = self._webhook_stores.get(ledger.recorder)
            if store is None:
                store = self._webhook_stores[ledger.recorder] = MemoryWebhookStore()
            return store

    def auth_failure_store(self) -> AuthFailureStore:
        return MemoryAuthFailureStore()

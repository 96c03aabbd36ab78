"""The SQLite backend: one file for the events and every read model (the embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from uuid import UUID

from eventsourcing.application import Application

from infra.auth_failure_stores import AuthFailureStore, SQLiteAuthFailureStore
from infra.backends.base import Backend
from projections.audit_trail.sqlite import SQLiteAuditView
from projections.audit_trail.view import AuditView
from projections.key_states.sqlite import SQLiteKeyStatesView
from projections.key_states.view import KeyStatesView
from projections.usage.sqlite import SQLiteUsageStore
from projections.usage.store import UsageStore
from projections.webhooks.sqlite import SQLiteWebhookStore
from projections.webhooks.store import WebhookStore

DEFAULT_PATH = Path("var") / "anthra-keys.sqlite3"


class SQLiteBackend(Backend):
    name: ClassVar[str] = "sqlite"

    def __init__(self, path: Path = DEFAULT_PATH) -> None:
        self.path = path

    def store_env(self) -> dict[str, str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self.path),
            "SQLITE_LOCK_TIMEOUT": "10",
        }

    def describe(self) -> str:
        return str(self.path)

    def audit_view(self, ledger: Application[UUID]) -> AuditView:
        view = SQLiteAuditView(ledger.factory.datastore)  # type: ignore[attr-defined]
        view.create_table()
        return view

    def key_states_view(self, ledger: Application[UUID]) -> KeyStatesView | None:
        datastore = ledger.factory.datastore  # type: ignore[attr-defined]
        view = SQLiteKeyStatesView(datastore, ledger.name)
        view.create_table()
        return view

    def usage_store(self) -> UsageStore:
        return SQLiteUsageStore(str(self.path))

    def webhook_store(self, ledger: Application[UUID]) -> WebhookStore:
        return SQLiteWebhookStore(str(self.path))

    def auth_failure_store(self) -> AuthFailureStore:
        return SQLiteAuthFailureStore(str(self.path))

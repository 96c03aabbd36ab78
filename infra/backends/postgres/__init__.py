"""The PostgreSQL backend: the events and every read model in one database (and `?schema=`),
every connection made from the whole URL, so TLS and every libpq parameter hold."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from psycopg import Connection, sql
from psycopg.rows import tuple_row

from infra.auth_failure_stores import AuthFailureStore, PostgresAuthFailureStore
from infra.backends.base import Backend
from infra.backends.postgres.listener import ChannelListener
from infra.backends.postgres.pool import SteadyPool, pool
from infra.backends.postgres.store import (
    CONNINFO,
    LOCK_TIMEOUT_SECONDS,
    POOL_MAX,
    POOL_WAIT,
    LedgerRecorder,
    creating_tables,
    events_pool,
)
from infra.backends.postgres.url import PostgresUrl
from projections.audit_trail.postgres import PostgresAuditView
from projections.audit_trail.view import AuditView
from projections.key_states.postgres import PostgresKeyStatesView
from projections.key_states.view import KeyStatesView
from projections.postgres_views import PostgresTrackedView
from projections.usage.postgres import PostgresUsageStore
from projections.usage.store import UsageStore

V = TypeVar("V", bound=PostgresTrackedView)


class PostgresBackend(Backend):
    name: ClassVar[str] = "postgres"

    def __init__(self, url: PostgresUrl, pool_size: int = 5, pool_max: int = 15) -> None:
        self.url = url
        self.pool_size = pool_size
        self.pool_max = pool_max

    def store_env(self) -> dict[str, str]:
        """The library's POSTGRES_* keys, and the whole connection string for our factory."""
        params = self.url.params
        env = {
            "PERSISTENCE_MODULE": "infra.backends.postgres.store:LedgerPostgresFactory",
            CONNINFO: self.url.conninfo,
            # The library insists on these; the pool connects with the connection string.
            "POSTGRES_DBNAME": params.get("dbname", ""),
            "POSTGRES_HOST": params.get("host", ""),
            "POSTGRES_USER": params.get("user", ""),
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            POOL_MAX: str(self.pool_max),
            POOL_WAIT: params["connect_timeout"],
            # The library's LOCK TABLE before each write waits this long, not forever.
            "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
        }
        if self.url.schema:
            env["POSTGRES_SCHEMA"] = self.url.schema
        return env

    def describe(self) -> str:
        return self.url.describe()

    def audit_view(self, ledger: Application[UUID]) -> AuditView:
        return self._created(PostgresAuditView(_datastore(ledger)))

    def key_states_view(self, ledger: Application[UUID]) -> KeyStatesView | None:
        return self._created(PostgresKeyStatesView(_datastore(ledger), ledger.name))

    def usage_store(self) -> UsageStore:
        return PostgresUsageStore(self.own_pool("anthra-usage", 2))

    def auth_failure_store(self) -> AuthFailureStore:
        return PostgresAuthFailureStore(self.own_pool("anthra-auth-failures", 1))

    def listener(self, ledger: Application[UUID]) -> ChannelListener | None:
        recorder = ledger.recorder
        assert isinstance(recorder, LedgerRecorder)
        events = events_pool(recorder.datastore)
        assert isinstance(events.conninfo, str)
        return ChannelListener(
            events.conninfo, recorder.channel_name, events.watchdog, recorder.datastore.schema
        )

    def own_pool(self, name: str, size: int) -> SteadyPool:
        """A small pool of a store's own on the ledger's schema, in autocommit mode; opening it
        waits for nothing: a database down at start only fails that store's work."""
        schema = self.url.schema
        set_path = (
            sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)) if schema else None
        )

        def configure(conn: Connection[Any]) -> None:
            conn.autocommit = True
            if set_path is not None:
                conn.execute(set_path)

        own = pool(
            self.url.conninfo,
            name=name,
            min_size=1,
            max_size=size,
            wait=self.url.connect_timeout,
            configure=configure,
            row_factory=tuple_row,
        )
        own.open(wait=False)
        return own

    @staticmethod
    def _created(view: V) -> V:
        with creating_tables(view.datastore):
            view.create_table()
        return view


def _datastore(ledger: Application[UUID]) -> Any:
    return ledger.factory.datastore  # type: ignore[attr-defined]

"""TLS and every other libpq parameter of the database URL reach every connection the service
opens: the event store (and the read models on its pool), the index's LISTEN connection, usage
and Auth.js sessions. A URL that asks for TLS never connects without it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from infra.authjs_sessions import DatabaseSessions
from infra.backends import backend_for
from infra.backends.postgres.url import parse_postgres_url
from infra.follower import IndexFollower
from infra.settings import SettingsError, load_settings
from ledger.audit_trail import AuditTrail
from ledger.deadline import StoreUnavailable
from ledger.key_ledger import KeyLedger
from projections.usage.counter import UsageBatch
from tests.conftest import settings_for
from tests.postgres_cluster import PostgresCluster, make_certificates

pytestmark = pytest.mark.postgres

Start = Callable[..., PostgresCluster]


def with_params(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def refused(url: str) -> list[str]:
    """Which of the service's connections could not be made with this URL."""
    failed = []
    try:
        KeyLedger(backend_for(settings_for(url)).store_env()).close()
    except (OperationalError, StoreUnavailable):
        failed.append("event store")
    usage = backend_for(settings_for(url)).usage_store()
    try:
        usage.add(UsageBatch(last_used={uuid4(): 1.0}))
    except (psycopg.OperationalError, StoreUnavailable):
        failed.append("usage")
    finally:
        usage.close()

    async def session_lookup() -> None:
        sessions = DatabaseSessions(url)
        try:
            await sessions.user("0" * 36)
        finally:
            await sessions.close()

    try:
        asyncio.run(session_lookup())
    except psycopg.OperationalError:
        failed.append("auth.js sessions")
    return failed


def test_sslmode_require_against_a_server_without_tls_never_connects(postgres_server: str) -> None:
    # The shared test server has no TLS
    with psycopg.connect(postgres_server) as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("off",)
    # Every connection the service opens refuses to fall back to plain text
    url = with_params(postgres_server, sslmode="require", connect_timeout="1")
    assert refused(url) == ["event store", "usage", "auth.js sessions"]
    # And the reason is the one libpq gives, on the very connection string the service uses
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(parse_postgres_url(url).conninfo).close()


def test_verify_full_with_the_wrong_root_certificate_never_connects(
    own_postgres: Start, tmp_path: Path
) -> None:
    # A TLS server whose certificate one CA signed; the URL trusts another CA
    server = own_postgres(make_certificates(tmp_path / "server"))
    other_ca = make_certificates(tmp_path / "other", name="someone-else").ca_cert
    url = with_params(
        server.url, sslmode="verify-full", sslrootcert=str(other_ca), connect_timeout="1"
    )
    assert refused(url) == ["event store", "usage", "auth.js sessions"]


def test_verify_full_with_the_right_root_certificate_uses_tls_on_every_connection(
    own_postgres: Start, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "server")
    server = own_postgres(certificates)
    name = f"anthra-tls-{uuid4().hex[:8]}"
    url = with_params(
        server.url,
        sslmode="verify-full",
        sslrootcert=str(certificates.ca_cert),
        application_name=name,
    )
    # The ledger writes and reads its events, its audit trail and usage over the URL, and its
    # index follows the store on a LISTEN connection of its own
    backend = backend_for(settings_for(url))
    ledger = KeyLedger(backend.store_env())
    usage = backend.usage_store()
    follower = IndexFollower(ledger, backend)
    try:
        follower.start()
        minted = ledger.mint(
            owner_id="alice", name="ci", scopes=["books:read"], expires_in_days=None, actor="t"
        )
        audit = AuditTrail(ledger, backend.audit_view(ledger))
        assert audit.catch_up() == 1
        usage.add(UsageBatch(last_used={minted.record.key_id: 1.0}))
        # Every connection it holds carries the URL's application_name (the listener's with
        # "-listener" after it), and every one is TLS
        with psycopg.connect(server.url) as conn:
            for _ in range(100):
                rows = conn.execute(
                    "SELECT a.application_name, s.ssl"
                    " FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                    " WHERE a.application_name IN (%s, %s)",
                    (name, f"{name}-listener"),
                ).fetchall()
                if f"{name}-listener" in {n for n, _ in rows}:
                    break
                time.sleep(0.05)
        assert len(rows) >= 3
        assert f"{name}-listener" in {n for n, _ in rows}
        assert all(ssl for _, ssl in rows)
    finally:
        follower.stop()
        usage.close()
        ledger.close()


def test_a_parameter_libpq_does_not_know_stops_the_start_with_its_name() -> None:
    env = {"ANTHRA_DATABASE_URL": "postgresql://127.0.0.1/anthra?sslmod=require"}
    with pytest.raises(SettingsError, match="sslmod"):
        load_settings(env)
    env = {"ANTHRA_DATABASE_URL": "postgresql://127.0.0.1/anthra?pool_size=3"}
    with pytest.raises(SettingsError, match="ANTHRA_DB_POOL_SIZE"):
        load_settings(env)

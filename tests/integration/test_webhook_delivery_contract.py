"""One contract, three stores: webhook endpoints' delivery state on memory, SQLite and PostgreSQL
behaves the same — positions move once, a message is queued once, the queue is in order, a
lease lets one process deliver an endpoint at a time, and a restart resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest

from infra.backends import backend_for
from infra.webhook_deliverer import WebhookDeliverer
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from ledger.webhooks import Webhooks
from projections.audit_trail.view import AuditRow
from projections.key_states.view import KeyState
from projections.webhooks.store import (
    DELIVERED,
    PENDING,
    Attempt,
    Endpoint,
    NewDelivery,
    WebhookStore,
)
from tests.conftest import FakeClock, settings_for


class Process:
    """A ledger process's webhook parts: the ledger, its audit trail, the store, a deliverer."""

    def __init__(
        self, ledger: KeyLedger, audit: AuditTrail, store: WebhookStore, clock: FakeClock
    ) -> None:
        self.ledger = ledger
        self.webhooks = Webhooks(ledger, store, allow_http_loopback=True)
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.answers: list[int] = []
        self.deliverer = WebhookDeliverer(
            self.webhooks,
            audit,
            Bodies(),
            clock=clock,
            send=self.send,
            jitter=lambda: 0.0,
            retry_window=3600.0,
        )

    def send(self, url: str, body: bytes, headers: dict[str, str], **_: Any) -> tuple[int, str]:
        self.sent.append((headers["webhook-id"], headers))
        return (self.answers.pop(0) if self.answers else 204), ""


class Bodies:
    def event(self, row: AuditRow) -> bytes:
        return f'{{"type":"{row.type}","position":{row.position}}}'.encode()

    def expiring_soon(self, state: KeyState, days: int) -> bytes:
        return f'{{"type":"ExpiringSoon","days":{days}}}'.encode()


def endpoint(owner_id: str = "u1", position: int = 0) -> Endpoint:
    return Endpoint(
        endpoint_id=uuid4(),
        owner_id=owner_id,
        url="http://127.0.0.1:9/in",
        event_types=("Minted", "Revoked"),
        created_at=1.0,
        position=position,
        status="enabled",
    )


def message(n: int) -> NewDelivery:
    return NewDelivery(message_id=f"evt_{n}", type="Minted", position=n, payload=b"{}")


class WebhookContract:
    """Every backend passes these; subclasses provide `database_url`."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def open_process(self, database_url: str, clock: FakeClock) -> Iterator[Callable[[], Process]]:
        backend = backend_for(settings_for(database_url))
        opened: list[tuple[KeyLedger, WebhookStore]] = []

        def open_one() -> Process:
            if not backend.shared and opened:
                ledger = KeyLedger(clock=clock, beside=opened[0][0])
            else:
                ledger = KeyLedger(backend.store_env(), clock=clock)
            store = backend.webhook_store(ledger)
            opened.append((ledger, store))
            return Process(ledger, AuditTrail(ledger, backend.audit_view(ledger)), store, clock)

        yield open_one
        for ledger, store in opened:
            store.close()
            ledger.close()

    @pytest.fixture
    def store(self, open_process: Callable[[], Process]) -> WebhookStore:
        return open_process().webhooks.store

    def test_an_endpoint_and_its_secret_are_kept_until_deleted(self, store: WebhookStore) -> None:
        # Keep an endpoint
        kept = endpoint()
        store.add_endpoint(kept, "whsec_c2VjcmV0")
        assert store.endpoint(kept.endpoint_id) == kept
        assert store.endpoints_of("u1") == [kept] and store.endpoints_of("u2") == []
        assert store.enabled() == [kept]
        assert store.secret(kept.endpoint_id) == "whsec_c2VjcmV0"
        # Disable it: it keeps its secret, and says why
        store.set_status(kept.endpoint_id, "disabled", "it failed")
        shown = store.endpoint(kept.endpoint_id)
        assert shown is not None and (shown.status, shown.reason) == ("disabled", "it failed")
        assert store.enabled() == []
        # Delete it: the secret is erased
        store.set_status(kept.endpoint_id, "deleted", "by its owner")
        assert store.secret(kept.endpoint_id) is None

    def test_messages_are_queued_once_in_order_and_the_position_moves_once(
        self, store: WebhookStore
    ) -> None:
        kept = endpoint()
        store.add_endpoint(kept, "whsec_c2VjcmV0")
        # Queue two messages, reading the store from 0 to 5
        assert store.enqueue(kept.endpoint_id, 0, 5, [message(3), message(5)], 10.0)
        # A second process that read from 0 too writes nothing
        assert not store.enqueue(kept.endpoint_id, 0, 5, [message(3), message(5)], 11.0)
        # A message queued again is skipped; the position moves on
        assert store.enqueue(kept.endpoint_id, 5, 9, [message(5), message(9)], 12.0)
        shown = store.endpoint(kept.endpoint_id)
        assert shown is not None and shown.position == 9
        assert [d.message_id for d in store.deliveries(kept.endpoint_id, 10)] == [
            "evt_9",
            "evt_5",
            "evt_3",
        ]
        # The first pending is the oldest; record a failed try, then a delivered one
        first = store.next_pending(kept.endpoint_id)
        assert first is not None and (first.message_id, first.attempts) == ("evt_3", 0)
        assert first.created_at == 10.0 and first.payload == b"{}"
        failed = Attempt(
            at=15.0, status=PENDING, last_status=503, last_error="x", next_attempt_at=20.0
        )
        store.record_attempt(kept.endpoint_id, first.seq, failed)
        again = store.next_pending(kept.endpoint_id)
        assert again is not None and again.seq == first.seq
        assert (again.attempts, again.last_status, again.next_attempt_at) == (1, 503, 20.0)
        assert again.first_attempt_at == 15.0
        done = Attempt(
            at=21.0,
            status=DELIVERED,
            last_status=200,
            last_error="",
            next_attempt_at=None,
            delivered_at=21.0,
        )
        store.record_attempt(kept.endpoint_id, first.seq, done)
        following = store.next_pending(kept.endpoint_id)
        assert following is not None and following.message_id == "evt_5"
        (oldest,) = store.deliveries(kept.endpoint_id, 10)[-1:]
        assert (oldest.status, oldest.attempts, oldest.delivered_at) == (DELIVERED, 2, 21.0)
        assert oldest.first_attempt_at == 15.0

    def test_one_holder_at_a_time_until_its_lease_lapses(self, store: WebhookStore) -> None:
        kept = endpoint()
        store.add_endpoint(kept, "whsec_c2VjcmV0")
        assert store.lease(kept.endpoint_id, "a", now=100.0, until=130.0)
        # Another holder waits; the holder renews
        assert not store.lease(kept.endpoint_id, "b", now=110.0, until=140.0)
        assert store.lease(kept.endpoint_id, "a", now=120.0, until=150.0)
        # Lapsed: the other takes it over
        assert store.lease(kept.endpoint_id, "b", now=150.0, until=180.0)
        assert not store.lease(kept.endpoint_id, "a", now=151.0, until=181.0)
        # Given up: free at once
        store.release(kept.endpoint_id, "b")
        assert store.lease(kept.endpoint_id, "a", now=152.0, until=182.0)

    def test_delivery_resumes_after_a_restart_and_one_process_delivers_at_a_time(
        self, open_process: Callable[[], Process], clock: FakeClock
    ) -> None:
        first = open_process()
        # Register an endpoint, then mint and revoke a key
        hook = first.webhooks.register(
            owner_id="u1",
            url="http://127.0.0.1:9/in",
            event_types=["Minted", "Revoked"],
            actor="user:u1",
        )
        minted = first.ledger.mint(
            owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
        )
        first.ledger.revoke(minted.record.key_id, actor="user:u1")
        first.ledger.mint(
            owner_id="u2",
            name="other",
            scopes=["books:read"],
            expires_in_days=None,
            actor="user:u2",
        )
        # The first process's pass: the endpoint fails
        first.answers = [500]
        first.deliverer.run_once()
        assert len(first.sent) == 1
        # Another process, meanwhile, may not deliver it: the first holds the lease
        second = open_process()
        clock.now += 10.0
        second.deliverer.run_once()
        assert second.sent == []
        # The first process stops (gives its leases up); a restarted one resumes
        first.deliverer.stop()
        restarted = open_process()
        restarted.deliverer.run_once()
        ids = [i for i, _ in restarted.sent]
        assert ids[0] == first.sent[0][0] and len(ids) == 2
        assert all(h["webhook-signature"].startswith("v1,") for _, h in restarted.sent)
        deliveries = restarted.webhooks.deliveries(hook.endpoint.endpoint_id, "u1")
        assert [(d.type, d.status) for d in deliveries] == [
            ("Revoked", DELIVERED),
            ("Minted", DELIVERED),
        ]
        assert deliveries[-1].attempts == 2
        # Nothing is queued or sent twice on later passes
        clock.now += 60.0
        restarted.deliverer.run_once()
        second.deliverer.run_once()
        assert len(restarted.sent) == 2 and second.sent == []


class TestMemory(WebhookContract):
    @pytest.fixture
    def database_url(self) -> str:
        return "memory:"


class TestSQLite(WebhookContract):
    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgres(WebhookContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url

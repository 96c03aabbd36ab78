"""The webhooks API in process, on the in-memory store, with the deliverer driven a pass at a
time and its sends recorded instead of made: registration (the secret shown once), the listing,
deliveries in store order with stable ids, retries with backoff, disabling after the window,
ExpiringSoon notices, and deletion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from standardwebhooks.webhooks import Webhook

from infra.settings import Settings
from infra.webhook_deliverer import WebhookDeliverer
from tests.api_support import ORIGIN, SAME_ORIGIN, SECRET, api_client, bearer, mint, signed_in_as

ALICE = signed_in_as("alice") | SAME_ORIGIN
URL = "http://127.0.0.1:9/hooks"
ALL = ["Minted", "ScopesSet", "Revoked", "Expired", "Rotated", "Suspended", "Resumed"]


class Receiver:
    """What the endpoint answers (a queue of status codes, then 200) and what it was sent."""

    def __init__(self) -> None:
        self.answers: list[int | None] = []
        self.received: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], **_: Any
    ) -> tuple[int | None, str]:
        self.received.append((url, body, headers))
        status = self.answers.pop(0) if self.answers else 200
        return status, "" if status is not None else "ConnectionRefusedError: refused"


class Clock:
    def __init__(self) -> None:
        # Now: receivers refuse a signature more than five minutes from their own clock.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> Iterator[TestClient[Any]]:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url=ORIGIN,
        webhooks_allow_http_loopback=True,
        webhook_interval=3600.0,  # the test drives each pass
        webhook_retry_window=600.0,
    )
    with api_client(settings, clock=clock) as c:
        yield c


@pytest.fixture
def receiver(client: TestClient[Any], clock: Clock) -> Receiver:
    found = Receiver()
    deliverer: WebhookDeliverer = client.app.state.webhook_deliverer
    deliverer.send = found
    deliverer.clock = clock
    deliverer.jitter = lambda: 0.0
    return found


def deliver(client: TestClient[Any]) -> None:
    client.app.state.webhook_deliverer.run_once()


def register(client: TestClient[Any], types: list[str] = ALL) -> dict[str, Any]:
    response = client.post(
        "/api/v1/webhooks", json={"url": URL, "event_types": types}, headers=ALICE
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_owner_registers_an_endpoint_and_sees_its_secret_once(
    client: TestClient[Any], receiver: Receiver
) -> None:
    # Register an endpoint
    registered = register(client)
    secret, hook = registered["secret"], registered["webhook"]
    assert secret.startswith("whsec_")
    assert hook["status"] == "enabled" and hook["url"] == URL and hook["event_types"] == ALL
    # The listing and the endpoint's page never show the secret
    listed = client.get("/api/v1/webhooks", headers=ALICE)
    shown = client.get(f"/api/v1/webhooks/{hook['id']}", headers=ALICE)
    assert [h["id"] for h in listed.json()["webhooks"]] == [hook["id"]]
    assert shown.json() == hook
    assert secret not in listed.text + shown.text
    # Another owner does not see it
    bob = signed_in_as("bob") | SAME_ORIGIN
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=bob).status_code == 404
    assert client.get("/api/v1/webhooks", headers=bob).json() == {"webhooks": []}
    # The audit trail's export shows the registration, and never the secret
    client.app.state.audit.catch_up()
    export = client.app.state.audit.rows_after(0, 100, "alice")
    assert [r.type for r in export] == ["WebhookRegistered"]
    assert export[0].event["url"] == URL and secret not in msgspec.json.encode(export).decode()


def test_the_audit_trail_shows_who_registered_and_deleted_an_endpoint(
    client: TestClient[Any], receiver: Receiver
) -> None:
    registered = register(client, ["Revoked"])
    secret, hook_id = registered["secret"], registered["webhook"]["id"]
    key = mint(client, scopes=["account:read"])
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers=ALICE).status_code == 204
    trail = client.get("/api/v1/audit?order=oldest", headers=ALICE)
    assert trail.status_code == 200 and secret not in trail.text
    events = trail.json()["events"]
    assert [e["type"] for e in events] == ["WebhookRegistered", "Minted", "WebhookDeleted"]
    registered_event, _, deleted = events
    assert registered_event["webhook_id"] == hook_id and "key_id" not in registered_event
    assert registered_event["url"] == URL and registered_event["event_types"] == ["Revoked"]
    assert registered_event["actor"] == "user:alice" and registered_event["actor_kind"] == "user"
    assert deleted["webhook_id"] == hook_id and deleted["position"] > events[1]["position"]
    # Filtered by type, alone; a token with account:read reads the same trail
    only = client.get("/api/v1/audit?type=WebhookRegistered", headers=bearer(key["token"]))
    assert [e["type"] for e in only.json()["events"]] == ["WebhookRegistered"]
    # Another owner sees none of it
    bob = signed_in_as("bob") | SAME_ORIGIN
    assert client.get("/api/v1/audit", headers=bob).json()["events"] == []


def test_registering_is_for_signed_in_sessions_only(client: TestClient[Any]) -> None:
    token = mint(client, scopes=["account:read"])["token"]
    body = {"url": URL, "event_types": ["Minted"]}
    assert client.post("/api/v1/webhooks", json=body, headers=bearer(token)).status_code == 403
    assert client.get("/api/v1/webhooks", headers=bearer(token)).status_code == 403
    assert client.post("/api/v1/webhooks", json=body).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://10.0.0.1/x", "event_types": ["Minted"]}, "url"),
        ({"url": "http://hooks.example.com/", "event_types": ["Minted"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/", "event_types": ["Minted"]}, "url"),
        ({"url": "https://hooks.example.com/", "event_types": ["Nope"]}, "event_types"),
        ({"url": "https://hooks.example.com/", "event_types": []}, "event_types"),
        ({"url": "https://hooks.example.com/", "event_types": ["Minted"], "x": 1}, None),
    ],
)
def test_bad_registrations_are_400s_naming_the_field(
    client: TestClient[Any], body: dict[str, Any], field: str | None
) -> None:
    response = client.post("/api/v1/webhooks", json=body, headers=ALICE)
    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["field"] == field


def test_events_are_delivered_signed_in_store_order_and_retried_with_backoff(
    client: TestClient[Any], receiver: Receiver, clock: Clock
) -> None:
    registered = register(client, ["Minted", "Revoked"])
    hook_id, secret = registered["webhook"]["id"], registered["secret"]
    # Mint two keys and revoke the first; re-scope the second (not asked for)
    first = mint(client, name="one")
    second = mint(client, name="two")
    client.delete(f"/api/v1/keys/{first['id']}", headers=ALICE)
    client.put(
        f"/api/v1/keys/{second['id']}/scopes", json={"scopes": ["books:write"]}, headers=ALICE
    )
    # The endpoint fails first: the first message is tried again later, the rest wait
    receiver.answers = [500]
    deliver(client)
    assert len(receiver.received) == 1
    deliveries = client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=ALICE).json()
    pending = deliveries["deliveries"][-1]
    assert pending["status"] == "pending" and pending["attempts"] == 1
    assert pending["last_status_code"] == 500
    assert pending["next_attempt_at"] is not None
    # Nothing is sent again before the backoff has passed
    deliver(client)
    assert len(receiver.received) == 1
    clock.now += 5.0
    deliver(client)
    # Then everything goes, in store order, each signed, the first one twice with one id
    types = [msgspec.json.decode(body)["type"] for _, body, _ in receiver.received]
    assert types == ["Minted", "Minted", "Minted", "Revoked"]
    ids = [headers["webhook-id"] for _, _, headers in receiver.received]
    assert ids[0] == ids[1] and len(set(ids)) == 3
    for _, body, headers in receiver.received:
        assert Webhook(secret).verify(body, headers)["type"] in {"Minted", "Revoked"}
    listed = client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=ALICE).json()
    assert [d["status"] for d in listed["deliveries"]] == ["delivered"] * 3
    assert [d["type"] for d in listed["deliveries"]] == ["Revoked", "Minted", "Minted"]
    assert listed["deliveries"][-1]["attempts"] == 2
    # The bodies are the audit trail's wire form
    revoked = msgspec.json.decode(receiver.received[-1][1])
    assert revoked["data"]["key_id"] == first["id"] and revoked["data"]["type"] == "Revoked"


def test_an_endpoint_failing_past_the_window_is_disabled_saying_why(
    client: TestClient[Any], receiver: Receiver, clock: Clock
) -> None:
    hook_id = register(client, ["Minted"])["webhook"]["id"]
    mint(client)
    receiver.answers = [None] * 1000
    # Tried with backoff until the window (600 s here) has passed
    for _ in range(20):
        deliver(client)
        clock.now += 60.0
    shown = client.get(f"/api/v1/webhooks/{hook_id}", headers=ALICE).json()
    assert shown["status"] == "disabled"
    assert "not delivered after" in shown["disabled_reason"]
    assert "ConnectionRefusedError" in shown["disabled_reason"]
    (failed,) = client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=ALICE).json()[
        "deliveries"
    ]
    assert failed["status"] == "failed" and failed["attempts"] == len(receiver.received)
    assert 5 <= failed["attempts"] <= 12
    # Nothing more is sent; the audit trail records why
    before = len(receiver.received)
    mint(client)
    clock.now += 3600
    deliver(client)
    assert len(receiver.received) == before
    client.app.state.audit.catch_up()
    rows = client.app.state.audit.rows_after(0, 100, "alice")
    assert "WebhookDisabled" in [r.type for r in rows]


def test_expiring_soon_is_sent_once_per_threshold_per_key(
    client: TestClient[Any], receiver: Receiver, clock: Clock
) -> None:
    register(client, ["ExpiringSoon"])
    key = mint(client, expires_in_days=10)
    mint(client, name="forever")
    # Ten days out: nothing
    deliver(client)
    assert receiver.received == []
    # Seven days before: one notice, however many passes
    clock.now += 3 * 86400 + 1
    deliver(client)
    deliver(client)
    # One day before: another
    clock.now += 6 * 86400
    deliver(client)
    deliver(client)
    notices = [msgspec.json.decode(body) for _, body, _ in receiver.received]
    assert [(n["type"], n["data"]["days"]) for n in notices] == [
        ("ExpiringSoon", 7),
        ("ExpiringSoon", 1),
    ]
    assert {n["data"]["key"]["id"] for n in notices} == {key["id"]}
    ids = [headers["webhook-id"] for _, _, headers in receiver.received]
    assert len(set(ids)) == 2


def test_a_deleted_endpoint_receives_nothing_more(
    client: TestClient[Any], receiver: Receiver
) -> None:
    hook_id = register(client, ["Minted"])["webhook"]["id"]
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers=ALICE).status_code == 204
    mint(client)
    deliver(client)
    assert receiver.received == []
    assert client.get(f"/api/v1/webhooks/{hook_id}", headers=ALICE).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers=ALICE).status_code == 404
    assert client.get("/api/v1/webhooks/not-an-id", headers=ALICE).status_code == 404


def test_the_window_runs_from_a_deliverys_first_try_not_from_when_it_was_queued(
    client: TestClient[Any], receiver: Receiver, clock: Clock
) -> None:
    hook_id = register(client, ["Minted"])["webhook"]["id"]
    mint(client, name="first")
    mint(client, name="second")
    # The first fails until its last try, at the end of its window (600 s here); the second
    # waits behind it, then fails its own first try
    receiver.answers = [503] * 7 + [200, 503]
    for _ in range(13):
        deliver(client)
        clock.now += 50.0
    assert len(receiver.received) == 9
    # Its own window has only begun: the endpoint is not disabled
    shown = client.get(f"/api/v1/webhooks/{hook_id}", headers=ALICE).json()
    assert shown["status"] == "enabled"
    deliveries = client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=ALICE).json()
    second, first = deliveries["deliveries"]
    assert (first["status"], first["attempts"]) == ("delivered", 8)
    assert (second["status"], second["attempts"]) == ("pending", 1)
    assert second["first_attempt_at"] > first["first_attempt_at"]

"""Webhooks on real server processes and a real HTTP receiver: deliveries signed (checked with
the `standardwebhooks` package), retried while the receiver fails, none lost across a restart of
the server mid-way (the receiver drops repeats by webhook-id), in store order; an endpoint that
fails past the retry window is disabled, and its owner sees why."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.test_event_stream import read_events

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# Loopback http for the receiver; quick passes and retries so that the journey is short.
WEBHOOK_ENV = {
    "ANTHRA_WEBHOOKS_ALLOW_HTTP_LOOPBACK": "1",
    "ANTHRA_WEBHOOK_INTERVAL": "0.1",
    "ANTHRA_WEBHOOK_FIRST_RETRY": "0.2",
}


class Receiver:
    """A threaded HTTP server taking webhook POSTs: it answers 500 until told to recover."""

    def __init__(self) -> None:
        self.healthy = False
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 204 if receiver.healthy else 500
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[tuple[dict[str, str], bytes, int]]:
        with self.lock:
            return list(self.requests)

    def accepted(self) -> dict[str, bytes]:
        """Each message accepted, once, by webhook-id: what a receiver that dedupes keeps."""
        kept: dict[str, bytes] = {}
        for headers, body, status in self.received():
            if status < 300:
                kept.setdefault(headers["webhook-id"], body)
        return kept

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def alice(secrets_seen: Secrets) -> dict[str, str]:
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    return {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"}


def until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Wait for a condition (not a timing assertion: the bound only ends a hung test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def register(url: str, alice: dict[str, str], secrets_seen: Secrets, hook_url: str) -> Any:
    answer = httpx.post(
        f"{url}/api/v1/webhooks",
        json={"url": hook_url, "event_types": ["Minted", "Revoked"]},
        headers=alice,
    )
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    secrets_seen.webhook_secrets.append(registered["secret"])
    return registered


def mint(url: str, alice: dict[str, str], secrets_seen: Secrets, name: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{url}/api/v1/keys", json={"name": name, "scopes": ["books:read"]}, headers=alice
    )
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    secrets_seen.tokens.append(key["token"])
    return key


def test_deliveries_survive_failures_and_a_restart_signed_and_in_order(
    postgres_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    alice: dict[str, str],
    receiver: Receiver,
) -> None:
    first = start_server(postgres_url, **WEBHOOK_ENV)
    # Register an endpoint; the receiver fails for now
    registered = register(first.url, alice, secrets_seen, receiver.url)
    hook_id, secret = registered["webhook"]["id"], registered["secret"]
    # Mint two keys and revoke one
    one = mint(first.url, alice, secrets_seen, "one")
    two = mint(first.url, alice, secrets_seen, "two")
    assert httpx.delete(f"{first.url}/api/v1/keys/{one['id']}", headers=alice).status_code == 200
    # The server tries, and is refused, again and again
    until(lambda: len(receiver.received()) >= 2, "two failed attempts")
    deliveries = httpx.get(f"{first.url}/api/v1/webhooks/{hook_id}/deliveries", headers=alice)
    oldest = deliveries.json()["deliveries"][-1]
    assert oldest["status"] == "pending" and oldest["last_status_code"] == 500
    # The server stops mid-way; another process on the same store takes over
    first.stop()
    second = start_server(postgres_url, **WEBHOOK_ENV)
    three = mint(second.url, alice, secrets_seen, "three")
    # The receiver recovers: everything arrives
    receiver.healthy = True
    expected = 4  # Minted one, Minted two, Revoked one, Minted three
    accepted = until(
        lambda: (found := receiver.accepted()) and len(found) >= expected and found,
        "every event accepted",
    )
    # Each body is signed with the endpoint's secret
    verifier = Webhook(secret)
    messages = []
    for headers, body, _ in receiver.received():
        messages.append((headers["webhook-id"], verifier.verify(body, headers)))
    # Nothing lost, nothing extra: the receiver keeps each message once
    assert len(accepted) == expected
    kept = [msgspec.json.decode(body) for body in accepted.values()]
    assert [(m["type"], m["data"]["key_id"]) for m in kept] == [
        ("Minted", one["id"]),
        ("Minted", two["id"]),
        ("Revoked", one["id"]),
        ("Minted", three["id"]),
    ]
    # In store order: the positions only rise
    positions = [m["data"]["position"] for m in kept]
    assert positions == sorted(positions)
    # The owner sees every delivery delivered, the first after several attempts
    shown = until(
        lambda: (
            (
                d := httpx.get(
                    f"{second.url}/api/v1/webhooks/{hook_id}/deliveries", headers=alice
                ).json()["deliveries"]
            )
            and all(x["status"] == "delivered" for x in d)
            and d
        ),
        "every delivery shown delivered",
    )
    assert len(shown) == expected and shown[-1]["attempts"] >= 3
    # The secret was shown once: never again, by either process
    for server in (second,):
        listed = httpx.get(f"{server.url}/api/v1/webhooks", headers=alice)
        assert secret not in listed.text and listed.json()["webhooks"][0]["status"] == "enabled"


def test_an_endpoint_failing_past_the_window_is_disabled_and_says_why(
    postgres_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    alice: dict[str, str],
    receiver: Receiver,
) -> None:
    server = start_server(postgres_url, **WEBHOOK_ENV, ANTHRA_WEBHOOK_RETRY_WINDOW="2")
    hook_id = register(server.url, alice, secrets_seen, receiver.url)["webhook"]["id"]
    mint(server.url, alice, secrets_seen, "one")
    # The receiver never recovers: once the window has passed, the endpoint is disabled
    shown = until(
        lambda: (
            (h := httpx.get(f"{server.url}/api/v1/webhooks/{hook_id}", headers=alice).json())[
                "status"
            ]
            == "disabled"
            and h
        ),
        "the endpoint disabled",
    )
    assert "answered 500" in shown["disabled_reason"]
    assert "not delivered after" in shown["disabled_reason"]
    (failed,) = httpx.get(
        f"{server.url}/api/v1/webhooks/{hook_id}/deliveries", headers=alice
    ).json()["deliveries"]
    assert failed["status"] == "failed" and failed["attempts"] >= 2
    # The metrics count the attempts by outcome, and time them
    seen = httpx.get(f"{server.url}/metrics").text
    assert 'anthra_webhook_attempts_total{outcome="retrying"}' in seen
    assert 'anthra_webhook_attempts_total{outcome="failed"} 1.0' in seen
    assert "anthra_webhook_attempt_seconds_count" in seen


def test_two_processes_deliver_each_event_once_between_them(
    postgres_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    alice: dict[str, str],
    receiver: Receiver,
) -> None:
    a, b = start_server(postgres_url, **WEBHOOK_ENV), start_server(postgres_url, **WEBHOOK_ENV)
    receiver.healthy = True
    registered = register(a.url, alice, secrets_seen, receiver.url)
    # Keys minted through both processes
    keys = [mint(server.url, alice, secrets_seen, f"k{i}") for i, server in enumerate([a, b] * 3)]
    accepted = until(
        lambda: (found := receiver.accepted()) and len(found) >= len(keys) and found,
        "every event accepted",
    )
    # One lease holder at a time: each event was sent once, in store order, signed
    sent = receiver.received()
    assert len(sent) == len(keys) == len(accepted)
    verifier = Webhook(registered["secret"])
    bodies = [verifier.verify(body, headers) for headers, body, _ in sent]
    assert [m["data"]["key_id"] for m in bodies] == [k["id"] for k in keys]
    # The owner's event stream shows the key events, not the endpoint's registration
    streamed = read_events(f"{b.url}/api/v1/events/stream?after=0", alice, len(keys))
    assert [e["event"] for e in streamed] == ["Minted"] * len(keys)

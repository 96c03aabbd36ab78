"""The lifecycle feed as Server-Sent Events, on real server processes: a client that disconnects
and resumes with Last-Event-ID misses nothing and sees nothing twice, from either process; a
stream opened with a token ends when the token is revoked; a client that stops reading is
dropped."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.integration.test_fuzzing_every_endpoint import NASTY_NUMBERS, NASTY_TEXT

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SERVICE_SECRET = "stream-verify-secret-0123456789abcdef0123456789"


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse an SSE stream into events (comments skipped)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":") or line.startswith("retry:"):
            continue
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def read_events(url: str, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    """Open the stream, take `count` events, hang up."""
    taken: list[dict[str, str]] = []
    with httpx.stream("GET", url, headers=headers, timeout=10) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-store"
        for event in sse_events(answer.iter_lines()):
            if "id" not in event:
                continue
            taken.append(event)
            if len(taken) == count:
                break
    return taken


@pytest.fixture
def alice(secrets_seen: Secrets) -> dict[str, str]:
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    return {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"}


def mint(url: str, alice: dict[str, str], secrets_seen: Secrets, name: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{url}/api/v1/keys", json={"name": name, "scopes": ["account:read"]}, headers=alice
    )
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    secrets_seen.tokens.append(key["token"])
    return key


def test_a_client_resumes_with_last_event_id_and_misses_nothing(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a, b = start_server(postgres_url), start_server(postgres_url)
    keys = [mint(a.url, alice, secrets_seen, f"k{i}") for i in range(3)]
    bob = session_cookie("bob")
    secrets_seen.cookies.append(bob)
    httpx.post(
        f"{a.url}/api/v1/keys",
        json={"name": "bob's", "scopes": ["books:read"]},
        headers={"Cookie": f"{COOKIE}={bob}", "Sec-Fetch-Site": "same-origin"},
    )
    # From the start: the first two events, then the client goes away
    first = read_events(f"{a.url}/api/v1/events/stream?after=0", alice, 2)
    assert [e["event"] for e in first] == ["Minted", "Minted"]
    # More happens while it is away
    httpx.delete(f"{a.url}/api/v1/keys/{keys[0]['id']}", headers=alice)
    # It resumes on the other process with the last id it saw
    rest = read_events(
        f"{b.url}/api/v1/events/stream", alice | {"Last-Event-ID": first[-1]["id"]}, 2
    )
    seen = first + rest
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(set(ids)), "an event was repeated or out of order"
    assert [e["event"] for e in seen] == ["Minted", "Minted", "Minted", "Revoked"]
    assert "bob" not in "".join(e["data"] for e in seen)
    for event in seen:
        for key in keys:
            assert key["token"] not in event["data"]


def test_a_live_stream_sees_new_events_and_ends_when_its_token_is_revoked(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a, b = start_server(postgres_url), start_server(postgres_url)
    reader = mint(a.url, alice, secrets_seen, "feed reader")
    bearer = {"Authorization": f"Bearer {reader['token']}"}
    deadline = time.monotonic() + 1
    while httpx.get(f"{b.url}/api/v1/account/whoami", headers=bearer).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    seen: list[dict[str, str]] = []
    with httpx.stream("GET", f"{b.url}/api/v1/events/stream", headers=bearer, timeout=10) as feed:
        assert feed.status_code == 200
        lines = feed.iter_lines()
        mint(a.url, alice, secrets_seen, "made while streaming")
        for event in sse_events(lines):
            seen.append(event)
            if event.get("event") == "Minted":
                # Now the reader's own token is revoked, on the other process
                httpx.delete(f"{a.url}/api/v1/keys/{reader['id']}", headers=alice)
            if event.get("event") == "end":
                break
    # The stream ends once the process knows of the revocation; whether the Revoked event itself
    # was read from the store first is a race between the two, and either is right
    assert [e.get("event") for e in seen] in (["Minted", "end"], ["Minted", "Revoked", "end"])
    assert httpx.get(f"{b.url}/api/v1/events/stream", headers=bearer).status_code == 401


def opened(url: str, headers: dict[str, str], params: dict[str, str]) -> tuple[int, str, bytes]:
    """Status, content type and (for a refusal) body of a stream request; a stream that opens is
    closed at once."""
    with httpx.stream("GET", url, headers=headers, params=params, timeout=10) as answer:
        body = answer.read() if answer.status_code != 200 else b""
        return answer.status_code, answer.headers["content-type"], body


def test_bad_positions_are_refused_before_the_stream_starts(
    postgres_url: str, start_server: StartServer, alice: dict[str, str]
) -> None:
    a = start_server(postgres_url, ANTHRA_VERIFY_SECRET=SERVICE_SECRET)
    service = {"Authorization": f"Bearer {SERVICE_SECRET}"}
    streams = [(f"{a.url}/api/v1/events/stream", alice), (f"{a.url}/v1/events/stream", service)]
    for value, (url, credentials) in itertools.product([*NASTY_TEXT, *NASTY_NUMBERS], streams):
        answers = [opened(url, credentials, {"after": value})]
        if value.isascii() and value.isprintable() and value == value.strip() and len(value) < 4000:
            answers.append(opened(url, credentials | {"Last-Event-ID": value}, {}))
        for status, content_type, body in answers:
            if status == 200:
                assert content_type.startswith("text/event-stream")
                continue  # a value that is a position after all
            assert 400 <= status < 500, (value, body)
            assert content_type.startswith("application/json"), (value, body)


def test_services_follow_every_owners_lifecycle_with_the_verify_secret(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a = start_server(postgres_url, ANTHRA_VERIFY_SECRET=SERVICE_SECRET)
    b = start_server(postgres_url, ANTHRA_VERIFY_SECRET=SERVICE_SECRET)
    service = {"Authorization": f"Bearer {SERVICE_SECRET}"}
    stream = f"{a.url}/v1/events/stream"
    first = mint(a.url, alice, secrets_seen, "first")

    # From the present: `open` names the position it starts after, then heartbeats and events
    with httpx.stream("GET", stream, headers=service, timeout=10) as answer:
        assert answer.status_code == 200
        assert answer.headers["x-accel-buffering"] == "no"
        lines = answer.iter_lines()
        opened = next(sse_events(lines))
        assert opened["event"] == "open"
        start = int(opened["id"])
        assert opened["data"] == f'{{"position":{start}}}'
        heartbeats = 0
        for line in lines:
            if line == ": heartbeat":
                heartbeats += 1
                if heartbeats == 3:
                    break
    # Every owner's events, each with no more than a cache needs
    bob = session_cookie("bob")
    secrets_seen.cookies.append(bob)
    bobs = mint(
        b.url, {"Cookie": f"{COOKIE}={bob}", "Sec-Fetch-Site": "same-origin"}, secrets_seen, "b"
    )
    assert httpx.delete(f"{b.url}/api/v1/keys/{first['id']}", headers=alice).status_code == 200
    opening, *events = read_events(stream, service | {"Last-Event-ID": str(start)}, 3)
    assert (opening["event"], opening["id"]) == ("open", str(start))
    assert [e["event"] for e in events] == ["Minted", "Revoked"]
    minted, revoked = (httpx.Response(200, content=e["data"]).json() for e in events)
    assert minted["key_id"] == bobs["id"] and revoked["key_id"] == first["id"]
    assert set(revoked) == {"type", "key_id", "position", "at"}
    assert int(events[1]["id"]) == revoked["position"] > int(events[0]["id"]) > start
    # Resumed after the revocation, on the other process: nothing twice
    resumed = read_events(
        f"{b.url}/v1/events/stream", service | {"Last-Event-ID": events[0]["id"]}, 2
    )
    assert [(e["event"], e["id"]) for e in resumed] == [
        ("open", events[0]["id"]),
        ("Revoked", events[1]["id"]),
    ]

    # A verify answer to a service says the position it reflects, at least the revocation's
    verified = httpx.post(
        f"{a.url}/v1/verify", json={"token": first["token"]}, headers=service
    ).json()
    assert verified["valid"] is False
    live = httpx.post(f"{b.url}/v1/verify", json={"token": bobs["token"]}, headers=service).json()
    assert live["valid"] is True and live["position"] >= revoked["position"]

    # Without the secret, with a wrong one, or a token: 401; a ledger with no secret: 401
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {bobs['token']}"},
    ):
        refused = httpx.get(stream, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith('Bearer realm="anthra"')
    open_ledger = start_server(postgres_url)
    refused = httpx.get(f"{open_ledger.url}/v1/events/stream", headers=service)
    assert refused.status_code == 401
    assert "no verify secret is configured" in refused.json()["error_description"]


def test_one_account_cannot_take_every_stream_and_a_closed_one_frees_its_place(
    postgres_url: str, start_server: StartServer, alice: dict[str, str], secrets_seen: Secrets
) -> None:
    from api.event_stream import MAX_STREAMS_PER_OWNER

    a = start_server(postgres_url)
    url = f"{a.url}/api/v1/events/stream"
    bob_cookie = session_cookie("bob")
    secrets_seen.cookies.append(bob_cookie)
    bob = {"Cookie": f"{COOKIE}={bob_cookie}", "Sec-Fetch-Site": "same-origin"}
    with contextlib.ExitStack() as held:
        for _ in range(MAX_STREAMS_PER_OWNER):
            answer = held.enter_context(httpx.stream("GET", url, headers=alice, timeout=10))
            assert answer.status_code == 200
        # A stream counts from its first byte on, just after its headers
        deadline = time.monotonic() + 5
        while (status := opened(url, alice, {}))[0] == 200:
            assert time.monotonic() < deadline, "the account's streams were never capped"
        refused = httpx.get(url, headers=alice, timeout=10)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert "event streams open" in refused.json()["error_description"]
        # Another account still gets its own
        with httpx.stream("GET", url, headers=bob, timeout=10) as answer:
            assert answer.status_code == 200
    # Closed: the places are free again (the server notices a hang-up within a poll)
    deadline = time.monotonic() + 5
    while (status := opened(url, alice, {})[0]) == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200

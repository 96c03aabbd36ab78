"""`anthra_keys_client.asgi.TokenVerifier` against a fake ledger: what reaches the app, the
challenges it answers, what it caches and what drops a cached answer, and that it fails closed
when the lifecycle feed or the ledger is gone."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from anthra_keys_client.asgi import STATE_KEY, Identity, TokenVerifier, identity_of

from domain import token as token_format

pytestmark = pytest.mark.anyio

SECRET = "unit-verify-secret-0123456789abcdef"
PUBLIC_URL = "https://books.example"
METADATA = f"{PUBLIC_URL}/.well-known/oauth-protected-resource"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeLedger:
    """`POST /v1/verify` answering from `keys` (token → answer), and `GET /v1/events/stream`
    whose messages the test sends with `send`; each request is recorded."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.position = 10
        self.verify_calls: list[httpx.Request] = []
        self.feed_calls: list[httpx.Request] = []
        self.feed: asyncio.Queue[bytes | None] | None = None
        self.feed_opened = asyncio.Event()
        self.fail: Callable[[httpx.Request], httpx.Response] | None = None

    def key(self, token: str, *scopes: str, **fields: Any) -> str:
        key_id = f"key-{len(self.keys)}"
        self.keys[token] = {
            "valid": True,
            "code": "valid",
            "key_id": key_id,
            "owner_id": "alice",
            "scopes": list(scopes),
            "expires_at": None,
        } | fields
        return key_id

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.fail is not None:
            return self.fail(request)
        if request.url.path == "/v1/verify":
            self.verify_calls.append(request)
            token = json.loads(request.content)["token"]
            answer = self.keys.get(token, {"valid": False, "code": "invalid_token"})
            return httpx.Response(200, json=answer | {"position": self.position})
        if request.url.path == "/v1/events/stream":
            self.feed_calls.append(request)
            self.feed = asyncio.Queue()
            self.feed_opened.set()
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._stream(self.feed)
            )
        return httpx.Response(404)

    async def _stream(self, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        while True:
            chunk = await queue.get()
            if chunk is None:
                return
            yield chunk

    async def send(self, event: str = "", **data: Any) -> None:
        """One feed message (a heartbeat without `event`), handled before this returns."""
        assert self.feed is not None
        if event:
            position = data.setdefault("position", self.position)
            self.feed.put_nowait(
                f"id: {position}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()
            )
        else:
            self.feed.put_nowait(b": heartbeat\n\n")
        await settle()

    async def end_feed(self) -> None:
        assert self.feed is not None
        self.feed_opened.clear()
        self.feed.put_nowait(None)
        await settle()


async def settle() -> None:
    """Let the feed task take what was sent."""
    for _ in range(20):
        await asyncio.sleep(0)


Seen = list[dict[str, Any]]


def host_app(seen: Seen) -> Callable[..., Awaitable[None]]:
    """The service's own app: records the scope it was called with, answers 200."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


class Service:
    def __init__(self, ledger: FakeLedger, **options: Any) -> None:
        self.ledger = ledger
        self.seen: Seen = []
        options = {
            "ledger_url": "http://ledger.internal",
            "verify_secret": SECRET,
            "public_url": PUBLIC_URL,
            "scopes": {"/books": ["books:read"], "/books/new": ["books:write"]},
            "protect": ["/books", "/me"],
            "staleness_budget": 60.0,
            "transport": httpx.MockTransport(ledger.handle),
        } | options
        self.verifier = TokenVerifier(host_app(self.seen), **options)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.verifier),
            base_url=PUBLIC_URL,
        )

    async def start(self, live: bool = True) -> None:
        await self.verifier.start()
        await self.ledger.feed_opened.wait()
        if live:
            await self.ledger.send("open", position=self.ledger.position)
            assert self.verifier.feed_fresh

    async def get(self, path: str, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.http.get(path, headers=headers)

    async def stop(self) -> None:
        await self.verifier.stop()
        await self.http.aclose()


@pytest.fixture
async def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
async def service(ledger: FakeLedger) -> AsyncIterator[Service]:
    made = Service(ledger)
    await made.start()
    yield made
    await made.stop()


# What reaches the app, and the refusals


async def test_a_verified_token_reaches_the_app_as_its_identity(
    service: Service, ledger: FakeLedger
) -> None:
    token = token_format.generate()
    key_id = ledger.key(token, "books:read")
    answer = await service.get("/books", token)
    assert answer.status_code == 200
    expected = Identity(key_id=key_id, owner_id="alice", scopes=("books:read",))
    scope = service.seen[-1]
    assert scope["user"] == scope["auth"] == scope["state"][STATE_KEY] == expected
    assert identity_of(scope) == expected
    assert expected.is_authenticated and expected.allows("books:read")
    assert not expected.allows("books:read", "books:write")
    # The ledger was asked with the verify secret, the token in the body and nowhere else
    asked = ledger.verify_calls[-1]
    assert asked.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(asked.content) == {"token": token}
    assert token not in str(asked.url)


async def test_no_token_is_a_401_challenge_naming_the_services_metadata(service: Service) -> None:
    answer = await service.get("/books")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="anthra", resource_metadata="{METADATA}"'
    )
    assert answer.json() == {
        "error": "unauthorized",
        "error_description": "authentication required: send Authorization: Bearer <token>",
    }
    assert answer.headers["cache-control"] == "no-store"


async def test_the_service_serves_its_rfc_9728_metadata(service: Service) -> None:
    answer = await service.get("/.well-known/oauth-protected-resource")
    assert answer.status_code == 200
    assert answer.json() == {
        "resource": PUBLIC_URL,
        "authorization_servers": ["http://ledger.internal"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["books:read", "books:write"],
    }


async def test_challenges_can_point_at_metadata_served_elsewhere(ledger: FakeLedger) -> None:
    elsewhere = "https://auth.example/.well-known/oauth-protected-resource/books"
    service = Service(ledger, public_url="", resource_metadata_url=elsewhere)
    await service.start()
    answer = await service.get("/books")
    assert answer.headers["www-authenticate"].endswith(f'resource_metadata="{elsewhere}"')
    assert (await service.get("/.well-known/oauth-protected-resource")).status_code == 200
    assert service.seen[-1]["path"] == "/.well-known/oauth-protected-resource"  # the app's own
    await service.stop()


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two words", "bearer"],
)
async def test_a_malformed_authorization_is_a_400(service: Service, authorization: str) -> None:
    answer = await service.get("/books", Authorization=authorization)
    assert answer.status_code == 400
    assert 'error="invalid_request"' in answer.headers["www-authenticate"]


async def test_an_unknown_token_is_a_401_invalid_token(
    service: Service, ledger: FakeLedger
) -> None:
    answer = await service.get("/books", token_format.generate())
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="anthra", error="invalid_token", '
        'error_description="the access token is invalid, revoked or expired", '
        f'resource_metadata="{METADATA}"'
    )
    assert service.seen == []


async def test_a_missing_scope_is_a_403_naming_it_by_the_longest_prefix(
    service: Service, ledger: FakeLedger
) -> None:
    token = token_format.generate()
    ledger.key(token, "books:read")
    assert (await service.get("/books/42", token)).status_code == 200
    refused = await service.get("/books/new", token)
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="books:write"' in challenge
    assert f'resource_metadata="{METADATA}"' in challenge
    # Any valid token on a protected path with no scopes; segments, not characters, count
    assert (await service.get("/me", token)).status_code == 200
    assert (await service.get("/bookshelf")).status_code == 200  # not protected
    assert (await service.get("/books")).status_code == 401


# The cache and the feed


async def test_answers_are_cached_while_the_feed_is_live(
    service: Service, ledger: FakeLedger
) -> None:
    token = token_format.generate()
    ledger.key(token, "books:read")
    for _ in range(5):
        assert (await service.get("/books", token)).status_code == 200
        await ledger.send()  # heartbeats
    assert len(ledger.verify_calls) == 1


@pytest.mark.parametrize(
    "event", ["Revoked", "Expired", "ScopesSet", "Suspended", "Resumed", "Rotated"]
)
async def test_a_lifecycle_event_drops_its_keys_answer_at_once(
    service: Service, ledger: FakeLedger, event: str
) -> None:
    token, other = token_format.generate(), token_format.generate()
    key_id = ledger.key(token, "books:read")
    ledger.key(other, "books:read")
    assert (await service.get("/books", token)).status_code == 200
    assert (await service.get("/books", other)).status_code == 200
    ledger.keys[token] = {"valid": False, "code": "invalid_token"}
    ledger.position += 1
    await ledger.send(event, key_id=key_id, type=event, at="2026-12-02T09:00:00Z")
    assert (await service.get("/books", token)).status_code == 401
    assert (await service.get("/books", other)).status_code == 200
    assert len(ledger.verify_calls) == 3  # the other key's answer was kept


async def test_minted_drops_nothing_and_a_policy_change_drops_everything(
    service: Service, ledger: FakeLedger
) -> None:
    tokens = [token_format.generate() for _ in range(2)]
    key_ids = [ledger.key(token, "books:read") for token in tokens]
    for token in tokens:
        await service.get("/books", token)
    await ledger.send("Minted", key_id=key_ids[0], position=ledger.position + 1)
    for token in tokens:
        await service.get("/books", token)
    assert len(ledger.verify_calls) == 2
    ledger.position += 2
    await ledger.send("PolicyChanged")
    for token in tokens:
        await service.get("/books", token)
    assert len(ledger.verify_calls) == 4


async def test_an_answer_older_than_an_announced_event_is_not_kept(
    service: Service, ledger: FakeLedger
) -> None:
    # The feed announced the key's suspension (position 20) before the ledger the service asked
    # had applied it: that answer (position 10) is used once, never kept.
    token = token_format.generate()
    key_id = ledger.key(token, "books:read")
    await ledger.send("Suspended", key_id=key_id, position=20)
    for _ in range(3):
        assert (await service.get("/books", token)).status_code == 200
    assert len(ledger.verify_calls) == 3
    ledger.position = 20
    for _ in range(3):
        await service.get("/books", token)
    assert len(ledger.verify_calls) == 4


async def test_an_answer_is_never_kept_past_the_keys_expiry_or_grace(
    service: Service, ledger: FakeLedger
) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expiring, retiring = token_format.generate(), token_format.generate()
    ledger.key(expiring, "books:read", expires_at=past)
    ledger.key(retiring, "books:read", retires_at=past)
    for _ in range(2):
        await service.get("/books", expiring)
        await service.get("/books", retiring)
    assert len(ledger.verify_calls) == 4


async def test_the_cache_is_bounded(ledger: FakeLedger) -> None:
    service = Service(ledger, cache_size=2)
    await service.start()
    tokens = [token_format.generate() for _ in range(3)]
    for token in tokens:
        ledger.key(token, "books:read")
        await service.get("/books", token)
    await service.get("/books", tokens[2])
    await service.get("/books", tokens[1])
    assert len(ledger.verify_calls) == 3
    await service.get("/books", tokens[0])  # the least recently used was let go
    assert len(ledger.verify_calls) == 4
    await service.stop()


# Fail closed


async def test_while_the_feed_is_down_every_request_is_verified_by_the_ledger(
    service: Service, ledger: FakeLedger
) -> None:
    token = token_format.generate()
    ledger.key(token, "books:read")
    await service.get("/books", token)
    await ledger.end_feed()
    assert not service.verifier.feed_fresh
    await service.get("/books", token)
    await service.get("/books", token)
    assert len(ledger.verify_calls) == 3


async def test_a_feed_silent_past_the_budget_is_not_trusted(ledger: FakeLedger) -> None:
    service = Service(ledger, staleness_budget=0.05)
    await service.start()
    token = token_format.generate()
    ledger.key(token, "books:read")
    await service.get("/books", token)
    await asyncio.sleep(0.1)  # no heartbeat for twice the budget
    assert not service.verifier.feed_fresh
    await service.get("/books", token)
    assert len(ledger.verify_calls) == 2
    await service.stop()


async def test_the_feed_reconnects_after_the_last_event_it_saw(
    service: Service, ledger: FakeLedger
) -> None:
    assert "last-event-id" not in ledger.feed_calls[0].headers
    await ledger.send("Revoked", key_id="key-9", position=17)
    await ledger.end_feed()
    await asyncio.wait_for(ledger.feed_opened.wait(), timeout=30)
    assert ledger.feed_calls[-1].headers["last-event-id"] == "17"
    assert ledger.feed_calls[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_an_unreachable_ledger_is_a_503_with_retry_after_never_a_pass(
    service: Service, ledger: FakeLedger
) -> None:
    token = token_format.generate()
    ledger.key(token, "books:read")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    await ledger.end_feed()
    ledger.fail = unreachable
    answer = await service.get("/books", token)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "temporarily_unavailable"
    assert service.seen == []


@pytest.mark.parametrize(("status", "retry_after"), [(503, "3"), (401, None), (500, None)])
async def test_a_ledger_that_cannot_vouch_is_a_503(
    service: Service,
    ledger: FakeLedger,
    status: int,
    retry_after: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {"retry-after": retry_after} if retry_after else {}
    ledger.fail = lambda request: httpx.Response(status, headers=headers, json={})
    token = token_format.generate()
    answer = await service.get("/books", token)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == (retry_after or "1")
    assert service.seen == []
    if status == 401:
        assert "refused the verify secret" in caplog.text


async def test_a_ledger_answering_as_to_anyone_is_a_503(
    service: Service, ledger: FakeLedger, caplog: pytest.LogCaptureFixture
) -> None:
    # A ledger without a verify secret answers `valid` and `code` only: it cannot say whose.
    ledger.fail = lambda request: httpx.Response(200, json={"valid": True, "code": "valid"})
    answer = await service.get("/books", token_format.generate())
    assert answer.status_code == 503
    assert "is ANTHRA_VERIFY_SECRET set there?" in caplog.text
    assert service.seen == []


async def test_a_websocket_without_a_valid_token_is_closed(service: Service) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/books", "headers": []}
    await service.verifier(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_the_lifespan_starts_and_stops_the_feed(ledger: FakeLedger) -> None:
    seen: Seen = []
    verifier = TokenVerifier(
        host_app(seen),
        ledger_url="http://ledger.internal",
        verify_secret=SECRET,
        transport=httpx.MockTransport(ledger.handle),
    )
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    messages.put_nowait({"type": "lifespan.startup"})
    running = asyncio.create_task(verifier({"type": "lifespan"}, messages.get, send))
    await asyncio.wait_for(ledger.feed_opened.wait(), timeout=30)
    assert sent == ["lifespan.startup.complete"]
    messages.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(running, timeout=30)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not verifier.feed_fresh


def test_it_needs_a_verify_secret() -> None:
    with pytest.raises(ValueError, match="verify secret"):
        TokenVerifier(host_app([]), ledger_url="http://ledger.internal", verify_secret="")


async def test_nothing_it_logs_holds_the_token_or_the_secret(
    ledger: FakeLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = Service(ledger)
    await service.start()
    token = token_format.generate()
    ledger.key(token, "books:read")
    await service.get("/books", token)
    await ledger.end_feed()
    ledger.fail = lambda request: httpx.Response(401, json={})
    await service.get("/books", token)
    await service.stop()
    assert caplog.text
    assert token[:13] not in caplog.text
    assert SECRET[:13] not in caplog.text

"""Verifying the ledger's tokens inside another Python service: an ASGI middleware.

`TokenVerifier` wraps any ASGI app (Litestar, FastAPI, Starlette…). It reads
`Authorization: Bearer <token>`, asks the ledger's `POST /v1/verify` with the verify secret, and
keeps valid answers in process — bounded in number, never past the key's expiry (or the end of
a rotated key's grace), and dropped the moment the ledger's lifecycle feed
(`GET /v1/events/stream`) announces that the key was revoked, suspended, expired, rotated or
rescoped, or that the lifetime policy changed. When the feed has not been heard from (an event
or a heartbeat) for longer than the staleness budget, cached answers are not used: every
request is verified by the ledger, and when the ledger cannot answer the request is refused
with 503 and Retry-After — never let through.

The verified caller, an `Identity` (key id, owner id, scopes, expiry; never the token), is put
where frameworks look: `scope["user"]` (Litestar's and Starlette's `request.user`),
`scope["auth"]` (Starlette's `request.auth.scopes`, read by its `requires`) and
`scope["state"]["anthra_identity"]` (`request.state.anthra_identity`). Refusals are RFC 6750
challenges whose `resource_metadata` is the host service's own RFC 9728 metadata, which the
middleware serves at `/.well-known/oauth-protected-resource` when given the host's public URL.
It counts nothing itself: the ledger records use as it verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from anthra_keys_client.client import USER_AGENT, _Bearer
from anthra_keys_client.retrying import retry_after_of
from anthra_keys_client.schemas import VerifyRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METADATA_PATH = "/.well-known/oauth-protected-resource"
FEED_PATH = "/v1/events/stream"
VERIFY_PATH = "/v1/verify"
STATE_KEY = "anthra_identity"
REALM = 'Bearer realm="anthra"'
# Events after which a cached answer for the key may be wrong. Minted and unknown types change
# nothing a cache holds.
DROPS_KEY = frozenset({"Revoked", "Expired", "ScopesSet", "Suspended", "Resumed", "Rotated"})
POLICY_CHANGED = "PolicyChanged"
# How many keys' latest event positions are remembered (see `_watermark`).
_TOUCHED_KEYS = 10_000

log = logging.getLogger("anthra_keys_client.asgi")


class Identity(msgspec.Struct, frozen=True):
    """Whom a verified token acts for, and what it may do. Never holds the token."""

    key_id: str
    owner_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None = None

    @property
    def is_authenticated(self) -> bool:
        """Starlette's `BaseUser` convention: a verified token is an authenticated caller."""
        return True

    @property
    def display_name(self) -> str:
        return self.owner_id

    @property
    def identity(self) -> str:
        return self.key_id

    def missing(self, *scopes: str) -> tuple[str, ...]:
        """The scopes among `scopes` the token does not hold."""
        return tuple(s for s in scopes if s not in self.scopes)

    def allows(self, *scopes: str) -> bool:
        """Whether the token holds every one of `scopes`."""
        return not self.missing(*scopes)


def identity_of(scope: Mapping[str, Any]) -> Identity | None:
    """The request's verified caller, as the middleware left it; None on unprotected paths."""
    state = scope.get("state") or {}
    found = state.get(STATE_KEY) if isinstance(state, Mapping) else None
    return found if isinstance(found, Identity) else None


class Problem(Exception):
    """A refusal, answered with its challenge: never a way through."""

    def __init__(
        self,
        status: int,
        error: str | None,
        description: str,
        *,
        body_error: str | None = None,
        scope: Sequence[str] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.body_error = body_error or error or "unauthorized"
        self.scope = tuple(scope)
        self.retry_after = retry_after

    def headers(self, resource_metadata: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        if self.status in (401, 403) or self.error == "invalid_request":
            parts = [REALM]
            if self.error:
                parts.append(f'error="{self.error}"')
                parts.append(f'error_description="{self.description}"')
            if self.scope:
                parts.append(f'scope="{" ".join(self.scope)}"')
            if resource_metadata and self.status in (401, 403):
                parts.append(f'resource_metadata="{resource_metadata}"')
            headers.append((b"www-authenticate", ", ".join(parts).encode("latin-1")))
        return headers

    def body(self) -> bytes:
        return msgspec.json.encode(
            {"error": self.body_error, "error_description": self.description}
        )


def _unavailable(description: str, retry_after: int = 1) -> Problem:
    return Problem(
        503, None, description, body_error="temporarily_unavailable", retry_after=retry_after
    )


NO_CREDENTIALS = "authentication required: send Authorization: Bearer <token>"
INVALID_TOKEN = "the access token is invalid, revoked or expired"  # noqa: S105 (words, no secret)


class _Answer(msgspec.Struct, frozen=True):
    """The ledger's verify answer to a service, as far as the middleware reads it."""

    valid: bool
    code: str
    key_id: str | None = None
    owner_id: str | None = None
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    retires_at: datetime | None = None
    position: int = -1


class _Event(msgspec.Struct, frozen=True):
    type: str = ""
    position: int = -1
    key_id: str | None = None


_decode_answer = msgspec.json.Decoder(_Answer).decode
_decode_event = msgspec.json.Decoder(_Event).decode


class _Cached:
    __slots__ = ("identity", "until")

    def __init__(self, identity: Identity, until: float) -> None:
        self.identity = identity
        self.until = until


class TokenVerifier:
    """ASGI middleware: every request under `protect` needs a token the ledger vouches for.

    - `ledger_url`: the ledger's base URL; `verify_secret`: its ANTHRA_VERIFY_SECRET.
    - `public_url`: where this service is reached; with it, the middleware serves RFC 9728
      metadata at `/.well-known/oauth-protected-resource` (naming `authorization_servers`, the
      ledger by default) and its challenges point there; `resource_metadata_url` points them
      elsewhere instead.
    - `protect`: path prefixes that need a token (by whole segments; default everything);
      `scopes`: path prefix → scopes a token needs there (the longest matching prefix counts).
    - `staleness_budget`: how long (seconds) the lifecycle feed may be silent before cached
      answers stop being used; `cache_size`: how many answers are kept; `max_age`: how long
      one is kept at most; `timeout`: for each call to the ledger; `transport`: httpx's,
      for TLS settings, proxies or tests.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ledger_url: str,
        verify_secret: str,
        public_url: str = "",
        resource_metadata_url: str = "",
        authorization_servers: Sequence[str] | None = None,
        protect: Iterable[str] = ("/",),
        scopes: Mapping[str, Iterable[str]] | None = None,
        staleness_budget: float = 1.0,
        cache_size: int = 10_000,
        max_age: float = 300.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not verify_secret:
            raise ValueError("a verify secret is needed: the ledger's ANTHRA_VERIFY_SECRET")
        if staleness_budget <= 0 or cache_size < 0 or max_age < 0:
            raise ValueError("staleness_budget must be positive, cache_size and max_age not less")
        self.app = app
        self.ledger_url = ledger_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.metadata_url = resource_metadata_url or (
            f"{self.public_url}{METADATA_PATH}" if self.public_url else ""
        )
        self.authorization_servers = list(
            authorization_servers if authorization_servers is not None else [self.ledger_url]
        )
        self.protect = tuple(protect)
        self.scopes = {prefix: tuple(needed) for prefix, needed in (scopes or {}).items()}
        self.staleness_budget = staleness_budget
        self.cache_size = cache_size
        self.max_age = max_age
        self.timeout = timeout
        self._transport = transport
        self._auth = _Bearer(verify_secret, "verify secret")
        self._http: httpx.AsyncClient | None = None
        self._feed_task: asyncio.Task[None] | None = None
        # token sha256 → answer; key id → token sha256 (to drop a key's answer)
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._by_key: dict[str, bytes] = {}
        # The feed: when it was last heard from, whether it is connected, where it is.
        self._connected = False
        self._heard_at = -math.inf
        self._last_event_id: int | None = None
        # An answer is cached only if it reflects every event the feed announced for its key:
        # its position at least the key's last event's (or, for keys not remembered, `_floor`).
        self._touched: OrderedDict[str, int] = OrderedDict()
        self._floor = 0
        # Bumped whenever the cache is emptied: an answer asked for before then is not kept.
        self._epoch = 0

    def __repr__(self) -> str:
        return f"TokenVerifier(ledger_url={self.ledger_url!r}, verify_secret=<hidden>)"

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._feed_task is None:
            # Served without lifespan events: the feed starts with the first request.
            await self.start()
        path: str = scope["path"]
        if (
            kind == "http"
            and path == METADATA_PATH
            and self.public_url
            and scope.get("method") in ("GET", "HEAD")
        ):
            await self._send_metadata(scope, send)
            return
        if not _under(path, self.protect):
            await self.app(scope, receive, send)
            return
        try:
            identity = await self.authenticate(_authorization(scope))
            needed = self.scopes_for(path)
            missing = identity.missing(*needed)
            if missing:
                raise Problem(
                    403,
                    "insufficient_scope",
                    f"the token lacks the scope this request needs: {' '.join(missing)}",
                    scope=missing,
                )
        except Problem as problem:
            await self._refuse(scope, send, problem)
            return
        scope["user"] = identity
        scope["auth"] = identity
        state = scope.setdefault("state", {})
        state[STATE_KEY] = identity
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
            return message

        return wrapped

    async def start(self) -> None:
        """Open the connection pool and follow the ledger's lifecycle feed (on startup)."""
        if self._feed_task is not None:
            return
        self._http = httpx.AsyncClient(
            base_url=self.ledger_url,
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=self._transport,
        )
        self._feed_task = asyncio.get_running_loop().create_task(self._follow_feed())

    async def stop(self) -> None:
        """Stop following the feed and close the connections (on shutdown)."""
        task, self._feed_task = self._feed_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lost()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the verifier is not started")
        return self._http

    # Verifying

    @property
    def feed_fresh(self) -> bool:
        """Whether the feed was heard from within the staleness budget."""
        return self._connected and time.monotonic() - self._heard_at <= self.staleness_budget

    def scopes_for(self, path: str) -> tuple[str, ...]:
        """The scopes a token needs for `path`: those of the longest configured prefix."""
        best: tuple[str, ...] = ()
        best_length = -1
        for prefix, needed in self.scopes.items():
            if _under(path, (prefix,)) and len(prefix) > best_length:
                best, best_length = needed, len(prefix)
        return best

    async def authenticate(self, authorization: str | None) -> Identity:
        """The caller a header value stands for; raises the Problem that refuses it."""
        token = _bearer_token(authorization)
        digest = hashlib.sha256(token.encode()).digest()
        fresh = self.feed_fresh
        if not fresh:
            self._clear()
        else:
            cached = self._cache.get(digest)
            if cached is not None:
                if cached.until > time.monotonic():
                    self._cache.move_to_end(digest)
                    return cached.identity
                self._forget(digest)
        epoch = self._epoch
        answer = await self._verify(token)
        if not answer.valid:
            raise Problem(401, "invalid_token", INVALID_TOKEN)
        if answer.key_id is None or answer.owner_id is None:
            # Answered as to anyone: the ledger has no verify secret set, so it cannot say whose.
            log.error(
                "the ledger did not answer as to a service: is ANTHRA_VERIFY_SECRET set there?"
            )
            raise _unavailable("the key ledger cannot say whose token this is")
        identity = Identity(
            key_id=answer.key_id,
            owner_id=answer.owner_id,
            scopes=tuple(answer.scopes or ()),
            expires_at=answer.expires_at,
        )
        if fresh and self._epoch == epoch and self.feed_fresh:
            self._keep(digest, identity, answer)
        return identity

    async def _verify(self, token: str) -> _Answer:
        if self._http is None:
            await self.start()
        body = msgspec.json.encode(VerifyRequest(token=token))
        try:
            response = await self._client().post(
                VERIFY_PATH,
                content=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                auth=self._auth,
            )
        except httpx.HTTPError as e:
            log.warning("the ledger did not answer a verification (%s)", type(e).__name__)
            raise _unavailable("the key ledger cannot be reached to verify the token") from None
        if response.status_code == 200:
            try:
                return _decode_answer(response.content)
            except msgspec.DecodeError:
                log.error("the ledger's verify answer did not decode")
                raise _unavailable("the key ledger's answer could not be read") from None
        retry_after = retry_after_of(response)
        if response.status_code == 401:
            log.error("the ledger refused the verify secret: check ANTHRA_VERIFY_SECRET")
        else:
            log.warning("the ledger answered a verification with %d", response.status_code)
        raise _unavailable(
            "the key ledger cannot vouch for the token just now",
            max(1, math.ceil(retry_after)) if retry_after is not None else 1,
        )

    # The cache

    def _keep(self, digest: bytes, identity: Identity, answer: _Answer) -> None:
        key_id = identity.key_id
        if self.cache_size == 0 or answer.position < self._watermark(key_id):
            return
        now = time.monotonic()
        until = now + self.max_age
        wall = datetime.now(UTC)
        for instant in (answer.expires_at, answer.retires_at):
            if instant is not None:
                until = min(until, now + (instant - wall).total_seconds())
        if until <= now:
            return
        previous = self._by_key.get(key_id)
        if previous is not None and previous != digest:
            self._forget(previous)
        self._cache[digest] = _Cached(identity, until)
        self._cache.move_to_end(digest)
        self._by_key[key_id] = digest
        while len(self._cache) > self.cache_size:
            _, entry = self._cache.popitem(last=False)
            self._by_key.pop(entry.identity.key_id, None)

    def _forget(self, digest: bytes) -> None:
        entry = self._cache.pop(digest, None)
        if entry is not None:
            self._by_key.pop(entry.identity.key_id, None)

    def _drop_key(self, key_id: str) -> None:
        digest = self._by_key.pop(key_id, None)
        if digest is not None:
            self._cache.pop(digest, None)

    def _clear(self) -> None:
        if self._cache:
            self._cache.clear()
            self._by_key.clear()
        self._epoch += 1

    def _watermark(self, key_id: str) -> int:
        """The least position an answer about the key must reflect to be kept: its last
        announced event's, else the floor (where the feed started, or forgot keys from)."""
        return max(self._floor, self._touched.get(key_id, -1))

    def _touch(self, key_id: str, position: int) -> None:
        self._touched[key_id] = position
        self._touched.move_to_end(key_id)
        while len(self._touched) > _TOUCHED_KEYS:
            _, forgotten = self._touched.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    # The lifecycle feed

    def heard(self, event: str, data: bytes, event_id: str | None) -> None:
        """One message of the feed (an event, or a heartbeat when `event` is empty)."""
        self._heard_at = time.monotonic()
        if event_id is not None and event_id.isdigit():
            self._last_event_id = int(event_id)
        if not event:
            return
        try:
            message = _decode_event(data)
        except msgspec.DecodeError:
            log.warning("a lifecycle feed message did not decode: the cache is emptied")
            self._clear()
            return
        if event == "open":
            self._floor = max(self._floor, message.position)
        elif event == POLICY_CHANGED or (event in DROPS_KEY and message.key_id is None):
            self._clear()
            self._floor = max(self._floor, message.position)
        elif event in DROPS_KEY and message.key_id is not None:
            self._drop_key(message.key_id)
            self._touch(message.key_id, message.position)

    def _lost(self) -> None:
        """The feed is gone: nothing cached can be trusted until it is back."""
        self._connected = False
        self._clear()

    async def _follow_feed(self) -> None:
        delay = 0.1
        refused_logged = False
        while True:
            try:
                opened = await self._read_feed()
            except asyncio.CancelledError:
                raise
            except _FeedRefused as refused:
                if not refused_logged:
                    log.error("the ledger refused its lifecycle feed: %s", refused)
                    refused_logged = True
                opened = False
            except Exception as e:  # whatever it was, the feed is reconnected, never given up
                log.info("the lifecycle feed was lost (%s): reconnecting", type(e).__name__)
                opened = False
            finally:
                self._lost()
            if opened:
                delay = 0.1
                refused_logged = False
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter
            delay = min(delay * 2, 5.0)

    async def _read_feed(self) -> bool:
        """Follow one connection of the feed until it ends; whether it opened."""
        headers = {"Accept": "text/event-stream"}
        if self._last_event_id is not None:
            headers["Last-Event-ID"] = str(self._last_event_id)
        read = max(2.0, 4 * self.staleness_budget)
        timeout = httpx.Timeout(self.timeout, read=read)
        async with self._client().stream(
            "GET", FEED_PATH, headers=headers, auth=self._auth, timeout=timeout
        ) as response:
            if 400 <= response.status_code < 500:
                # The secret, or a ledger without the feed: said once, retried all the same.
                raise _FeedRefused(f"{response.status_code} for GET {FEED_PATH}")
            if response.status_code != 200:
                log.info("the lifecycle feed answered %d: retrying", response.status_code)
                return False
            self._connected = True
            event, data, event_id = "", b"", None
            async for line in response.aiter_lines():
                if line == "":
                    self.heard(event, data, event_id)
                    event, data, event_id = "", b"", None
                elif line.startswith(":"):
                    self.heard("", b"", None)
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        event = value
                    elif field == "data":
                        data = value.encode() if not data else data + b"\n" + value.encode()
                    elif field == "id":
                        event_id = value
            return True

    # Answers

    async def _refuse(self, scope: Scope, send: Send, problem: Problem) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting is answered 403 by the server.
            await send({"type": "websocket.close", "code": 1008})
            return
        body = problem.body()
        await send(
            {
                "type": "http.response.start",
                "status": problem.status,
                "headers": [
                    *problem.headers(self.metadata_url),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send_metadata(self, scope: Scope, send: Send) -> None:
        body = msgspec.json.encode(
            {
                "resource": self.public_url,
                "authorization_servers": self.authorization_servers,
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted({s for needed in self.scopes.values() for s in needed}),
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"max-age=300"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body}
        )


class _FeedRefused(Exception):
    """The ledger answered the feed's request with something other than the stream."""


def _under(path: str, prefixes: Iterable[str]) -> bool:
    """Whether `path` is one of `prefixes` or below one, by whole segments."""
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return True
    return False


def _authorization(scope: Scope) -> str | None:
    values = [value for name, value in scope.get("headers", ()) if name == b"authorization"]
    if len(values) > 1:
        raise Problem(400, "invalid_request", "send one Authorization header, not several")
    if not values:
        return None
    try:
        text: str = values[0].decode("ascii")
    except UnicodeDecodeError:
        raise Problem(400, "invalid_request", "the Authorization header is not ASCII") from None
    return text


def _bearer_token(authorization: str | None) -> str:
    if authorization is None:
        raise Problem(401, None, NO_CREDENTIALS, body_error="unauthorized")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise Problem(400, "invalid_request", "use Authorization: Bearer <token>")
    return credential

"""`GET /api/v1/events/stream`: the caller's key events as Server-Sent Events, from the audit
trail, resumable by store position; and `GET /v1/events/stream`, every owner's, for services
holding the verify secret that cache verify answers.

Each event's SSE id is its store position: a client that reconnects with `Last-Event-ID` gets
every event after it, none twice. Without one the stream starts at the present. Comments keep
the connection alive; a client that stops reading is dropped rather than buffered for; a stream
opened with a token ends when that token stops being valid (revoked, expired, suspended…).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.audit_tail import BATCH, AuditTail
from api.auth import principal_of, require_secret, requires_scopes
from api.events import KEY_EVENT_TYPES, key_audit_event
from api.openapi import SESSION_OR_TOKEN, VERIFY_SECRET_ONLY
from api.problems import ErrorBody, unavailable
from api.query_values import PositionQuery, whole_number
from api.schemas import ServiceEvent
from domain.api_key import ACTIVE
from domain.lifetime_policy import LifetimePolicy
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from projections.audit_trail.view import MAX_POSITION, AuditRow

log = logging.getLogger("anthra.events")

STREAM_PATH = "/api/v1/events/stream"
EVENT_STREAM = "text/event-stream"
HEARTBEAT_INTERVAL = 15.0
# A client that has not taken a write for this long is gone, or too slow to follow: dropped.
SEND_TIMEOUT = 10.0
MAX_STREAMS = 200
# One account's streams at once (its browser tabs and integrations): the rest stay for others.
MAX_STREAMS_PER_OWNER = 10
# The services' feed: every owner's events, and heartbeats often enough that a service can hold
# a staleness budget of about a second.
SERVICE_STREAM_PATH = "/v1/events/stream"
SERVICE_HEARTBEAT_INTERVAL = 0.25
# How often the process's one reader of the audit trail (api.audit_tail) reads what is new.
POLL_INTERVAL = 0.1
POLICY_EVENT_TYPES = frozenset({LifetimePolicy.Set.__name__, LifetimePolicy.Changed.__name__})
_encode = msgspec.json.Encoder().encode


# A store position has at most 19 digits (up to 2**63 - 1).
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description="Resume after this store position (what the last event's id was)",
        max_length=19,
    ),
]


class SlowClient(Exception):
    """The client stopped reading: the stream ends rather than buffers for it."""


class StreamLimits:
    """ASGI layer around the stream route: how many are open, and a bound on each write."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded_send(message: Message) -> None:
            try:
                with anyio.fail_after(SEND_TIMEOUT):
                    await send(message)
            except TimeoutError:
                raise SlowClient from None

        try:
            await self.app(scope, receive, bounded_send)
        except* SlowClient:
            log.info("dropped an event-stream client that stopped reading for %.0f s", SEND_TIMEOUT)


def stream_start(last_event_id: str | None, after: str | None) -> int | None:
    """The position to resume after: Last-Event-ID, else `after`, else None (the present)."""
    if last_event_id is not None:
        return whole_number(last_event_id.strip(), "Last-Event-ID", 0, MAX_POSITION)
    if after is not None:
        return whole_number(after, "after", 0, MAX_POSITION)
    return None


class EventStreamController(Controller):
    path = STREAM_PATH
    tags = ["audit"]

    @get(
        "/",
        media_type=EVENT_STREAM,
        guards=[requires_scopes("account:read")],
        security=SESSION_OR_TOKEN,
        middleware=[StreamLimits],
        responses={
            200: ResponseSpec(
                str,
                description="Server-Sent Events: `id` the store position, `event` the event "
                "type, `data` the event as JSON, as the audit trail shows it (AuditEvent); "
                "comments as heartbeats; an `end` event when the token stops being valid",
                media_type=EVENT_STREAM,
                # Litestar would draw a random example string: the document would differ
                # from one start to the next.
                generate_examples=False,
            ),
            429: ResponseSpec(ErrorBody, description="Too many streams open for this account"),
            503: ResponseSpec(ErrorBody, description="Too many streams open on this process"),
        },
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        ledger: NamedDependency[KeyLedger],
        last_event_id: LastEventId = None,
        after: PositionQuery = None,
    ) -> Stream:
        """The caller's key events as they are recorded, oldest first, resumable by position."""
        # Every input is read before the first byte: once streaming, a 400 cannot be sent.
        start = stream_start(last_event_id, after)
        state = request.app.state
        if state.open_streams >= MAX_STREAMS:
            raise unavailable("too many event streams are open on this process; retry shortly")
        principal = principal_of(request)
        if state.streams_by_owner.get(principal.user_id, 0) >= MAX_STREAMS_PER_OWNER:
            raise HTTPException(
                status_code=429,
                detail=f"this account has {MAX_STREAMS_PER_OWNER} event streams open already; "
                "close one, or retry later",
                headers={"Retry-After": "5"},
            )
        await anyio.to_thread.run_sync(audit.catch_up)
        if start is None:
            head = await anyio.to_thread.run_sync(audit.view.head)
            start = head[0] if head else 0
        return Stream(
            events(request, audit, ledger, principal, start),
            media_type=EVENT_STREAM,
            # Proxies that buffer answers (nginx) would hold the events back.
            headers={"X-Accel-Buffering": "no"},
        )


async def events(
    request: Request[Any, Any, Any],
    audit: AuditTrail,
    ledger: KeyLedger,
    principal: Any,
    position: int,
) -> AsyncIterator[bytes]:
    """Each of the owner's events after `position`, then heartbeats, until the caller's token
    stops being valid or the client goes."""

    def ended() -> bytes | None:
        if principal.via == "token" and not _still_valid(ledger, principal.key_id):
            return b"event: end\ndata: the token is no longer valid\n\n"
        return None

    async for chunk in follow(
        request,
        audit,
        position,
        owner_id=principal.user_id,
        render=_audit_events,
        opening=b": stream open\nretry: 2000\n\n",
        heartbeat_interval=HEARTBEAT_INTERVAL,
        ended=ended,
    ):
        yield chunk


def _audit_events(rows: Sequence[AuditRow]) -> bytes:
    """Key events as the audit trail shows them: `id` the position, `event` the type; the
    owner's other records (webhook endpoints) are not key events."""
    return b"".join(
        b"id: %d\nevent: %s\ndata: %s\n\n"
        % (row.position, row.type.encode(), _encode(key_audit_event(row)))
        for row in rows
        if row.type in KEY_EVENT_TYPES
    )


async def follow(
    request: Request[Any, Any, Any],
    audit: AuditTrail,
    position: int,
    *,
    owner_id: str | None,
    render: Callable[[Sequence[AuditRow]], bytes],
    opening: bytes,
    heartbeat_interval: float,
    ended: Callable[[], bytes | None] | None = None,
) -> AsyncIterator[bytes]:
    """The audit trail's rows after `position` (one owner's, or everyone's for None), as
    `render` writes them, then heartbeats whenever nothing was sent for `heartbeat_interval`,
    until `ended` answers a last message or the client goes. The rows come from the process's
    one reader of the trail (api.audit_tail), a backlog before what it keeps from the trail
    itself. A heartbeat is sent only once the trail has caught up with the store since the last
    thing sent: it says "nothing new as of now"."""
    state = request.app.state
    tail: AuditTail = state.audit_tail
    state.open_streams += 1
    by_owner: dict[str, int] = state.streams_by_owner
    if owner_id is not None:
        by_owner[owner_id] = by_owner.get(owner_id, 0) + 1
    joined = False
    try:
        yield opening
        await tail.join()
        joined = True
        sent_at = time.monotonic()
        while True:
            if ended is not None and (last := ended()) is not None:
                yield last
                return
            rows = tail.take(position, owner_id)
            if rows is None:
                # Before what the tail keeps: the backlog, from the trail, a batch at a time.
                # Every row the tail has read by now is in the trail, so in what this reads.
                known = tail.position
                backlog = await anyio.to_thread.run_sync(
                    audit.rows_after, position, BATCH, owner_id
                )
                if backlog:
                    position = backlog[-1].position
                    if chunk := render(backlog):
                        yield chunk
                        sent_at = time.monotonic()
                if len(backlog) < BATCH:
                    # None of the owner's rows up to `known` is left to send.
                    position = max(position, known)
                continue
            position = max(position, tail.position)
            if rows and (chunk := render(rows)):
                yield chunk
                sent_at = time.monotonic()
            elif time.monotonic() - sent_at >= heartbeat_interval and tail.read_at >= sent_at:
                yield b": heartbeat\n\n"
                sent_at = time.monotonic()
            await tail.next_round(heartbeat_interval)
    finally:
        if joined:
            tail.leave()
        state.open_streams -= 1
        if owner_id is not None:
            left = by_owner.get(owner_id, 1) - 1
            if left > 0:
                by_owner[owner_id] = left
            else:
                by_owner.pop(owner_id, None)


class ServiceEventStreamController(Controller):
    path = SERVICE_STREAM_PATH
    tags = ["verify"]

    @get(
        "/",
        media_type=EVENT_STREAM,
        security=VERIFY_SECRET_ONLY,
        middleware=[StreamLimits],
        responses={
            200: ResponseSpec(
                str,
                description="Server-Sent Events: first `event: open` with the position it starts "
                "after (`id` too); then every owner's key events as `id` the store position, "
                "`event` the type, `data` a ServiceEvent (`type`, `key_id`, `position`, `at`); "
                "`PolicyChanged` when the lifetime policy changes (no key: any answer may "
                f"change); a `: heartbeat` comment whenever nothing else was sent for "
                f"{SERVICE_HEARTBEAT_INTERVAL} s, sent only once the feed has caught up with "
                "the store",
                media_type=EVENT_STREAM,
                # Litestar would draw a random example string: the document would differ
                # from one start to the next.
                generate_examples=False,
            ),
            503: ResponseSpec(ErrorBody, description="Too many streams open on this process"),
        },
    )
    async def service_stream(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        last_event_id: LastEventId = None,
        after: PositionQuery = None,
    ) -> Stream:
        """Every owner's key lifecycle events, for services that cache verify answers: resumable
        by position, with heartbeats often enough to tell a live feed from a dead one."""
        secret: str = request.app.state.verify_secret
        if not secret:
            raise problems.AuthProblem(
                401,
                None,
                "no verify secret is configured on this ledger: the feed is for services",
                body_error="unauthorized",
            )
        require_secret(
            request.headers.getall("authorization", []),
            secret,
            "verify secret",
            request.scope,
            request.app.state.authenticator,
        )
        start = stream_start(last_event_id, after)
        if request.app.state.open_streams >= MAX_STREAMS:
            raise unavailable("too many event streams are open on this process; retry shortly")
        await anyio.to_thread.run_sync(audit.catch_up)
        if start is None:
            head = await anyio.to_thread.run_sync(audit.view.head)
            start = head[0] if head else 0
        opening = b"retry: 1000\nid: %d\nevent: open\ndata: %s\n\n" % (
            start,
            _encode({"position": start}),
        )
        return Stream(
            follow(
                request,
                audit,
                start,
                owner_id=None,
                render=_service_events,
                opening=opening,
                heartbeat_interval=SERVICE_HEARTBEAT_INTERVAL,
            ),
            media_type=EVENT_STREAM,
            headers={"X-Accel-Buffering": "no"},
        )


def _service_events(rows: Sequence[AuditRow]) -> bytes:
    """Key events and policy changes, each with no more than a cache needs; other rows (none
    today) are left out."""
    chunks = []
    for row in rows:
        if row.type in KEY_EVENT_TYPES:
            event = ServiceEvent(row.type, row.position, row.at, str(row.key_id))
        elif row.type in POLICY_EVENT_TYPES:
            event = ServiceEvent("PolicyChanged", row.position, row.at)
        else:
            continue
        chunks.append(
            b"id: %d\nevent: %s\ndata: %s\n\n" % (row.position, event.type.encode(), _encode(event))
        )
    return b"".join(chunks)


def _still_valid(ledger: KeyLedger, key_id: Any) -> bool:
    """Whether the stream's token may still read: its key active, and the index able to vouch
    for that (never fail open). From the index in memory: no I/O."""
    index = ledger.index
    if not index.is_fresh():
        return False
    record = index.key(key_id)
    return record is not None and index.status(record, ledger.clock()) == ACTIVE

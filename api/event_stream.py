"""`GET /api/v1/events/stream`: the caller's key events as Server-Sent Events, from the audit
trail, resumable by store position.

Each event's SSE id is its store position: a client that reconnects with `Last-Event-ID` gets
every event after it, none twice. Without one the stream starts at the present. Comments keep
the connection alive; a client that stops reading is dropped rather than buffered for; a stream
opened with a token ends when that token stops being valid (revoked, expired, suspended…).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import principal_of, requires_scopes
from api.events import audit_event
from api.openapi import SESSION_OR_TOKEN
from api.problems import ErrorBody, unavailable
from api.query_values import PositionQuery, whole_number
from domain.api_key import ACTIVE
from domain.errors import KeyNotFound
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from projections.audit_trail.view import MAX_POSITION

log = logging.getLogger("anthra.events")

STREAM_PATH = "/api/v1/events/stream"
EVENT_STREAM = "text/event-stream"
BATCH = 100
POLL_INTERVAL = 0.25
HEARTBEAT_INTERVAL = 15.0
# A client that has not taken a write for this long is gone, or too slow to follow: dropped.
SEND_TIMEOUT = 10.0
MAX_STREAMS = 200
_encode = msgspec.json.Encoder().encode


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
            ),
            503: ResponseSpec(ErrorBody, description="Too many streams open on this process"),
        },
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        ledger: NamedDependency[KeyLedger],
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                description="Resume after this store position (what the last event's id was)",
                max_length=20,
            ),
        ] = None,
        after: PositionQuery = None,
    ) -> Stream:
        """The caller's key events as they are recorded, oldest first, resumable by position."""
        # Every input is read before the first byte: once streaming, a 400 cannot be sent.
        start = stream_start(last_event_id, after)
        state = request.app.state
        if state.open_streams >= MAX_STREAMS:
            raise unavailable("too many event streams are open on this process; retry shortly")
        await anyio.to_thread.run_sync(audit.catch_up)
        if start is None:
            head = await anyio.to_thread.run_sync(audit.view.head)
            start = head[0] if head else 0
        principal = principal_of(request)
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
    state = request.app.state
    state.open_streams += 1
    try:
        yield b": stream open\nretry: 2000\n\n"
        quiet_since = time.monotonic()
        while True:
            if principal.via == "token" and not await anyio.to_thread.run_sync(
                _still_valid, ledger, principal.key_id
            ):
                yield b"event: end\ndata: the token is no longer valid\n\n"
                return
            await anyio.to_thread.run_sync(audit.catch_up)
            rows = await anyio.to_thread.run_sync(
                audit.rows_after, position, BATCH, principal.user_id
            )
            if rows:
                yield b"".join(
                    b"id: %d\nevent: %s\ndata: %s\n\n"
                    % (row.position, row.type.encode(), _encode(audit_event(row)))
                    for row in rows
                )
                position = rows[-1].position
            if rows:
                quiet_since = time.monotonic()
            if len(rows) == BATCH:
                continue
            if time.monotonic() - quiet_since >= HEARTBEAT_INTERVAL:
                yield b": heartbeat\n\n"
                quiet_since = time.monotonic()
            await anyio.sleep(POLL_INTERVAL)
    finally:
        state.open_streams -= 1


def _still_valid(ledger: KeyLedger, key_id: Any) -> bool:
    """Whether the stream's token may still read: its key active, and the index able to vouch
    for that (never fail open)."""
    if not ledger.index.is_fresh():
        return False
    try:
        record = ledger.key(key_id)
    except KeyNotFound:
        return False
    return ledger.status(record) == ACTIVE

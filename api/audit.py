"""The audit API: the caller's trail with filters and cursors, exposure windows, export, and
tamper evidence."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.response import Stream

from api.auth import principal_of, requires_scopes
from api.events import AUDIT_EVENT_TYPES, AuditEventType, audit_event
from api.openapi import SESSION_OR_TOKEN
from api.query_values import (
    InstantQuery,
    OptionalInstantQuery,
    PositionQuery,
    integer_schema,
    parse_instant,
    whole_number,
)
from api.schemas import (
    AuditPage,
    ExportLine,
    ExposedKey,
    Exposure,
    Interval,
)
from domain.errors import InvalidInput
from domain.scopes import ALL_SCOPES, SCOPES
from domain.timeline import scope_intervals
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from projections.audit_trail.view import MAX_PAGE, MAX_POSITION, AuditQuery, AuditRow

EXPORT_BATCH = 1000
DEFAULT_PAGE = 100
NDJSON = "application/x-ndjson"
_encode_line = msgspec.json.Encoder().encode
_UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(_UUID_PATTERN)


def _position(text: str | None, field: str) -> int | None:
    return None if text is None else whole_number(text, field, 0, MAX_POSITION)


def _key_filter(key_id: str | None) -> UUID | None:
    if key_id is None:
        return None
    if not _UUID.fullmatch(key_id):
        raise InvalidInput("key_id", "a key id, as the keys API gives it")
    return UUID(key_id)


class AuditController(Controller):
    """Audit history of the caller's keys."""

    path = "/api/v1/audit"
    tags = ["audit"]
    guards = [requires_scopes("account:read")]

    @get("/", sync_to_thread=True, security=SESSION_OR_TOKEN)
    def list_events(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        key_id: Annotated[
            str | None,
            QueryParameter(
                description="One key's events",
                schema_extra={"format": "uuid", "pattern": _UUID_PATTERN},
            ),
        ] = None,
        type: Annotated[
            list[AuditEventType] | None,
            QueryParameter(description="Event types; repeat for more"),
        ] = None,
        since: OptionalInstantQuery = None,
        until: OptionalInstantQuery = None,
        order: Annotated[
            Literal["newest", "oldest"], QueryParameter(description="Newest or oldest first")
        ] = "newest",
        cursor: PositionQuery = None,
        limit: Annotated[
            str,
            QueryParameter(
                description="Events per page",
                schema_extra=integer_schema(1, MAX_PAGE) | {"default": DEFAULT_PAGE},
            ),
        ] = str(DEFAULT_PAGE),
    ) -> AuditPage:
        """The caller's key events, filtered, newest or oldest first, a page at a time."""
        page_size = whole_number(limit, "limit", 1, MAX_PAGE)
        query = AuditQuery(
            owner_id=principal_of(request).user_id,
            key_id=_key_filter(key_id),
            types=tuple(dict.fromkeys(type or ())),
            since=parse_instant(since, "since") if since is not None else None,
            until=parse_instant(until, "until") if until is not None else None,
            newest_first=order == "newest",
            cursor=_position(cursor, "cursor"),
            limit=page_size,
        )
        rows = audit.query(query)
        following = str(rows[-1].position) if len(rows) == page_size else None
        return AuditPage(
            events=[audit_event(r) for r in rows if r.type in AUDIT_EVENT_TYPES], next=following
        )

    @get("/exposure", sync_to_thread=True, security=SESSION_OR_TOKEN)
    def exposure(
        self,
        request: Request[Any, Any, Any],
        ledger: NamedDependency[KeyLedger],
        scope_name: Annotated[
            str,
            QueryParameter(
                name="scope", description="The scope", schema_extra={"enum": list(SCOPES)}
            ),
        ],
        since: InstantQuery,
        until: OptionalInstantQuery = None,
    ) -> Exposure:
        """Every key of the caller that held a scope at any moment in the window, and when."""
        if scope_name not in ALL_SCOPES:
            raise InvalidInput("scope", f"unknown scope {scope_name!r}")
        start = parse_instant(since, "since")
        end = parse_instant(until, "until") if until is not None else datetime.now(UTC)
        exposed = []
        policy = ledger.policy_history()
        for record in ledger.keys_of(principal_of(request).user_id):
            history = ledger.history(record.key_id)
            intervals = scope_intervals(history, scope_name, start, end, policy)
            if intervals:
                exposed.append(
                    ExposedKey(
                        id=str(record.key_id),
                        name=record.name,
                        prefix=record.prefix,
                        intervals=[Interval(start=a, end=b) for a, b in intervals],
                    )
                )
        return Exposure(scope=scope_name, since=start, until=end, keys=exposed)

    @get(
        "/export",
        media_type=NDJSON,
        security=SESSION_OR_TOKEN,
        responses={
            200: ResponseSpec(
                ExportLine,
                description="One ExportLine per line, oldest first",
                media_type=NDJSON,
            )
        },
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        after: PositionQuery = None,
    ) -> Stream:
        """NDJSON of the caller's events after a position, oldest first; resume from the last."""
        owner_id = principal_of(request).user_id
        await anyio.to_thread.run_sync(audit.catch_up)
        # Every input is read before the first byte: once streaming, a 400 cannot be sent.
        start = _position(after, "after") or 0
        return Stream(export_lines(audit, start, owner_id), media_type=NDJSON)


async def export_lines(audit: AuditTrail, after: int, owner_id: str | None) -> AsyncIterator[bytes]:
    """Batches of NDJSON lines after a position, read as they are sent."""
    position = after
    while True:
        rows = await anyio.to_thread.run_sync(audit.rows_after, position, EXPORT_BATCH, owner_id)
        if not rows:
            return
        yield b"".join(_encode_line(export_line(r)) + b"\n" for r in rows)
        position = rows[-1].position


def export_line(row: AuditRow) -> ExportLine:
    return ExportLine(
        position=row.position,
        chain=row.chain,
        type=row.type,
        key_id=str(row.key_id),
        owner_id=row.owner_id,
        at=row.at,
        actor=row.actor,
        event=row.event,
    )

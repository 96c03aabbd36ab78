"""The audit API: the caller's trail with filters and cursors, exposure windows, export, and
tamper evidence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Stream

from api.auth import principal_of, requires_scopes
from api.keys import parse_instant
from api.schemas import (
    AuditEvent,
    AuditPage,
    ExportLine,
    ExposedKey,
    Exposure,
    Interval,
)
from domain.errors import InvalidInput
from domain.scopes import ALL_SCOPES
from domain.timeline import scope_change, scope_intervals
from infra.audit import AuditTrail
from infra.ledger import KeyLedger
from projections.audit import AuditQuery, AuditRow

EVENT_TYPES = ("Minted", "ScopesSet", "Revoked", "Expired")
MAX_PAGE = 500
EXPORT_BATCH = 1000
_encode_line = msgspec.json.Encoder().encode


def audit_event(row: AuditRow) -> AuditEvent:
    """An audit row in the wire's tagged-union form."""
    fields: dict[str, Any] = dict(row.event)
    if row.type == "ScopesSet":
        added, removed = scope_change(fields["previous_scopes"], fields["scopes"])
        fields |= {"added": list(added), "removed": list(removed), "widened": bool(added)}
    fields |= {
        "type": row.type,
        "position": row.position,
        "key_id": str(row.key_id),
        "at": row.at,
        "actor": row.actor,
        "chain": row.chain,
    }
    event: AuditEvent = msgspec.convert(fields, AuditEvent, strict=False)
    return event


def _key_filter(key_id: str | None) -> UUID | None:
    if key_id is None:
        return None
    try:
        return UUID(key_id)
    except ValueError:
        raise InvalidInput("key_id", "a key id, as the keys API gives it") from None


def _cursor(cursor: str | None, field: str) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise InvalidInput(field, "pass back the value of `next` from the previous page")
    return int(cursor)


def _types(types: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(t for given in types or () for t in given.split(",") if t)
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            "type", f"unknown event type {unknown[0]!r}; one of {', '.join(EVENT_TYPES)}"
        )
    return chosen


class AuditController(Controller):
    """Audit history of the caller's keys."""

    path = "/api/v1/audit"
    tags = ["audit"]
    guards = [requires_scopes("account:read")]

    @get("/", sync_to_thread=True, response_headers={"Cache-Control": "no-store"})
    def list_events(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        key_id: Annotated[str | None, QueryParameter(name="key_id", max_length=64)] = None,
        type: Annotated[list[str] | None, QueryParameter(name="type")] = None,
        since: Annotated[str | None, QueryParameter(name="since", max_length=64)] = None,
        until: Annotated[str | None, QueryParameter(name="until", max_length=64)] = None,
        order: Annotated[str, QueryParameter(name="order", pattern="^(newest|oldest)$")] = "newest",
        cursor: Annotated[str | None, QueryParameter(name="cursor", max_length=32)] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=MAX_PAGE)] = 100,
    ) -> AuditPage:
        """The caller's key events, filtered, newest or oldest first, a page at a time."""
        query = AuditQuery(
            owner_id=principal_of(request).user_id,
            key_id=_key_filter(key_id),
            types=_types(type),
            since=parse_instant(since, "since") if since else None,
            until=parse_instant(until, "until") if until else None,
            newest_first=order == "newest",
            cursor=_cursor(cursor, "cursor"),
            limit=limit,
        )
        rows = audit.query(query)
        following = str(rows[-1].position) if len(rows) == limit else None
        return AuditPage(events=[audit_event(r) for r in rows], next=following)

    @get("/exposure", sync_to_thread=True, response_headers={"Cache-Control": "no-store"})
    def exposure(
        self,
        request: Request[Any, Any, Any],
        ledger: NamedDependency[KeyLedger],
        scope_name: Annotated[str, QueryParameter(name="scope", max_length=64)],
        since: Annotated[str, QueryParameter(name="since", max_length=64)],
        until: Annotated[str | None, QueryParameter(name="until", max_length=64)] = None,
    ) -> Exposure:
        """Every key of the caller that held a scope at any moment in the window, and when."""
        if scope_name not in ALL_SCOPES:
            raise InvalidInput("scope", f"unknown scope {scope_name!r}")
        start = parse_instant(since, "since")
        end = parse_instant(until, "until") if until else datetime.now(UTC)
        if end <= start:
            raise InvalidInput("until", "the window must end after it starts")
        exposed = []
        for record in ledger.keys_of(principal_of(request).user_id):
            intervals = scope_intervals(ledger.history(record.key_id), scope_name, start, end)
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

    @get("/export")
    async def export(
        self,
        request: Request[Any, Any, Any],
        audit: NamedDependency[AuditTrail],
        after: Annotated[str | None, QueryParameter(name="after", max_length=32)] = None,
    ) -> Stream:
        """NDJSON of the caller's events after a position, oldest first; resume from the last."""
        start = _cursor(after, "after") or 0
        owner_id = principal_of(request).user_id
        await anyio.to_thread.run_sync(audit.catch_up)
        return Stream(
            export_lines(audit, start, owner_id),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store"},
        )


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

"""The keys API: mint, list, show, re-scope, revoke, and history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import UNSET

from api import problems
from api.auth import principal_of, requires_scopes, requires_session
from api.events import history_event
from api.openapi import IDEMPOTENT, SESSION_ONLY, SESSION_OR_TOKEN
from api.problems import ErrorBody
from api.query_values import (
    OptionalInstantQuery,
    integer_schema,
    parse_instant,
    whole_number,
)
from api.request_context import context_of
from api.schemas import (
    LINE_PATTERN,
    History,
    Key,
    KeyList,
    MintedKey,
    MintRequest,
    RotatedKey,
    RotateRequest,
    SetScopesRequest,
    SuspendRequest,
)
from api.schemas import KeyAsOf as KeyAsOfView
from domain.api_key import MAX_EXPIRY_DAYS, MAX_REASON_LENGTH, MIN_EXPIRY_DAYS
from domain.errors import InvalidInput, KeyNotFound
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.scopes import in_order
from domain.timeline import key_as_of
from ledger.key_ledger import KeyLedger, expiring_within, parse_key_id
from ledger.usage_report import UsageReport, unused_since
from projections.key_states.view import KeyState

KeyId = Annotated[
    str,
    PathParameter(description="The key's id, as minting gave it", schema_extra={"format": "uuid"}),
]
CONFLICT = {
    409: ResponseSpec(
        ErrorBody,
        description="The key is revoked, expired or rotated, or changed by too many requests "
        "at once",
    )
}
ONLY_ITSELF = {403: ResponseSpec(ErrorBody, description="A token acting on another key")}


def only_itself(request: Request[Any, Any, Any], key_id: str, verb: str) -> None:
    """A token may act on itself only; other keys need a signed-in session."""
    principal = principal_of(request)
    if principal.via == "token" and str(principal.key_id) != key_id:
        raise problems.AuthProblem(
            403,
            "insufficient_scope",
            f"a token may {verb} only itself; {verb} other keys needs a signed-in session",
        )


def key_view(
    record: KeyState, ledger: KeyLedger, last_used: dict[UUID, datetime] | None = None
) -> Key:
    return Key(
        id=str(record.key_id),
        prefix=record.prefix,
        name=record.name,
        scopes=list(in_order(record.scopes)),
        status=ledger.status(record),
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=(last_used or {}).get(record.key_id),
        retires_at=record.retires_at,
        successor_id=str(record.successor_id) if record.successor_id else None,
        predecessor_id=str(record.predecessor_id) if record.predecessor_id else None,
    )


def idempotency_key_of(request: Request[Any, Any, Any]) -> str | None:
    """The request's Idempotency-Key header, if it sent one (checked by the ledger)."""
    given = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if len(given) > 1:
        raise InvalidInput(IDEMPOTENCY_HEADER, "send one, not several")
    return given[0] if given else None


class KeysController(Controller):
    """Personal access tokens of the signed-in user."""

    path = "/api/v1/keys"
    tags = ["keys"]

    @post(
        "/",
        guards=[requires_session],
        status_code=201,
        security=SESSION_ONLY,
        responses=CONFLICT | IDEMPOTENT,
        sync_to_thread=True,
    )
    def mint(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[MintRequest],
        ledger: NamedDependency[KeyLedger],
    ) -> MintedKey:
        """Mint a key; its token is in this response and nowhere else, ever."""
        principal = principal_of(request)
        minted = ledger.mint(
            owner_id=principal.user_id,
            name=data.name,
            scopes=data.scopes,
            expires_in_days=data.expires_in_days,
            actor=principal.actor,
            context=context_of(request),
            idempotency_key=idempotency_key_of(request),
        )
        record = minted.record
        return MintedKey(
            id=str(record.key_id),
            token=minted.token,
            prefix=record.prefix,
            name=record.name,
            scopes=list(in_order(record.scopes)),
            created_at=record.created_at,
            expires_at=record.expires_at,
        )

    @get(
        "/",
        guards=[requires_scopes("account:read")],
        security=SESSION_OR_TOKEN,
        sync_to_thread=True,
    )
    def list_keys(
        self,
        request: Request[Any, Any, Any],
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
        # As far back as a key can have lived: 1 to 3650 days.
        unused_days: Annotated[
            str | None,
            QueryParameter(
                description="Only keys not used for this many days (never used included)",
                schema_extra=integer_schema(MIN_EXPIRY_DAYS, MAX_EXPIRY_DAYS),
            ),
        ] = None,
        expiring_within_days: Annotated[
            str | None,
            QueryParameter(
                description="Only live keys that expire within this many days, soonest first",
                schema_extra=integer_schema(MIN_EXPIRY_DAYS, MAX_EXPIRY_DAYS),
            ),
        ] = None,
    ) -> KeyList:
        """The caller's keys, oldest first; with unused_days, only those not used for that long;
        with expiring_within_days, only live keys that expire that soon, soonest first."""
        principal = principal_of(request)
        records = ledger.keys_of(principal.user_id)
        if expiring_within_days is not None:
            days = whole_number(
                expiring_within_days, "expiring_within_days", MIN_EXPIRY_DAYS, MAX_EXPIRY_DAYS
            )
            records = expiring_within(ledger, records, days)
        last_used = usage.last_used([r.key_id for r in records])
        if unused_days is not None:
            days = whole_number(unused_days, "unused_days", MIN_EXPIRY_DAYS, MAX_EXPIRY_DAYS)
            cutoff = ledger.now() - timedelta(days=days)
            unused = unused_since(last_used, (r.key_id for r in records), cutoff)
            records = [r for r in records if r.key_id in unused]
        return KeyList(keys=[key_view(r, ledger, last_used) for r in records])

    @get(
        "/{key_id:str}",
        guards=[requires_scopes("account:read")],
        security=SESSION_OR_TOKEN,
        sync_to_thread=True,
    )
    def show(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
        as_of: OptionalInstantQuery = None,
    ) -> Key | KeyAsOfView:
        """One of the caller's keys; with as_of (RFC 3339), the key as it was at that instant."""
        owner_id = principal_of(request).user_id
        if as_of is None:
            record = ledger.key(key_id, owner_id=owner_id)
            return key_view(record, ledger, usage.last_used([record.key_id]))
        instant = parse_instant(as_of, "as_of")
        history = ledger.history(key_id, owner_id=owner_id)
        then = key_as_of(history, instant, ledger.policy_history())
        if then is None:
            raise KeyNotFound(f"{key_id} (it did not exist at {instant.isoformat()})")
        return KeyAsOfView(
            id=str(then.key_id),
            prefix=then.prefix,
            name=then.name,
            scopes=list(then.scopes),
            status=then.status,
            created_at=then.created_at,
            expires_at=then.expires_at,
            revoked_at=then.revoked_at,
            as_of=then.as_of,
        )

    @put(
        "/{key_id:str}/scopes",
        guards=[requires_session],
        security=SESSION_ONLY,
        responses=CONFLICT | IDEMPOTENT,
        sync_to_thread=True,
    )
    def set_scopes(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        data: JSONBody[SetScopesRequest],
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
    ) -> Key:
        """Replace the scopes of an active key."""
        principal = principal_of(request)
        record = ledger.set_scopes(
            key_id,
            data.scopes,
            actor=principal.actor,
            owner_id=principal.user_id,
            context=context_of(request),
            idempotency_key=idempotency_key_of(request),
        )
        return key_view(record, ledger, usage.last_used([record.key_id]))

    @delete(
        "/{key_id:str}",
        status_code=200,
        security=SESSION_OR_TOKEN,
        responses=ONLY_ITSELF | CONFLICT | IDEMPOTENT,
        sync_to_thread=True,
    )
    def revoke(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
        reason: Annotated[
            str,
            QueryParameter(
                name="reason",
                max_length=MAX_REASON_LENGTH,
                description="Why, for the audit history: printable text on one line, never a token",
                schema_extra={"pattern": LINE_PATTERN},
            ),
        ] = "",
    ) -> Key:
        """Revoke a key: a session may revoke any of its keys, a token only itself."""
        only_itself(request, key_id, "revoke")
        principal = principal_of(request)
        record = ledger.revoke(
            key_id,
            actor=principal.actor,
            reason=reason,
            owner_id=principal.user_id,
            context=context_of(request),
            idempotency_key=idempotency_key_of(request),
        )
        return key_view(record, ledger, usage.last_used([record.key_id]))

    @post(
        "/{key_id:str}/rotate",
        status_code=201,
        security=SESSION_OR_TOKEN,
        responses=ONLY_ITSELF | CONFLICT | IDEMPOTENT,
        sync_to_thread=True,
    )
    def rotate(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        data: JSONBody[RotateRequest],
        ledger: NamedDependency[KeyLedger],
    ) -> RotatedKey:
        """Mint a successor with the key's name and scopes, its token in this answer only; the
        old key keeps working for `grace_seconds` (never past its own expiry), then stops.

        A token may rotate itself (no scope needed), a session any of its keys. With an
        Idempotency-Key, a retry of a rotation whose answer was lost retires the successor
        that answer held and mints a new one: never two live successors."""
        only_itself(request, key_id, "rotate")
        principal = principal_of(request)
        given = data.expires_in_days
        rotated = ledger.rotate(
            parse_key_id(key_id),
            actor=principal.actor,
            grace_seconds=data.grace_seconds,
            expires_in_days=None if given is UNSET else given,
            default_expiry=given is UNSET,
            owner_id=principal.user_id,
            context=context_of(request),
            idempotency_key=idempotency_key_of(request),
        )
        record = rotated.record
        return RotatedKey(
            id=str(record.key_id),
            token=rotated.token,
            prefix=record.prefix,
            name=record.name,
            scopes=list(in_order(record.scopes)),
            created_at=record.created_at,
            expires_at=record.expires_at,
            predecessor_id=str(rotated.predecessor_id),
            predecessor_retires_at=rotated.retires_at,
        )

    @post(
        "/{key_id:str}/suspend",
        status_code=200,
        guards=[requires_session],
        security=SESSION_ONLY,
        responses=CONFLICT,
        sync_to_thread=True,
    )
    def suspend(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
        data: JSONBody[SuspendRequest | None] = None,
    ) -> Key:
        """Refuse the key everywhere until it is resumed (reversible, unlike a revoke);
        suspending a suspended key changes nothing."""
        principal = principal_of(request)
        record = ledger.suspend(
            parse_key_id(key_id),
            actor=principal.actor,
            reason=data.reason if data is not None else "",
            owner_id=principal.user_id,
            context=context_of(request),
        )
        return key_view(record, ledger, usage.last_used([record.key_id]))

    @post(
        "/{key_id:str}/resume",
        status_code=200,
        guards=[requires_session],
        security=SESSION_ONLY,
        responses=CONFLICT,
        sync_to_thread=True,
    )
    def resume(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
    ) -> Key:
        """Accept a suspended key again; resuming a key not suspended changes nothing."""
        principal = principal_of(request)
        record = ledger.resume(
            parse_key_id(key_id),
            actor=principal.actor,
            owner_id=principal.user_id,
            context=context_of(request),
        )
        return key_view(record, ledger, usage.last_used([record.key_id]))

    @get(
        "/{key_id:str}/history",
        guards=[requires_scopes("account:read")],
        security=SESSION_OR_TOKEN,
        sync_to_thread=True,
    )
    def history(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
    ) -> History:
        """Every event of the key, oldest first, with who and when."""
        events = ledger.history(key_id, owner_id=principal_of(request).user_id)
        return History(key_id=key_id, events=[history_event(e) for e in events])

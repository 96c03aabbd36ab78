"""Operator routes, `/v1/operator/*`: actions over every owner's data, for the people who run the
ledger. They take `Authorization: Bearer $ANTHRA_OPERATOR_SECRET`, never a key or a session, and
are meant to stay behind the gateway (deploy/nginx.conf does not route them)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter

from api import problems
from api.auth import require_secret
from api.keys import key_view
from api.openapi import OPERATOR_ONLY
from api.problems import ErrorBody
from api.request_context import context_of
from api.schemas import (
    ChainCheck,
    Key,
    LifetimePolicyTerms,
    LifetimePolicyView,
    StaleKey,
    StaleKeys,
    SuspendRequest,
)
from domain.actors import operator
from domain.lifetime_policy import Terms
from ledger.audit_trail import CHECK_INTERVAL, AuditTrail, CheckedTooRecently, CheckRunning
from ledger.key_ledger import KeyLedger, parse_key_id
from ledger.stale_keys import stale_keys
from ledger.usage_report import UsageReport

ACTOR = operator("api")
KeyId = Annotated[str, PathParameter(description="A key's id", schema_extra={"format": "uuid"})]
CONFLICT = {409: ResponseSpec(ErrorBody, description="The key is revoked, expired or rotated")}


def stale_view(ledger: KeyLedger, usage: UsageReport, days: int | None) -> StaleKeys:
    """The keys unused for `days` days (none for None), as the API and the CLI show them."""
    found = [] if days is None else stale_keys(ledger, usage, days)
    return StaleKeys(
        revoke_unused_after_days=days,
        keys=[
            StaleKey(
                id=str(r.key_id),
                owner_id=r.owner_id,
                prefix=r.prefix,
                name=r.name,
                last_used_or_minted_at=seen,
            )
            for r, seen in found
        ],
    )


def policy_view(ledger: KeyLedger) -> LifetimePolicyView:
    terms = ledger.lifetime_terms()
    return LifetimePolicyView(
        max_lifetime_days=terms.max_lifetime_days,
        expiry_required=terms.expiry_required,
        revoke_unused_after_days=terms.revoke_unused_after_days,
        blocked_keys=ledger.count_blocked(),
    )


OPERATOR_PATH = "/v1/operator"


async def requires_operator(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A guard: the operator secret, compared in constant time; refused if none is configured."""
    secret: str = connection.app.state.settings.operator_secret
    if not secret:
        raise problems.AuthProblem(
            403,
            "insufficient_scope",
            "operator routes are off: set ANTHRA_OPERATOR_SECRET to use them",
        )
    require_secret(
        connection.headers.getall("authorization", []),
        secret,
        "operator secret",
        connection.scope,
        connection.app.state.authenticator,
    )


class OperatorController(Controller):
    """Actions over the whole ledger."""

    path = OPERATOR_PATH
    tags = ["operator"]
    guards = [requires_operator]
    security = OPERATOR_ONLY

    @post(
        "/audit/check",
        status_code=200,
        sync_to_thread=True,
        responses={429: ResponseSpec(ErrorBody, description="One runs, or ran moments ago")},
    )
    def check_chain(self, audit: NamedDependency[AuditTrail]) -> ChainCheck:
        """Recompute the audit trail's hash chain from every stored event: the head, or the break.

        It reads the whole store, so one runs at a time and a new one starts at most every
        few seconds per process; others are told when to come back (429, Retry-After).
        """
        try:
            report = audit.check_chain(min_interval=CHECK_INTERVAL)
        except CheckRunning:
            raise HTTPException(
                status_code=429,
                detail="a check of the chain is already running; retry shortly",
                headers={"Retry-After": "5"},
            ) from None
        except CheckedTooRecently as e:
            raise HTTPException(
                status_code=429,
                detail="the chain was checked moments ago; retry later",
                headers={"Retry-After": str(e.retry_after)},
            ) from None
        return ChainCheck(
            ok=report.ok,
            checked=report.checked,
            head_position=report.head_position,
            head_chain=report.head_chain,
            first_bad_position=report.first_bad_position,
            reason=report.reason,
        )

    @get("/lifetime-policy", sync_to_thread=True)
    def lifetime_policy(self, ledger: NamedDependency[KeyLedger]) -> LifetimePolicyView:
        """The lifetime policy in force, and how many keys it blocks now."""
        return policy_view(ledger)

    @put("/lifetime-policy", sync_to_thread=True)
    def set_lifetime_policy(
        self, data: JSONBody[LifetimePolicyTerms], ledger: NamedDependency[KeyLedger]
    ) -> LifetimePolicyView:
        """Set the lifetime policy (an event on the policy's own history): the longest a key
        may live, whether it must expire, and after how many unused days the sweeper revokes
        a key. Mint and rotate refuse what it forbids; keys it no longer allows are blocked at
        use, not revoked, and work again when it relaxes."""
        ledger.set_lifetime_policy(
            Terms(data.max_lifetime_days, data.expiry_required, data.revoke_unused_after_days),
            ACTOR,
        )
        return policy_view(ledger)

    @get("/stale-keys", sync_to_thread=True)
    def stale(
        self, ledger: NamedDependency[KeyLedger], usage: NamedDependency[UsageReport]
    ) -> StaleKeys:
        """A dry run: the keys the policy's "revoke keys unused for N days" would revoke now
        (none when it sets no such limit)."""
        days = ledger.lifetime_terms().revoke_unused_after_days
        return stale_view(ledger, usage, days)

    @post("/keys/{key_id:str}/suspend", status_code=200, sync_to_thread=True, responses=CONFLICT)
    def suspend(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyId,
        ledger: NamedDependency[KeyLedger],
        data: JSONBody[SuspendRequest | None] = None,
    ) -> Key:
        """Suspend any owner's key until it is resumed."""
        record = ledger.suspend(
            parse_key_id(key_id),
            actor=ACTOR,
            reason=data.reason if data is not None else "",
            context=context_of(request),
        )
        return key_view(record, ledger)

    @post("/keys/{key_id:str}/resume", status_code=200, sync_to_thread=True, responses=CONFLICT)
    def resume(
        self, request: Request[Any, Any, Any], key_id: KeyId, ledger: NamedDependency[KeyLedger]
    ) -> Key:
        """Resume any owner's suspended key."""
        record = ledger.resume(parse_key_id(key_id), actor=ACTOR, context=context_of(request))
        return key_view(record, ledger)

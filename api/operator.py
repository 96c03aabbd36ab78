"""Operator routes, `/v1/operator/*`: actions over every owner's data, for the people who run the
ledger. They take `Authorization: Bearer $ANTHRA_OPERATOR_SECRET`, never a key or a session, and
are meant to stay behind the gateway (deploy/nginx.conf does not route them)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from api import problems
from api.auth import require_secret
from api.openapi import OPERATOR_ONLY
from api.problems import ErrorBody
from api.schemas import ChainCheck
from ledger.audit_trail import CHECK_INTERVAL, AuditTrail, CheckedTooRecently, CheckRunning

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

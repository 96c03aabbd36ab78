"""POST /v1/verify: Anthra's own servers ask whether a token may do something."""

from __future__ import annotations

import hmac
from typing import Any

import anyio
from litestar import Controller, Request, post
from litestar.params import JSONBody

from api import problems
from api.auth import Authenticator
from api.schemas import VerifyRequest, VerifyResponse
from domain.errors import InvalidInput
from domain.scopes import ALL_SCOPES
from domain.timeline import key_as_of, verify_as_of
from infra.ledger import KeyLedger


class VerifyController(Controller):
    path = "/v1/verify"
    tags = ["verify"]

    @post("/", status_code=200, response_headers={"Cache-Control": "no-store"})
    async def verify(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[VerifyRequest],
    ) -> VerifyResponse:
        """Whether the token is live and holds every scope asked for; no database round trip."""
        state = request.app.state
        ledger: KeyLedger = state.ledger
        authenticator: Authenticator = state.authenticator
        secret: str = state.verify_secret
        if secret:
            try:
                _require_verify_secret(request.headers.getall("authorization", []), secret)
            except problems.AuthProblem as refused:
                if refused.status == 401 and refused.error:
                    authenticator.attempt_failed(request.scope)  # counted by client only
                raise
        unknown = [s for s in data.scopes if s not in ALL_SCOPES]
        if unknown:
            raise InvalidInput("scopes", f"unknown scope {unknown[0]!r}")
        if data.as_of is not None:
            answer = await anyio.to_thread.run_sync(_verify_as_of, ledger, data)
            if answer.code == "invalid_token":
                authenticator.attempt_failed(request.scope, data.token)
            return answer
        verification = ledger.verify(data.token, data.scopes)
        record = verification.record
        if record is None:
            authenticator.attempt_failed(request.scope, data.token)
            return VerifyResponse(valid=False, code=verification.code)
        return VerifyResponse(
            valid=verification.valid,
            code=verification.code,
            key_id=str(record.key_id),
            owner_id=record.owner_id,
            scopes=sorted(record.scopes),
            expires_at=record.expires_at,
            missing_scopes=list(verification.missing) or None,
        )


def _require_verify_secret(headers: list[str], secret: str) -> None:
    if not headers:
        raise problems.no_credentials()
    if len(headers) > 1:
        raise problems.invalid_request("send one Authorization header, not several")
    scheme, _, credential = headers[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise problems.invalid_request("use Authorization: Bearer <verify secret>")
    if not hmac.compare_digest(credential.strip().encode(), secret.encode()):
        raise problems.AuthProblem(401, "invalid_token", "the verify secret is wrong")


def _verify_as_of(ledger: KeyLedger, data: VerifyRequest) -> VerifyResponse:
    """Whether the token would have been accepted for those scopes at that instant."""
    assert data.as_of is not None
    if data.as_of.tzinfo is None:
        raise InvalidInput("as_of", "give the instant's offset, e.g. Z or +01:00")
    record = ledger.index.holder(data.token)
    if record is None:
        return VerifyResponse(valid=False, code="invalid_token")
    events = ledger.history(record.key_id)
    code = verify_as_of(events, data.as_of, data.scopes)
    then = key_as_of(events, data.as_of)
    if then is None or code == "invalid_token":
        # As live: a token that would have been refused learns nothing about its key.
        return VerifyResponse(valid=False, code="invalid_token")
    missing = [s for s in data.scopes if s not in then.scopes]
    return VerifyResponse(
        valid=code == "valid",
        code=code,
        key_id=str(then.key_id),
        owner_id=then.owner_id,
        scopes=sorted(then.scopes),
        expires_at=then.expires_at,
        missing_scopes=missing or None,
    )

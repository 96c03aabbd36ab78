"""POST /v1/verify: Anthra's own servers ask whether a token may do something.

Anyone holding a token may ask whether it is valid, and learns `valid` and `code` only. Who holds
it, its id, scopes and expiry, and any answer about the past (`as_of`), are told to a service that
presents the verify secret, or to the signed-in owner of the token; to anyone else a token of
another person's answers for the past as an unknown one.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import msgspec
from litestar import Controller, Request, post
from litestar.exceptions import ValidationException
from litestar.params import JSONBody
from litestar.types import Receive, ReceiveMessage, Scope
from msgspec import UNSET, UnsetType

from api import problems
from api.auth import Authenticator, metadata_url_of, require_secret
from api.front_door import Answer
from api.json_body import JSON_MEDIA_TYPE, decode
from api.openapi import ANYONE_SERVICE_OR_SESSION
from api.query_values import parse_instant
from api.schemas import VerifyRequest, VerifyResponse
from domain.errors import InvalidInput
from domain.scopes import ALL_SCOPES, in_order
from domain.timeline import key_as_of, verify_as_of
from infra.metrics import TALLY
from ledger.key_ledger import KeyLedger
from projections.verification_index.index import IndexStale, KeyRecord


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, which decides what they learn: a service (the verify secret) everything, a
    signed-in user everything about their own tokens, anyone else `valid` and `code` only."""

    service: bool = False
    user_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.service and self.user_id is None

    def may_see(self, record: KeyRecord) -> bool:
        return self.service or (self.user_id is not None and self.user_id == record.owner_id)


ANYONE = Caller()
SERVICE = Caller(service=True)


class VerifyController(Controller):
    path = "/v1/verify"
    tags = ["verify"]
    security = ANYONE_SERVICE_OR_SESSION

    @post("/", status_code=200)
    async def verify(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[VerifyRequest],
    ) -> VerifyResponse:
        """Whether the token is live and holds every scope asked for; no database round trip."""
        ledger: KeyLedger = request.app.state.ledger
        authenticator: Authenticator = request.app.state.authenticator
        caller = await _caller(request, authenticator)
        unknown = [s for s in data.scopes if s not in ALL_SCOPES]
        if unknown:
            raise InvalidInput("scopes", f"unknown scope {unknown[0]!r}")
        if data.as_of is not None:
            if caller.anonymous:
                raise problems.AuthProblem(
                    401,
                    None,
                    "answers about the past need the verify secret or a signed-in session",
                    body_error="unauthorized",
                )
            instant = parse_instant(data.as_of, "as_of")
            answer = await anyio.to_thread.run_sync(_verify_as_of, ledger, data, instant, caller)
            if answer.code == "invalid_token":
                authenticator.attempt_failed(request.scope, data.token)
            return answer
        return verify_now(ledger, authenticator, request.scope, data, caller)


def verify_now(
    ledger: KeyLedger,
    authenticator: Authenticator,
    scope: Scope,
    data: VerifyRequest,
    caller: Caller,
) -> VerifyResponse:
    """Whether the token may do this now, told as much as the caller may learn; no I/O."""
    # Read before the answer: the answer reflects at least this position.
    position = ledger.index.position
    verification = ledger.verify(data.token, data.scopes)
    TALLY.verified(verification.code, "verify")
    record = verification.record
    if record is None:
        authenticator.attempt_failed(scope, data.token)
    if record is None or not caller.may_see(record):
        return VerifyResponse(valid=verification.valid, code=verification.code)
    return VerifyResponse(
        valid=verification.valid,
        code=verification.code,
        key_id=str(record.key_id),
        owner_id=record.owner_id,
        scopes=list(in_order(record.scopes)),
        expires_at=record.expires_at,
        missing_scopes=list(verification.missing) or None,
        retires_at=_retires_at(ledger, record),
        position=position if caller.service else UNSET,
    )


def _retires_at(ledger: KeyLedger, record: KeyRecord) -> datetime | UnsetType:
    retires_ts = ledger.index.retires_ts(record)
    return UNSET if retires_ts is None else datetime.fromtimestamp(retires_ts, UTC)


async def _caller(request: Request[Any, Any, Any], authenticator: Authenticator) -> Caller:
    """Who asks; raises the problem that refuses the request."""
    secret: str = request.app.state.verify_secret
    authorization = request.headers.getall("authorization", [])
    # With no secret configured there is no service to be: a token or anything else sent along
    # is no credential here, and the caller is whoever the rest of the request says.
    if authorization and secret:
        require_secret(authorization, secret, "verify secret", request.scope, authenticator)
        return Caller(service=True)
    principal = await authenticator.session_principal(request.scope)
    if principal is not None:
        return Caller(user_id=principal.user_id)
    if secret:
        raise problems.no_credentials()
    return ANYONE


def _verify_as_of(
    ledger: KeyLedger, data: VerifyRequest, instant: datetime, caller: Caller
) -> VerifyResponse:
    """Whether the token would have been accepted for those scopes at that instant."""
    record = ledger.index.holder(data.token)
    if record is None or not caller.may_see(record):
        # Another person's token answers as an unknown one: nothing to learn about it.
        return VerifyResponse(valid=False, code="invalid_token")
    events = ledger.history(record.key_id)
    policy = ledger.policy_history()
    code = verify_as_of(events, instant, data.scopes, policy)
    then = key_as_of(events, instant, policy)
    if then is None or code == "invalid_token":
        # As live: a token that would have been refused learns nothing about its key.
        return VerifyResponse(valid=False, code="invalid_token")
    missing = [s for s in data.scopes if s not in then.scopes]
    return VerifyResponse(
        valid=code == "valid",
        code=code,
        key_id=str(then.key_id),
        owner_id=then.owner_id,
        scopes=list(in_order(then.scopes)),
        expires_at=then.expires_at,
        missing_scopes=missing or None,
    )


_JSON = JSON_MEDIA_TYPE.encode()
_ANSWER_HEADERS: Final = [(b"content-type", _JSON)]
_encode = msgspec.json.Encoder().encode


class VerifyAtTheDoor:
    """`POST /v1/verify` answered by the front door, before Litestar's routing, when the request
    is the common one: a JSON body that decodes cleanly into a question about now, with known
    scopes, from a service presenting the verify secret (or, with none configured, from anyone
    sending no credentials). Its answer is the route's, built from the same parts.

    Everything else — a session cookie, any other Authorization header, `as_of`, a body that is
    not clean JSON or too large, an unknown scope — goes on to the Litestar route with the body
    handed over as read, which answers it as before (refusals name the field at fault)."""

    path = "/v1/verify"

    def __init__(
        self,
        ledger: KeyLedger,
        authenticator: Authenticator,
        *,
        secret: str,
        max_body: int,
        public_url: str = "",
    ) -> None:
        self.ledger = ledger
        self.public_url = public_url
        self.authenticator = authenticator
        self.max_body = max_body
        # The one Authorization header a service sends; none at all when there is no secret.
        self._service = b"Bearer " + secret.encode() if secret else None

    async def __call__(self, scope: Scope, receive: Receive) -> tuple[Answer | None, Receive]:
        """The answer, or None and what the route must read the request from."""
        json = False
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                json = value.split(b";", 1)[0].strip().lower() == _JSON
            elif name == b"authorization":
                if authorization is not None:
                    return None, receive
                authorization = value
            elif name == b"cookie":
                return None, receive
        service = self._service
        if not json or (authorization is None) != (service is None):
            return None, receive
        if service is not None and not hmac.compare_digest(authorization or b"", service):
            return None, receive
        body, received = await _read(receive, self.max_body)
        if body is None:
            return None, _replaying(received, receive)
        try:
            data: VerifyRequest = decode(body, VerifyRequest)
        except ValidationException:
            return None, _replaying(received, receive)
        if data.as_of is not None or not ALL_SCOPES.issuperset(data.scopes):
            return None, _replaying(received, receive)
        try:
            caller = SERVICE if service is not None else ANYONE
            answer = verify_now(self.ledger, self.authenticator, scope, data, caller)
        except IndexStale:
            return self._problem(problems.unavailable(), scope), receive
        except problems.AuthProblem as problem:
            return self._problem(problem, scope), receive
        return (200, _ANSWER_HEADERS, _encode(answer)), receive

    def _problem(self, problem: problems.AuthProblem, scope: Scope) -> Answer:
        metadata = metadata_url_of(scope, self.public_url)
        return problem.status, problem.headers(metadata), problem.body()


async def _read(receive: Receive, limit: int) -> tuple[bytes | None, list[ReceiveMessage]]:
    """The whole body (None if it is over `limit` or the client went) and the messages read."""
    received: list[ReceiveMessage] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None, received
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, received
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), received


def _replaying(received: list[ReceiveMessage], receive: Receive) -> Receive:
    """A receive that gives the messages already read, then the rest as they come."""
    pending = list(received)

    async def again() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return again

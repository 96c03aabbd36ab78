"""Where a request came from, for the audit trail: request id, client IP, user agent."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.logging import redact

_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MAX_USER_AGENT = 200


class RequestIds:
    """ASGI layer: takes a sane X-Request-Id or makes one, and sends it back on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        # A caller's id is kept only if it is plainly an id, and never if it looks like a token.
        request_id = (
            text if _GOOD_REQUEST_ID.fullmatch(text) and redact(text) == text else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id

        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def context_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The request's id, client address and user agent, with anything token-like cut."""
    context = {"request_id": request.scope.get("state", {}).get("request_id", "")}
    if request.client is not None and request.client.host:
        context["client_ip"] = request.client.host
    user_agent = request.headers.get("user-agent")
    if user_agent:
        context["user_agent"] = redact(user_agent)[:_MAX_USER_AGENT]
    return context

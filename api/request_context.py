"""Where a request came from, for the audit trail: request id, client IP, user agent."""

from __future__ import annotations

from typing import Any

from litestar import Request

from infra.logging import redact

_MAX_USER_AGENT = 200


def context_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The request's id (the front door's), client address and user agent, with anything
    token-like cut."""
    context = {"request_id": request.scope.get("state", {}).get("request_id", "")}
    if request.client is not None and request.client.host:
        context["client_ip"] = request.client.host
    user_agent = request.headers.get("user-agent")
    if user_agent:
        context["user_agent"] = redact(user_agent)[:_MAX_USER_AGENT]
    return context

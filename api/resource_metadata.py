"""RFC 9728 protected-resource metadata, so MCP clients learn how to present a token here."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from api import problems
from api.edge import request_origin
from api.problems import METADATA_PATH
from domain.scopes import SCOPES


class ProtectedResourceMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    """What RFC 9728 says a protected resource publishes about itself."""

    resource: str
    scopes_supported: list[str]
    bearer_methods_supported: list[str]
    resource_name: str
    authorization_servers: list[str] = []


@get(METADATA_PATH, tags=["mcp"], cache=False, response_headers={"Cache-Control": "max-age=300"})
async def protected_resource_metadata(request: Request[Any, Any, Any]) -> ProtectedResourceMetadata:
    """The resource, its six scopes, and that tokens go in the Authorization header only."""
    public_url: str = request.app.state.get("public_url", "")
    # Outside development mode the public URL is set or the edge has checked the Host.
    resource = public_url or request_origin(request.scope)
    if not resource:
        raise problems.invalid_request("the Host header is not a host name and port")
    return ProtectedResourceMetadata(
        resource=resource,
        scopes_supported=list(SCOPES),
        bearer_methods_supported=["header"],
        resource_name="Anthra API",
        authorization_servers=list(request.app.state.get("authorization_servers", ())),
    )

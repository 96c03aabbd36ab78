"""Forward-auth for reverse proxies: nginx auth_request, Traefik ForwardAuth, Envoy ext_authz."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from litestar import Controller, MediaType, Request, Response, route
from litestar.enums import HttpMethod
from litestar.types import Scope

from api import problems
from api.auth import TOKEN_IN_URL, Authenticator, problem_response, token_in_url
from api.principal import Principal
from domain.scopes import in_order
from infra.policy import AmbiguousPath, Policy, path_of

AUTHZ_PATH = "/v1/authz"
# Envoy's ext_authz sends the original method; nginx and Traefik send GET.
_METHODS = [
    HttpMethod.GET,
    HttpMethod.HEAD,
    HttpMethod.POST,
    HttpMethod.PUT,
    HttpMethod.PATCH,
    HttpMethod.DELETE,
    HttpMethod.OPTIONS,
]
# (URI header, method header) of each proxy's convention, as named in their documentation.
_CONVENTIONS = (
    ("X-Original-URI", "X-Original-Method"),  # nginx auth_request, set in its config
    ("X-Forwarded-Uri", "X-Forwarded-Method"),  # Traefik ForwardAuth
)
_ENVOY_PATH = "X-Envoy-Original-Path"
# Visible ASCII but '%': a header value that stays readable and cannot be split.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_MAX_METHOD = 16
_MAX_ECHO = 200


class ForwardAuth(Controller):
    """`/v1/authz`: may the gateway pass this request on? 200 with who is calling, or the refusal.

    The original request is read from `X-Original-URI` and `X-Original-Method` (nginx), from
    `X-Forwarded-Uri` and `X-Forwarded-Method` (Traefik), or, as Envoy's ext_authz sends it,
    from the request itself: `/v1/authz/<original path>` or `X-Envoy-Original-Path`, with its own
    method. When several are present they must agree, so a client cannot smuggle a second,
    public-looking URI past a proxy that forwards client headers. The gateway must overwrite
    these headers with its own values.

    Only `Authorization: Bearer` counts: gateways front the public API, which takes tokens only,
    so an Auth.js session cookie is never accepted here. Unknown routes are denied.
    """

    path = AUTHZ_PATH
    tags = ["forward-auth"]

    @route(
        ["/", "/{original_path:path}"],
        http_method=_METHODS,
        status_code=200,
        security=[{}, {"bearer": []}],
    )
    async def authorize(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """200 with X-Anthra-Key-Id, -Owner-Id and -Scopes if the policy lets this caller pass."""
        try:
            return await _decide(request)
        except problems.AuthProblem as problem:
            return problem_response(request, problem)


async def _decide(request: Request[Any, Any, Any]) -> Response[bytes]:
    method, target = _original_request(request)
    raw_path, _, query = target.partition("?")
    if token_in_url(raw_path.encode("latin-1"), query.encode("latin-1")):
        raise problems.invalid_request(TOKEN_IN_URL)
    policy: Policy | None = request.app.state.get("policy")
    try:
        # The policy must judge the very path the upstream will serve, or none at all.
        path = path_of(target)
    except AmbiguousPath as e:
        raise problems.invalid_request(f"the original path is refused: {e}") from None
    if policy is None:
        return _denied("no route policy is loaded (ANTHRA_POLICY_FILE), so every route is denied")
    rule = policy.match_normalised(method, path)
    if rule is None:
        return _denied(
            f"{method} {path[:_MAX_ECHO]} is not in the route policy; unknown routes are denied"
        )
    if rule.public:
        return Response(b"", status_code=200, media_type=MediaType.TEXT)
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(_authorization_only(request.scope))
    if any(scope not in principal.scopes for scope in rule.scopes):
        # RFC 6750: scope= names what the resource needs, not only what is missing.
        raise problems.insufficient_scope(rule.scopes)
    return _granted(principal)


def _original_request(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """The method and request target the proxy is asking about; raises invalid_request."""
    claims: set[tuple[str, str]] = set()
    for uri_header, method_header in _CONVENTIONS:
        uri = _single(request, uri_header)
        method = _single(request, method_header)
        if uri is None:
            continue
        if method is None:
            # Guessing the method from this GET could grant a POST what only GET may do.
            raise problems.invalid_request(f"{uri_header} came without {method_header}")
        claims.add((_method(method), uri))
    envoy = _single(request, _ENVOY_PATH) or _tail(request)
    if envoy is not None:
        claims.add((_method(request.method), envoy))
    if not claims:
        raise problems.invalid_request(
            "the original request is missing: send X-Original-URI and X-Original-Method (nginx), "
            "X-Forwarded-Uri and X-Forwarded-Method (Traefik), or call /v1/authz/<path> (Envoy)"
        )
    if len(claims) > 1:
        raise problems.invalid_request("the headers naming the original request disagree")
    return claims.pop()


def _single(request: Request[Any, Any, Any], name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise problems.invalid_request(f"send one {name} header, not several")
    return (values[0].strip() or None) if values else None


def _method(value: str) -> str:
    method = value.strip().upper()
    if not (method.isascii() and method.isalpha() and len(method) <= _MAX_METHOD):
        raise problems.invalid_request("the original method is not an HTTP method")
    return method


def _tail(request: Request[Any, Any, Any]) -> str | None:
    """Envoy's path_prefix convention: the original target after /v1/authz, still encoded."""
    # raw_path, not path: the server has decoded `path` once already, and the policy decodes.
    raw: bytes = request.scope.get("raw_path") or quote(request.scope["path"]).encode()
    raw = raw.split(b"?", 1)[0]
    prefix = AUTHZ_PATH.encode() + b"/"
    if not raw.startswith(prefix) or len(raw) == len(prefix):
        return None
    tail = raw[len(prefix) - 1 :].decode("latin-1")
    query = request.scope.get("query_string", b"")
    return f"{tail}?{query.decode('latin-1')}" if query else tail


def _authorization_only(scope: Scope) -> Scope:
    # The authenticator falls back to a session cookie without an Authorization header; a
    # gateway in front of the token-only API must not, so it sees no cookie at all.
    headers = [(name, value) for name, value in scope["headers"] if name == b"authorization"]
    return cast("Scope", {**scope, "headers": headers})


def _granted(principal: Principal) -> Response[bytes]:
    scopes = " ".join(in_order(principal.scopes))
    return Response(
        b"",
        status_code=200,
        media_type=MediaType.TEXT,
        headers={
            "X-Anthra-Key-Id": str(principal.key_id),
            "X-Anthra-Owner-Id": quote(principal.user_id, safe=_HEADER_SAFE),
            "X-Anthra-Scopes": scopes,
        },
    )


def _denied(description: str) -> Response[bytes]:
    # Not an RFC 6750 challenge: no token would help, so there is no WWW-Authenticate.
    body = problems.ErrorBody(error="access_denied", error_description=description)
    return Response(problems.encode(body), status_code=403, media_type=MediaType.JSON)

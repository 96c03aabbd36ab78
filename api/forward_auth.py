"""Forward-auth for reverse proxies: nginx auth_request, Traefik ForwardAuth, Envoy ext_authz."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import quote

from litestar import Controller, Request, Response, route
from litestar.enums import HttpMethod
from litestar.types import HTTPScope, Scope

from api import problems
from api.auth import TOKEN_IN_URL, Authenticator, metadata_url_of, token_in_url
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
_MAX_SCOPE_SETS = 64  # distinct sets are few (six scopes); the bound keeps the cache small
_PREFIX = AUTHZ_PATH.encode() + b"/"


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

    The front door answers this route before Litestar's routing (`Gatekeeper.decide`); this
    handler documents it and answers the methods the front door leaves to Litestar.
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
        # The front door answers this path itself but for HEAD and OPTIONS; its answer and this
        # one come from the same gatekeeper.
        gatekeeper: Gatekeeper = request.app.state.gatekeeper
        status, headers, body = gatekeeper.decide(request.scope)
        named = {name.decode(): value.decode("latin-1") for name, value in headers}
        media_type = named.pop("content-type")
        return Response(body, status_code=status, headers=named, media_type=media_type)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_JSON = (b"content-type", b"application/json")
# The names of the headers the gateway's conventions send, as ASGI spells them (lower case).
_NAMES = {
    name.lower().encode(): name
    for name in (*(n for pair in _CONVENTIONS for n in pair), _ENVOY_PATH)
}
_OWNER_SAFE = re.compile("[" + re.escape(_HEADER_SAFE) + "]*")


class Gatekeeper:
    """The decision of `/v1/authz` from a request's scope: the route policy, compiled once, and
    the Bearer check. Answers (status, headers, body); never raises for a caller's request."""

    path = AUTHZ_PATH

    def __init__(
        self, policy: Policy | None, authenticator: Authenticator, public_url: str = ""
    ) -> None:
        self.policy = policy
        self.authenticator = authenticator
        self.public_url = public_url
        # The scopes a key holds repeat from one request to the next: joined once per set.
        self._scopes_text: dict[frozenset[str], bytes] = {}

    def decide(self, scope: Scope) -> Answer:
        """The answer to one `/v1/authz` request."""
        try:
            return self._decide(scope)
        except problems.AuthProblem as problem:
            return (
                problem.status,
                problem.headers(metadata_url_of(scope, self.public_url)),
                problem.body(),
            )

    def _decide(self, scope: Scope) -> Answer:
        method, target = _original_request(scope)
        raw_path, _, query = target.partition("?")
        if token_in_url(raw_path.encode("latin-1"), query.encode("latin-1")):
            raise problems.invalid_request(TOKEN_IN_URL)
        try:
            # The policy must judge the very path the upstream will serve, or none at all.
            path = path_of(target)
        except AmbiguousPath as e:
            raise problems.invalid_request(f"the original path is refused: {e}") from None
        if self.policy is None:
            return _denied(
                "no route policy is loaded (ANTHRA_POLICY_FILE), so every route is denied"
            )
        rule = self.policy.match_normalised(method, path)
        if rule is None:
            return _denied(
                f"{method} {path[:_MAX_ECHO]} is not in the route policy; unknown routes are denied"
            )
        if rule.public:
            return 200, [_TEXT], b""
        # Gateways front the token-only API: a session cookie is never looked at here.
        principal = self.authenticator.bearer(scope)
        granted = principal.scopes
        if any(s not in granted for s in rule.scopes):
            # RFC 6750: scope= names what the resource needs, not only what is missing.
            raise problems.insufficient_scope(rule.scopes)
        return 200, self._granted(principal), b""

    def _granted(self, principal: Principal) -> list[tuple[bytes, bytes]]:
        scopes = self._scopes_text.get(principal.scopes)
        if scopes is None:
            scopes = " ".join(in_order(principal.scopes)).encode()
            if len(self._scopes_text) < _MAX_SCOPE_SETS:
                self._scopes_text[principal.scopes] = scopes
        owner = principal.user_id
        if not (owner.isascii() and _OWNER_SAFE.fullmatch(owner)):
            owner = quote(owner, safe=_HEADER_SAFE)
        return [
            _TEXT,
            (b"x-anthra-key-id", str(principal.key_id).encode()),
            (b"x-anthra-owner-id", owner.encode()),
            (b"x-anthra-scopes", scopes),
        ]


def _original_request(scope: Scope) -> tuple[str, str]:
    """The method and request target the proxy is asking about; raises invalid_request."""
    found: dict[str, str | None] = {}
    for name, value in scope["headers"]:
        header = _NAMES.get(name)
        if header is None:
            continue
        if header in found:
            raise problems.invalid_request(f"send one {header} header, not several")
        found[header] = value.decode("latin-1").strip() or None
    claims: set[tuple[str, str]] = set()
    for uri_header, method_header in _CONVENTIONS:
        uri = found.get(uri_header)
        method = found.get(method_header)
        if uri is None:
            continue
        if method is None:
            # Guessing the method from this GET could grant a POST what only GET may do.
            raise problems.invalid_request(f"{uri_header} came without {method_header}")
        claims.add((_method(method), uri))
    envoy = found.get(_ENVOY_PATH) or _tail(scope)
    if envoy is not None:
        claims.add((_method(cast("HTTPScope", scope)["method"]), envoy))
    if not claims:
        raise problems.invalid_request(
            "the original request is missing: send X-Original-URI and X-Original-Method (nginx), "
            "X-Forwarded-Uri and X-Forwarded-Method (Traefik), or call /v1/authz/<path> (Envoy)"
        )
    if len(claims) > 1:
        raise problems.invalid_request("the headers naming the original request disagree")
    return claims.pop()


def _method(value: str) -> str:
    method = value.strip().upper()
    if not (method.isascii() and method.isalpha() and len(method) <= _MAX_METHOD):
        raise problems.invalid_request("the original method is not an HTTP method")
    return method


def _tail(scope: Scope) -> str | None:
    """Envoy's path_prefix convention: the original target after /v1/authz, still encoded."""
    # raw_path, not path: the server has decoded `path` once already, and the policy decodes.
    raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
    raw = raw.split(b"?", 1)[0]
    if not raw.startswith(_PREFIX) or len(raw) == len(_PREFIX):
        return None
    tail = raw[len(_PREFIX) - 1 :].decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{tail}?{query.decode('latin-1')}" if query else tail


def _denied(description: str) -> Answer:
    # Not an RFC 6750 challenge: no token would help, so there is no WWW-Authenticate.
    body = problems.ErrorBody(error="access_denied", error_description=description)
    return 403, [_JSON], problems.encode(body)

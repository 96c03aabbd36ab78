"""Authentication of a request: Bearer token, else the Auth.js session cookie; scope guards.

Mount `KeyAuthMiddleware` on any Litestar app with an `Authenticator`, and guard handlers with
`requires_scopes(...)`. The check runs in a plain ASGI middleware and async guards: no thread hop
on the hot path.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import psycopg
from litestar import MediaType, Request, Response
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import (
    ASGIApp,
    ExceptionHandlersMap,
    Receive,
    Scope,
    Send,
)

from api import problems
from api.authjs import (
    SessionCookieCodec,
    SessionCookieError,
)
from api.edge import origin_of_url, request_origin
from api.principal import Principal
from api.session_cookies import find_session_cookie, parse_cookie_header
from infra.auth_failures import AuthFailures
from infra.authjs_sessions import SessionClaims
from infra.metrics import TALLY
from infra.outage import Outage, summary
from projections.verification_index.index import IndexStale, Verification

log = logging.getLogger("anthra.auth")

Verify = Callable[[str, Sequence[str]], Verification]
_JWE_DOTS = 4  # compact JWE: header..iv.ciphertext.tag; a database session token has none
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_IN_URL = "tokens are accepted only in the Authorization header, never in the URL"  # noqa: S105
_ONE_AUTHORIZATION = "send one Authorization header, not several"


class SessionLookup(Protocol):
    """Auth.js's database strategy: a session token to its user, or None if unknown or expired."""

    async def user(self, session_token: str) -> SessionClaims | None: ...


def token_in_url(raw_path: bytes, query_string: bytes) -> bool:
    """Whether a token or an access_token parameter is in the URL, in any encoding."""
    for part in (raw_path, query_string):
        # A token holds "_" and a parameter "=", or their escapes: most URLs have none of them.
        if not part or (b"_" not in part and b"=" not in part and b"%" not in part):
            continue
        text = part.lower()
        for _ in range(4):  # undo percent-encoding, double encoding included
            if b"ant_live_" in text or b"access_token=" in text:
                return True
            if b"%" not in text:
                break
            text = unquote_to_bytes(text).lower()
    return False


class Authenticator:
    """Turns a request's headers into a Principal, or the RFC 6750 problem that refuses it."""

    def __init__(
        self,
        verify: Verify,
        session_codec: SessionCookieCodec | None = None,
        allowed_origins: Iterable[str] = (),
        database_sessions: SessionLookup | None = None,
        *,
        public_url: str = "",
        failures: AuthFailures | None = None,
    ) -> None:
        self.verify = verify
        self.session_codec = session_codec
        self.allowed_origins = frozenset(filter(None, map(origin_of_url, allowed_origins)))
        self.database_sessions = database_sessions
        self._sessions_outage = Outage(log, "the Auth.js session database")
        # Where the service is reached, when configured; else each request's own trusted origin.
        self.public_origin = origin_of_url(public_url) if public_url else ""
        self.failures = failures

    async def session_principal(self, scope: Scope) -> Principal | None:
        """The signed-in user of a session cookie, if any; for pages, which take no tokens."""
        cookies = [value for name, value in scope["headers"] if name == b"cookie"]
        return await self._session(b"; ".join(cookies)) if cookies else None

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller of this request; raises AuthProblem (a 503 one if it cannot tell)."""
        if token_in_url(
            scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")
        ):
            raise problems.invalid_request(TOKEN_IN_URL)
        authorization: bytes | None = None
        cookie_headers: list[bytes] | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    raise problems.invalid_request(_ONE_AUTHORIZATION)
                authorization = value
            elif name == b"cookie":
                if cookie_headers is None:
                    cookie_headers = [value]
                else:
                    cookie_headers.append(value)
        if authorization is not None:
            return self._bearer(authorization, scope)
        if cookie_headers:
            principal = await self._session(b"; ".join(cookie_headers))
            if principal is not None:
                if scope.get("method", "GET") not in SAFE_METHODS:
                    self._require_same_origin(scope, dict(scope["headers"]))
                return principal
        raise problems.no_credentials()

    def bearer(self, scope: Scope) -> Principal:
        """The caller of a request that may only present `Authorization: Bearer` (a session
        cookie is not looked at); raises AuthProblem."""
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    raise problems.invalid_request(_ONE_AUTHORIZATION)
                authorization = value
        if authorization is None:
            raise problems.no_credentials()
        return self._bearer(authorization, scope, "authz")

    def attempt_failed(self, scope: Scope, credential: str | None = None) -> None:
        """Count a refused credential against its client and token prefix; raises the 429 if
        either is already over its limit. Never called for a credential that passed."""
        if self.failures is None:
            return
        client = scope.get("client")
        retry_after = self.failures.attempt_failed(client[0] if client else None, credential)
        if retry_after is not None:
            raise problems.too_many_failures(retry_after)

    def _bearer(self, header: bytes, scope: Scope, route: str = "api") -> Principal:
        try:
            value = header.decode("ascii")
        except UnicodeDecodeError:
            raise problems.invalid_request("the Authorization header is not ASCII") from None
        scheme, _, credential = value.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or " " in credential:
            raise problems.invalid_request("use Authorization: Bearer <token>")
        try:
            verification = self.verify(credential, ())
        except IndexStale:
            TALLY.verified("stale", route)
            raise problems.unavailable() from None
        record = verification.record
        if not verification.valid or record is None:
            TALLY.verified("invalid_token", route)
            self.attempt_failed(scope, credential)
            raise problems.invalid_token(verification.description)
        TALLY.verified("valid", route)
        return Principal(
            user_id=record.owner_id,
            scopes=record.scopes,
            via="token",
            key_id=record.key_id,
            expires_at=record.expires_at,
        )

    async def _session(self, cookie_header: bytes) -> Principal | None:
        found = find_session_cookie(parse_cookie_header(cookie_header.decode("latin-1")))
        if found is None:
            return None
        name, value = found
        if value.count(".") == _JWE_DOTS:
            if self.session_codec is None:
                return None
            try:
                claims = self.session_codec.decode(name, value)
            except SessionCookieError as e:
                # Signed out, in effect; the reason is logged, the cookie never is.
                log.info("session cookie refused: %s", e.reason)
                return None
        elif self.database_sessions is not None:
            try:
                found_claims = await self.database_sessions.user(value)
            except psycopg.Error as e:
                self._sessions_outage.failed(summary(e), "session cookies answer 503")
                raise problems.unavailable(problems.SESSIONS_UNREACHABLE) from None
            self._sessions_outage.succeeded()
            if found_claims is None:
                log.info("database session refused: unknown or expired")
                return None
            claims = found_claims
        else:
            return None
        return Principal.session(claims.user_id)

    def _require_same_origin(self, scope: Scope, headers: dict[bytes, bytes]) -> None:
        fetch_site = headers.get(b"sec-fetch-site")
        if fetch_site is not None:
            if fetch_site != b"same-origin":
                raise problems.cross_site()
            return
        # Scheme, host and port all count: http://host and https://host are different sites.
        origin = origin_of_url(headers.get(b"origin", b"").decode("latin-1"))
        if not origin:
            raise problems.cross_site()
        if origin in self.allowed_origins:
            return
        if origin == (self.public_origin or request_origin(scope)):
            return
        raise problems.cross_site()


class KeyAuthMiddleware:
    """ASGI middleware: authenticates requests under the protected paths, or answers the problem."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        protected: Sequence[str] = ("/api/", "/mcp"),
        public_url: str = "",
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.protected = tuple(protected)
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(self.protected):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(scope)
        except problems.AuthProblem as problem:
            await _send_problem(send, problem, metadata_url_of(scope, self.public_url))
            return
        scope["user"] = principal
        scope["auth"] = principal.via
        await self.app(scope, receive, send)


def metadata_url_of(scope: Scope, public_url: str = "") -> str:
    """The protected-resource metadata URL for a request's challenges: under the public URL,
    else the request's own trusted origin (its Host checked by the edge)."""
    return problems.resource_metadata_url(public_url or request_origin(scope))


async def _send_problem(
    send: Send, problem: problems.AuthProblem, resource_metadata: str = ""
) -> None:
    await problems.send_answer(
        send, problem.status, problem.headers(resource_metadata), problem.body()
    )


def require_secret(
    authorization: Sequence[str], secret: str, what: str, scope: Scope, failures: Authenticator
) -> None:
    """One `Authorization: Bearer <secret>` header carrying a configured secret (the verify or the
    operator secret), compared in constant time; a wrong one counts as a failed attempt of the
    client's (no part of a secret is kept)."""
    if not authorization:
        raise problems.no_credentials()
    if len(authorization) > 1:
        raise problems.invalid_request(_ONE_AUTHORIZATION)
    scheme, _, credential = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise problems.invalid_request(f"use Authorization: Bearer <{what}>")
    if not hmac.compare_digest(credential.strip().encode(), secret.encode()):
        failures.attempt_failed(scope)
        raise problems.AuthProblem(401, "invalid_token", f"the {what} is wrong")


def problem_response(request: Request[Any, Any, Any], exc: problems.AuthProblem) -> Response[Any]:
    """Exception handler for guards' AuthProblem: mount it with the middleware."""
    public_url = request.app.state.get("public_url", "")
    return Response(
        content=exc.body(),
        status_code=exc.status,
        media_type=MediaType.JSON,
        headers=exc.header_map(metadata_url_of(request.scope, public_url)),
    )


AUTH_EXCEPTION_HANDLERS: ExceptionHandlersMap = {problems.AuthProblem: problem_response}


# Guards: async, so Litestar awaits them in the request task instead of a thread pool.


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise problems.no_credentials()
    return principal


def requires_scopes(*scopes: str) -> Callable[..., Any]:
    """A guard: the caller's key must hold every one of these scopes (a session holds all)."""
    needed = tuple(scopes)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        granted = principal_of(connection).scopes
        missing = [s for s in needed if s not in granted]
        if missing:
            raise problems.insufficient_scope(missing)

    guard.scopes = needed  # type: ignore[attr-defined]  # read by the OpenAPI contract
    return guard


async def requires_session(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A guard: key management needs a signed-in person, never a token."""
    if principal_of(connection).via != "session":
        raise problems.session_required()

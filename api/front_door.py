"""The front door: the one ASGI layer every request passes before the framework sees it.

In one pass over the request's headers it does what three stacked layers used to: refuses
oversized headers (431) and request targets (414), believes `X-Forwarded-*` only from a trusted
proxy and refuses a Host the service does not serve (421) (see `api.edge`), takes a sane
`X-Request-Id` or makes one and sends it back, and refuses a URL holding a token, in any
encoding, on every path (400) before routing. It authenticates requests to the protected paths
(`/api/`, `/mcp`: Bearer token, else session cookie; the refusal is answered here) and does no
authentication work for any other path. It answers `/v1/authz` itself (the gateway's question,
asked once per upstream request) without Litestar's routing, and the common `POST /v1/verify`
(a clean question about now, from a service or from anyone: `api.verify.VerifyAtTheDoor`; the
rest goes on to the route), and it writes the access line of every request, answered here or
by the app, to the buffered access log.

It also sets every answer's defaults: `Cache-Control: no-store` unless the answer chose its own,
`Anthra-Token-Expiration` when the caller's token expires, and an OPTIONS answer's `Allow`
listing every method of its path (Litestar 2's own lists only those of the first handler
registered there).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Final, Protocol, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from api import problems
from api.auth import TOKEN_IN_URL, Authenticator, metadata_url_of, token_in_url
from api.edge import MAX_TARGET_BYTES, TrustedProxies, public_host, refusal, split_authority
from api.principal import Principal
from domain.token import DISPLAY_PREFIX_LENGTH
from infra.access_log import AccessLog
from infra.logging import ELLIPSIS, redact
from infra.metrics import TALLY
from infra.settings import Settings

_GOOD_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
# The characters RFC 3986 allows in an authority, as Litestar's router checks the Host before
# routing (400): checked here for every request, so the paths answered here refuse it too.
_GOOD_HOST: Final = re.compile(rb"[0-9A-Za-z!$&'()*+,;=\-._~:\[\]@%]*")
_HOST: Final = b"host"
# The methods of `/v1/authz` whose answer has a body as it is; the rest go to Litestar's route.
_ANSWERED_HERE: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID: Final = b"x-request-id"
_CACHE_CONTROL: Final = b"cache-control"
_NO_STORE: Final = (b"cache-control", b"no-store")
# GitHub's convention: a token's holder learns its expiry from every answer.
TOKEN_EXPIRATION: Final = b"anthra-token-expiration"
_ALLOW: Final = b"allow"
_DISCONNECT: Final = "http.disconnect"
# nginx's status for a request whose client left before it was answered (or was cut off by the
# server's read deadline): only ever written to the access log, never sent.
CLIENT_CLOSED_REQUEST: Final = 499
_HTTP: str = ScopeType.HTTP.value  # a plain str: comparing with the enum member costs more

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
# The paths whose every request needs a caller: the API's own routes and the MCP server's.
PROTECTED: Final = ("/api/", "/mcp")


def _up_to_the_first_token(text: str) -> str:
    """The text, redacted, up to the end of the first token's display prefix."""
    redacted = redact(text)
    cut = redacted.find(ELLIPSIS)
    return redacted if cut < 0 else redacted[: cut + 1]


def _refused_target(target: str) -> str:
    """The target of a request refused for a token in its URL, as its access line keeps it: the
    first token's display prefix and where it was, and nothing else that may be more of it. A
    token split across parameters or segments, or broken by a character, no longer looks like
    one piece by piece: so nothing after the prefix, no other parameter, and no path segment
    longer than a prefix is written."""
    path, _, query = target.partition("?")
    in_path = _up_to_the_first_token(path)
    if in_path.endswith(ELLIPSIS):
        return in_path
    kept = "/".join(s if len(s) <= DISPLAY_PREFIX_LENGTH else ELLIPSIS for s in path.split("/"))
    for pair in query.split("&"):
        name, _, value = _up_to_the_first_token(pair).partition("=")
        if value.endswith(ELLIPSIS):
            if len(name) <= DISPLAY_PREFIX_LENGTH and len(value) <= DISPLAY_PREFIX_LENGTH + 1:
                return f"{kept}?{name}={value}"
            break
    return f"{kept}?{ELLIPSIS}" if query else kept


class Gatekeeper(Protocol):
    """What answers the gateway's `/v1/authz` question from the request's scope alone."""

    path: str

    def decide(self, scope: Scope) -> Answer: ...


class Verifier(Protocol):
    """What answers `POST /v1/verify` when it can from the request alone, else hands it on."""

    path: str

    async def __call__(self, scope: Scope, receive: Receive) -> tuple[Answer | None, Receive]: ...


class FrontDoor:
    """Outermost ASGI layer: limits, proxies, hosts, request ids, tokens in URLs, `/v1/authz`,
    answer defaults and the access log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_headers: int,
        max_header_bytes: int,
        trusted_proxies: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        access_log: AccessLog | None = None,
        gatekeeper: Gatekeeper | None = None,
        verifier: Verifier | None = None,
        allowed_methods: Mapping[str, str] | None = None,
        authenticator: Authenticator | None = None,
        protected: tuple[str, ...] = PROTECTED,
        public_url: str = "",
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.protected = protected
        self.public_url = public_url
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        networks = tuple(trusted_proxies)
        self.proxies = TrustedProxies(networks) if networks else None
        hosts = frozenset(h.lower().encode("ascii") for h in allowed_hosts)
        self.allowed_hosts = hosts or None
        self.access_log = access_log
        self.gatekeeper = gatekeeper
        self._authz = gatekeeper.path if gatekeeper is not None else "\0"
        self._authz_under = self._authz + "/"
        self.verifier = verifier
        # Read when an OPTIONS answer goes out: filled in once the app's routes are known.
        self.allowed_methods = allowed_methods if allowed_methods is not None else {}
        # Ids this process makes: a random prefix and a counter, as long as a UUID's hex.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._too_large = refusal(
            431,
            "request_headers_too_large",
            f"the request's headers exceed the limit of {max_headers} fields or "
            f"{max_header_bytes} bytes of names and values",
        )
        self._too_long = refusal(
            414, "uri_too_long", f"the request's path and query exceed {MAX_TARGET_BYTES} bytes"
        )
        self._misdirected = refusal(
            421,
            "misdirected_request",
            "this service does not serve the host named in the request (ANTHRA_ALLOWED_HOSTS)",
        )
        self._bad_host: Answer = (
            400,
            [(b"content-type", b"application/json")],
            problems.error_body("invalid_request", "Invalid host header"),
        )
        token_in_url_problem = problems.invalid_request(TOKEN_IN_URL)
        self._token_in_url = (
            token_in_url_problem.status,
            token_in_url_problem.headers(),
            token_in_url_problem.body(),
        )

    @classmethod
    def configured(
        cls,
        app: ASGIApp,
        settings: Settings,
        *,
        access_log: AccessLog | None = None,
        gatekeeper: Gatekeeper | None = None,
        verifier: Verifier | None = None,
        allowed_methods: Mapping[str, str] | None = None,
        authenticator: Authenticator | None = None,
    ) -> FrontDoor:
        return cls(
            app,
            max_headers=settings.max_headers,
            max_header_bytes=settings.max_header_bytes,
            trusted_proxies=settings.trusted_proxies,
            # Hosts are checked only when listed; the public URL's host is then one of them.
            allowed_hosts=(
                (*settings.allowed_hosts, *public_host(settings.public_url))
                if settings.allowed_hosts
                else ()
            ),
            access_log=access_log,
            gatekeeper=gatekeeper,
            verifier=verifier,
            allowed_methods=allowed_methods,
            authenticator=authenticator,
            public_url=settings.public_url,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != _HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = cast("list[tuple[bytes, bytes]]", scope["headers"])
        given_id = host = b""
        hosts = 0
        refused: Answer | None = None
        if len(headers) > self.max_headers:
            refused = self._too_large
        else:
            size = 0
            for name, value in headers:  # a plain loop: cheaper here than sum(map(len, …))
                size += len(name) + len(value)
                if name == _HOST:
                    host = value
                    hosts += 1
                elif name == _REQUEST_ID:
                    given_id = value
            if size > self.max_header_bytes:
                refused = self._too_large
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        if refused is None:
            if len(raw_path) + len(query) > MAX_TARGET_BYTES:
                refused = self._too_long
            else:
                if self.proxies is not None:
                    self.proxies.apply(scope)
                if self.allowed_hosts is not None and not self._serves(scope):
                    refused = self._misdirected
                elif token_in_url(raw_path, query):
                    refused = self._token_in_url
                elif hosts > 1 or (host and not _GOOD_HOST.fullmatch(host)):
                    # Two Host lines are a 400 (RFC 9112 3.2): layers that read the first and
                    # ones that read the last would each believe a different host.
                    refused = self._bad_host
        request_id = self._request_id(given_id)
        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": request_id}
        else:
            state["request_id"] = request_id
        id_header = (_REQUEST_ID, request_id.encode())
        status: int | None = None  # the status the answer went out with, once it has
        method = cast("HTTPScope", scope)["method"]
        path: str = scope["path"]
        client_gone = False

        async def receive_watching() -> ReceiveMessage:
            nonlocal client_gone
            message = await receive()
            if message["type"] == _DISCONNECT:
                client_gone = True
            return message

        async def send_with_defaults(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                # An answer begun after the client left reaches no one: whatever the app made
                # of the lost request body, the line says the client closed the request.
                status = CLIENT_CLOSED_REQUEST if client_gone else message["status"]
                message["headers"] = self._defaults(message.get("headers", ()), id_header, scope)
            await send(message)

        try:
            if refused is not None:
                await problems.send_answer(send_with_defaults, *refused)
            elif self.authenticator is not None and path.startswith(self.protected):
                try:
                    principal = await self.authenticator.authenticate(scope)
                except problems.AuthProblem as problem:
                    await problems.send_answer(
                        send_with_defaults,
                        problem.status,
                        problem.headers(metadata_url_of(scope, self.public_url)),
                        problem.body(),
                    )
                else:
                    scope["user"] = principal
                    scope["auth"] = principal.via
                    await self.app(scope, receive_watching, send_with_defaults)
            elif self.gatekeeper is not None and (
                path == self._authz or path.startswith(self._authz_under)
            ):
                if method in _ANSWERED_HERE:
                    await problems.send_answer(
                        send_with_defaults, *self.gatekeeper.decide(scope), sized=True
                    )
                else:
                    # Litestar's: a HEAD answer without its body, an OPTIONS one with Allow,
                    # 405 for a method the route does not take.
                    await self.app(scope, receive_watching, send_with_defaults)
            elif self.verifier is not None and method == "POST" and path == self.verifier.path:
                answer, receive_rest = await self.verifier(scope, receive_watching)
                if answer is not None:
                    await problems.send_answer(send_with_defaults, *answer, sized=True)
                else:
                    await self.app(scope, receive_rest, send_with_defaults)
            else:
                await self.app(scope, receive_watching, send_with_defaults)
        finally:
            TALLY.answered(self._kind(path), time.perf_counter() - started)
            if status is None:
                # No answer began: the server answers 500, unless the client had left.
                status = CLIENT_CLOSED_REQUEST if client_gone else 500
            access_log = self.access_log
            if access_log is not None:
                client = scope.get("client")
                target = raw_path.decode("latin-1")
                if query:
                    target = f"{target}?{query.decode('latin-1')}"
                if refused is self._token_in_url:
                    target = _refused_target(target)
                access_log.line(
                    f"{client[0]}:{client[1]}" if client else "-",
                    method,
                    target,
                    scope.get("http_version", "1.1"),
                    status,
                    request_id,
                )

    def _kind(self, path: str) -> str:
        """The kind of route, for the latency histogram (a label of four values, never a path)."""
        if path.startswith(self.protected):
            return "api"
        if path == self._authz or path.startswith(self._authz_under):
            return "authz"
        return "verify" if path == "/v1/verify" else "other"

    def _request_id(self, given: bytes) -> str:
        # A caller's id is kept only if it is plainly an id, and never if it looks like a token.
        if given and _GOOD_REQUEST_ID.fullmatch(given):
            text = given.decode("ascii")
            if redact(text) == text:
                return text
        return f"{self._id_prefix}{next(self._ids):016x}"

    def _defaults(
        self, given: Iterable[tuple[bytes, bytes]], id_header: tuple[bytes, bytes], scope: Scope
    ) -> list[tuple[bytes, bytes]]:
        headers = list(given)
        cache_control = allow = False
        for name, _ in headers:
            lowered = name.lower()
            if lowered == _CACHE_CONTROL:
                cache_control = True
            elif lowered == _ALLOW:
                allow = True
        if not cache_control:
            headers.append(_NO_STORE)
        principal = scope.get("user")
        if isinstance(principal, Principal) and principal.expires_at is not None:
            expires = principal.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            headers.append((TOKEN_EXPIRATION, expires.encode()))
        if allow and scope.get("method") == "OPTIONS":
            methods = self.allowed_methods.get(scope.get("path_template", ""))
            if methods:
                headers = [(n, v) for n, v in headers if n.lower() != _ALLOW]
                headers.append((_ALLOW, methods.encode()))
        headers.append(id_header)
        return headers

    def _serves(self, scope: Scope) -> bool:
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if len(hosts) != 1:
            return False
        parts = split_authority(hosts[0].decode("latin-1"))
        return parts is not None and parts[0].encode() in self.allowed_hosts  # type: ignore[operator]

"""RFC 6750 error answers: one place that spells every status, header and body."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import msgspec
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Send

from infra.logging import redact

REALM = 'Bearer realm="anthra"'


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error body: an RFC 6750-style code, a sentence, and the field at fault if any."""

    error: str
    error_description: str
    field: str | None = None

    def __post_init__(self) -> None:
        # A description may quote what the caller sent (an unknown field's name, a scope, an
        # enum value, a path): a token in it keeps its display prefix only, as in every log.
        self.error_description = _without_tokens(self.error_description)
        if self.field is not None:
            self.field = _without_tokens(self.field)


# Most descriptions are the same few sentences (every refused token gets one): redacting each
# once keeps a flood of 401s as cheap as it was.
_without_tokens = functools.lru_cache(maxsize=1024)(redact)


encode = msgspec.json.Encoder().encode
INDEX_CATCHING_UP = "the verification index is catching up; retry shortly"
SESSIONS_UNREACHABLE = "the session database is unreachable; retry shortly"


def error_body(error: str, description: str) -> bytes:
    """An error body as JSON bytes, for layers that answer before Litestar does."""
    return encode(ErrorBody(error=error, error_description=description))


class AuthProblem(Exception):
    """An authentication or authorization failure, answered with its WWW-Authenticate challenge."""

    def __init__(
        self,
        status: int,
        error: str | None,
        description: str,
        scope: Sequence[str] = (),
        body_error: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = tuple(scope)
        self.body_error = body_error or error or "unauthorized"
        self.retry_after = retry_after

    def challenge(self, resource_metadata: str = "") -> str:
        """The WWW-Authenticate value: realm, error, description, scope, and on 401 and 403 where
        the protected-resource metadata is (RFC 9728, as MCP clients look for it)."""
        parts = [REALM]
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
        if self.scope:
            parts.append(f'scope="{" ".join(self.scope)}"')
        if resource_metadata and self.status in (401, 403):
            parts.append(f'resource_metadata="{resource_metadata}"')
        return ", ".join(parts)

    def body(self) -> bytes:
        return encode(ErrorBody(error=self.body_error, error_description=self.description))

    def header_map(self, resource_metadata: str = "") -> dict[str, str]:
        """The answer's headers but its content type: the challenge, or Retry-After on a 429."""
        if self.retry_after is not None:
            return {"Retry-After": str(self.retry_after), "Cache-Control": "no-store"}
        return {"WWW-Authenticate": self.challenge(resource_metadata), "Cache-Control": "no-store"}

    def headers(self, resource_metadata: str = "") -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json")] + [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.header_map(resource_metadata).items()
        ]


METADATA_PATH = "/.well-known/oauth-protected-resource"


def resource_metadata_url(base: str) -> str:
    """Where this resource's RFC 9728 metadata is, under the public URL or the request's origin;
    "" when there is neither."""
    return f"{base}{METADATA_PATH}" if base else ""


def unavailable(description: str = INDEX_CATCHING_UP) -> AuthProblem:
    """Something authentication needs cannot answer: 503, never fail open; says what."""
    return AuthProblem(503, None, description, body_error="temporarily_unavailable", retry_after=1)


def no_credentials() -> AuthProblem:
    return AuthProblem(
        401,
        None,
        "authentication required: send Authorization: Bearer <token>",
        body_error="unauthorized",
    )


def invalid_request(description: str) -> AuthProblem:
    return AuthProblem(400, "invalid_request", description)


INVALID_TOKEN = "the access token is invalid, revoked or expired"  # noqa: S105 (words, no secret)


def invalid_token(description: str = "") -> AuthProblem:
    """Unknown, malformed, revoked and expired tokens answer identically: nothing to probe. A key
    refused for a reason its holder can act on (suspended, rotated, blocked by the lifetime
    policy) says so: only the holder of that very token can learn it."""
    return AuthProblem(401, "invalid_token", description or INVALID_TOKEN)


def insufficient_scope(needed: Sequence[str]) -> AuthProblem:
    return AuthProblem(
        403,
        "insufficient_scope",
        f"the token lacks the scope this request needs: {' '.join(needed)}",
        scope=needed,
    )


def too_many_failures(retry_after: int) -> AuthProblem:
    # Said only of a credential that failed anyway: a valid one is never answered so.
    return AuthProblem(
        429,
        None,
        "too many failed authentication attempts from this client or for this token prefix; "
        "retry later",
        body_error="too_many_requests",
        retry_after=retry_after,
    )


def session_required() -> AuthProblem:
    return AuthProblem(
        403,
        "insufficient_scope",
        "managing keys needs a signed-in session; a token cannot mint keys or change scopes",
    )


def cross_site() -> AuthProblem:
    return AuthProblem(
        403,
        None,
        "a state-changing request signed in with a session cookie must come from the same origin",
        body_error="cross_site_request",
    )


async def send_answer(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    sized: bool = False,
) -> None:
    """Answer from an ASGI layer that runs before Litestar's routing (the front door, the auth
    middleware): the start, then the whole body; with its Content-Length if `sized`."""
    if sized:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)

"""Refusals from the ledger as exceptions: the status, the RFC 6750 error, and what to do next."""

from __future__ import annotations

import re

import httpx
import msgspec

from anthra_keys_client.redaction import redact
from anthra_keys_client.retrying import retry_after_of
from anthra_keys_client.schemas import ErrorBody


class AnthraError(Exception):
    """The ledger refused a request, or could not be reached."""

    def __init__(
        self,
        status: int | None,
        error: str,
        description: str,
        *,
        field: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        # Whatever the text came from, a token in it is cut to its display prefix.
        self.description = redact(description)
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        field = f" (field {self.field})" if self.field else ""
        return f"{status}{self.error}: {self.description}{field}"

    def as_dict(self) -> dict[str, object]:
        """The refusal as plain data, for machine output."""
        return {
            "status": self.status,
            "error": self.error,
            "error_description": self.description,
            "field": self.field,
        }


class MissingCredential(AnthraError):
    """No token was given: set ANTHRA_TOKEN."""

    def __init__(self, description: str) -> None:
        super().__init__(None, "missing_credential", description)


class BadRequest(AnthraError):
    """400 or 422: the request was wrong; `field` names what."""


class Unauthorized(AnthraError):
    """401: the token (or the verify secret) is missing, unknown, revoked or expired."""


class Forbidden(AnthraError):
    """403: the credential is valid but may not do this; `scope` is what it would need."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        scope: tuple[str, ...] = (),
        field: str | None = None,
    ) -> None:
        self.scope = scope
        super().__init__(status, error, description, field=field)

    def _message(self) -> str:
        needs = f" (needs scope {' '.join(self.scope)})" if self.scope else ""
        return super()._message() + needs

    def as_dict(self) -> dict[str, object]:
        return super().as_dict() | {"scope": list(self.scope)}


class NotFound(AnthraError):
    """404: no such key among the caller's, or no such route on this ledger."""


class Conflict(AnthraError):
    """409: the key cannot change any more (revoked, expired), or changed under the request."""


class WaitAndRetry(AnthraError):
    """A refusal that says how long to wait: `retry_after` seconds, when the ledger said."""

    def __init__(
        self,
        status: int | None,
        error: str,
        description: str,
        *,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, error, description, field=field)

    def as_dict(self) -> dict[str, object]:
        return super().as_dict() | {"retry_after": self.retry_after}


class RateLimited(WaitAndRetry):
    """429: too many failed attempts from this client or for this token prefix."""


class Unavailable(WaitAndRetry):
    """503 (or no answer) even after retrying: the ledger cannot vouch for a token right now."""


_AUTH_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def challenge_params(header: str) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer …` challenge (RFC 6750), by name."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    params: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(rest):
        name, quoted, bare = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(name.lower(), value)
    return params


_decode_error = msgspec.json.Decoder(ErrorBody).decode


def error_for(response: httpx.Response) -> AnthraError:
    """The exception that says why the ledger refused this answer's request."""
    try:
        body = _decode_error(response.content)
    except msgspec.DecodeError:
        # Not the ledger's own answer (a proxy's page, say): say what came back, not what it said.
        body = ErrorBody(
            error=f"http_{response.status_code}", error_description=response.reason_phrase
        )
    challenge = challenge_params(response.headers.get("www-authenticate", ""))
    status = response.status_code
    error = challenge.get("error") or body.error or f"http_{status}"
    description = body.error_description or challenge.get("error_description", "")
    if status in (400, 422):
        return BadRequest(status, error, description, field=body.field)
    if status == 401:
        return Unauthorized(status, error, description)
    if status == 403:
        scope = tuple(challenge.get("scope", "").split())
        return Forbidden(status, error, description, scope=scope, field=body.field)
    if status == 404:
        return NotFound(status, error, description)
    if status == 409:
        return Conflict(status, error, description)
    retry_after = retry_after_of(response)
    if status == 429:
        return RateLimited(status, error, description, retry_after=retry_after)
    if status == 503:
        return Unavailable(status, error, description, retry_after=retry_after)
    return AnthraError(status, error, description, field=body.field)

"""The ledger's API for a token's holder, and its verify endpoint for services."""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Generator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import httpx
import msgspec

from anthra_keys_client.errors import (
    AnthraError,
    BadRequest,
    MissingCredential,
    Unavailable,
    error_for,
)
from anthra_keys_client.redaction import shown
from anthra_keys_client.retrying import IDEMPOTENT_METHODS, RetryPolicy
from anthra_keys_client.schemas import (
    Key,
    KeyList,
    RotatedKey,
    RotateRequest,
    Verification,
    VerifyRequest,
    WhoAmI,
)
from anthra_keys_client.version import VERSION

TOKEN_VARIABLE = "ANTHRA_TOKEN"  # noqa: S105 - the variable's name, not a token
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = f"anthra-keys-client/{VERSION}"

log = logging.getLogger("anthra_keys_client")
Answer = TypeVar("Answer")


class _Bearer(httpx.Auth):
    """`Authorization: Bearer <secret>` set on each request as it leaves: the secret is in no
    default header, URL or log line, and prints as what it is, not as its value."""

    def __init__(self, secret: str, label: str) -> None:
        self._secret = secret
        self._label = label

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._secret}"
        yield request

    def __repr__(self) -> str:
        return f"Bearer({self._label})"


class Client:
    """A token's view of the ledger at `base_url`: who it is, its keys, rotating itself; and,
    with the verify secret, asking about any token.

    The token comes from `token` or else the ANTHRA_TOKEN environment variable, and goes only
    into the Authorization header. A 503, or a lost connection, is tried again when sending
    the request twice is safe: `retries` times at most, none starting later than
    `retry_within` seconds after the first try.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        retry_within: float = 15.0,
    ) -> None:
        given = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
        self._token = given.strip() or None
        self._auth = _Bearer(self._token, shown(self._token)) if self._token else None
        self.base_url = base_url.rstrip("/")
        self.retry_policy = RetryPolicy(retries=retries, within=retry_within)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, token={shown(self._token)!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # The holder's own questions, answered for the token.

    def whoami(self) -> WhoAmI:
        """Whom the token acts for, its key and its scopes."""
        return self._get("/api/v1/account/whoami", WhoAmI)

    def keys(self) -> list[Key]:
        """The keys of the token's owner (needs account:read)."""
        return self._get("/api/v1/keys", KeyList).keys

    def key(self, key_id: str) -> Key:
        """One key of the token's owner (needs account:read)."""
        return self._get(f"/api/v1/keys/{_segment(key_id)}", Key)

    def rotate(
        self,
        key_id: str | None = None,
        *,
        grace_seconds: int = 0,
        expires_in_days: int | None = None,
        idempotency_key: str | None = None,
    ) -> RotatedKey:
        """A new key to take over from `key_id` (by default the token's own), with the same
        name and scopes; the old one stops after `grace_seconds`. The new token is in the
        answer and nowhere else, so the request carries an Idempotency-Key (one is made if not
        given): a retry whose first answer was lost gets a fresh token, and the key the lost
        answer named is superseded."""
        target = key_id if key_id is not None else self.own_key_id()
        body = RotateRequest(grace_seconds=grace_seconds, expires_in_days=expires_in_days)
        headers = {IDEMPOTENCY_HEADER: idempotency_key or f"rotate-{uuid.uuid4()}"}
        response = self._send(
            "POST",
            f"/api/v1/keys/{_segment(target)}/rotate",
            auth=self._holder(),
            body=body,
            headers=headers,
        )
        return _decode(response, RotatedKey)

    def revoke_self(self, reason: str = "") -> Key:
        """Revoke the token's own key: from the answer on, the token is refused everywhere."""
        params = {"reason": reason} if reason else None
        response = self._send(
            "DELETE",
            f"/api/v1/keys/{_segment(self.own_key_id())}",
            auth=self._holder(),
            params=params,
        )
        return _decode(response, Key)

    def own_key_id(self) -> str:
        """The id of the token's own key."""
        key_id = self.whoami().key_id
        if key_id is None:
            raise AnthraError(None, "not_a_key", "the credential is not a key's token")
        return key_id

    # A service's question about any token.

    def verify(
        self,
        token: str,
        scopes: Iterable[str] = (),
        *,
        verify_secret: str | None,
        as_of: datetime | None = None,
    ) -> Verification:
        """Whether `token` is live and holds every scope in `scopes` (at `as_of`, if given).
        With the verify secret the answer also says whose key it is, its scopes and expiry;
        without it (None), only `valid` and `code`. The token goes in the request's body."""
        body = VerifyRequest(token=token.strip(), scopes=list(scopes), as_of=as_of)
        auth = _Bearer(verify_secret, "verify secret") if verify_secret else None
        # A question, not a change: asking twice is safe.
        response = self._send("POST", "/v1/verify", auth=auth, body=body, retry_safe=True)
        return _decode(response, Verification)

    # Sending, with retries.

    def _holder(self) -> _Bearer:
        if self._auth is None:
            raise MissingCredential(f"no token: set {TOKEN_VARIABLE} to the token to act with")
        return self._auth

    def _get(self, path: str, answer: type[Answer]) -> Answer:
        return _decode(self._send("GET", path, auth=self._holder()), answer)

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: httpx.Auth | None,
        body: msgspec.Struct | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> httpx.Response:
        """The ledger's answer if it is a success, else the refusal raised as an AnthraError."""
        headers = dict(headers or {})
        content = None
        if body is not None:
            content = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        if retry_safe is None:
            retry_safe = method in IDEMPOTENT_METHODS or IDEMPOTENCY_HEADER in headers
        started = time.monotonic()
        retry = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as e:
                failure: AnthraError = Unavailable(
                    None, "unreachable", f"no answer from {self.base_url} ({type(e).__name__})"
                )
                retry_after = None
                cause: Exception | None = e
            else:
                if response.is_success:
                    return response
                failure = error_for(response)
                if not isinstance(failure, Unavailable):
                    raise failure
                retry_after = failure.retry_after
                cause = None
            retry += 1
            wait = self.retry_policy.next_delay(
                retry, time.monotonic() - started, retry_after, random.random()
            )
            if not retry_safe or wait is None:
                raise failure from cause
            log.debug(
                "%s %s: %s; retry %d of %d in %.2f s",
                method,
                path,
                failure,
                retry,
                self.retry_policy.retries,
                wait,
            )
            time.sleep(wait)


def _segment(key_id: str) -> str:
    """A key id as one path segment. A token passed by mistake would land in URLs and logs: it
    is refused here, before it leaves."""
    if "ant_live_" in key_id.lower():
        raise BadRequest(None, "invalid_request", "that is a token, not a key id", field="key_id")
    return quote(key_id, safe="")


def _decode(response: httpx.Response, answer: type[Answer]) -> Answer:
    try:
        return msgspec.json.decode(response.content, type=answer)
    except msgspec.DecodeError as e:
        raise AnthraError(
            response.status_code, "unexpected_answer", f"the ledger's answer did not decode: {e}"
        ) from None

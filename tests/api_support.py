"""Helpers for driving the HTTP API in process: an app on the in-memory store, session cookies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from api.authjs import SessionCookieCodec
from infra.settings import Settings

SECRET = "test-auth-secret-0123456789abcdef0123456789abcdef"
OPERATOR_SECRET = "test-operator-secret-0123456789abcdef0123456789"
COOKIE = "authjs.session-token"
ORIGIN = "http://testserver.local"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def session_cookie(user_id: str, secret: str = SECRET, max_age: int = 3600) -> str:
    return SessionCookieCodec([secret]).encode({"sub": user_id}, COOKIE, max_age)


def signed_in_as(user_id: str) -> dict[str, str]:
    """The Cookie header of a browser signed in as this user."""
    return {"Cookie": f"{COOKIE}={session_cookie(user_id)}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}


@contextmanager
def api_client(settings: Settings | None = None, **kwargs: Any) -> Iterator[TestClient[Any]]:
    settings = settings or Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        operator_secret=OPERATOR_SECRET,
        public_url=ORIGIN,
    )
    app = create_app(settings, **kwargs)
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


def mint(client: TestClient[Any], user_id: str = "alice", **body: Any) -> dict[str, Any]:
    payload = {"name": "test key", "scopes": ["books:read"], "expires_in_days": None} | body
    response = client.post(
        "/api/v1/keys",
        json=payload,
        headers=signed_in_as(user_id) | SAME_ORIGIN,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def from_peer(client: TestClient[Any], address: str) -> None:
    """Requests reach the app from this network peer, as a server would report it (the test
    client itself has no address)."""
    inner = client.app.asgi_handler
    inner = getattr(inner, "behind_peer", inner)

    async def peer(scope: Any, receive: Any, send: Any) -> None:
        scope["client"] = (address, 41000)
        await inner(scope, receive, send)

    peer.behind_peer = inner  # type: ignore[attr-defined]
    client.app.asgi_handler = peer

"""Another Anthra Litestar service mounts the middleware and guards and gets the same answers."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient

from api.auth import (
    AUTH_EXCEPTION_HANDLERS,
    Authenticator,
    KeyAuthMiddleware,
    principal_of,
    requires_scopes,
)
from ledger.key_ledger import KeyLedger


@get("/api/v1/books", guards=[requires_scopes("books:read")])
async def list_books(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A books endpoint of another service."""
    return {"owner": principal_of(request).user_id}


@get("/api/v1/publish", guards=[requires_scopes("publish:write")])
async def publish_status() -> dict[str, bool]:
    """An endpoint that needs another scope."""
    return {"ok": True}


def test_a_books_service_guards_its_routes_with_the_ledger() -> None:
    ledger = KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app = Litestar(
        route_handlers=[list_books, publish_status],
        middleware=[
            DefineMiddleware(KeyAuthMiddleware, authenticator=Authenticator(ledger.verify))
        ],
        exception_handlers=AUTH_EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    reader = ledger.mint(
        owner_id="alice", name="r", scopes=["books:read"], expires_in_days=None, actor="user:alice"
    )
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {reader.token}"}
        assert client.get("/api/v1/books", headers=headers).json() == {"owner": "alice"}
        denied = client.get("/api/v1/publish", headers=headers)
        assert denied.status_code == 403
        assert 'scope="publish:write"' in denied.headers["www-authenticate"]
        assert client.get("/api/v1/books").status_code == 401
        ledger.revoke(reader.record.key_id, actor="user:alice")
        assert client.get("/api/v1/books", headers=headers).status_code == 401
    ledger.close()

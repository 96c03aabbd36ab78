"""`POST /v1/verify` answered by the front door: the same answer as the route, for every request.

The front door answers the common question (a clean JSON body about now, from a service or from
anyone) itself and hands every other request on to the Litestar route with its body as read.
Each request here is sent twice to one app, once with the front door's answer and once with the
route's alone, and the two answers must be the same: status, body and the headers a client
reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient
from litestar.types import Receive, Scope

from api.front_door import Answer, FrontDoor
from api.verify import VerifyAtTheDoor
from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client, bearer, mint, signed_in_as

VERIFY_SECRET = "door-verify-secret-0123456789abcdef0123456789abcdef"
READ_HEADERS = ("content-type", "cache-control", "retry-after", "www-authenticate")


def settings(secret: str) -> Settings:
    return Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        verify_secret=secret,
        public_url=ORIGIN,
        # Each request is sent twice: room for the refused tokens of the corpus.
        auth_failures_per_prefix=1000,
        auth_failures_per_ip=1000,
    )


def requests(token: str, service: dict[str, str]) -> list[tuple[str, bytes, dict[str, str]]]:
    """(what, body, headers): the questions the door answers and those it hands on."""
    as_json = {"content-type": "application/json"}
    charset = {"content-type": "application/json; charset=utf-8"}

    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    other = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    return [
        ("valid", body({"token": token}), as_json | service),
        ("valid, scopes held", body({"token": token, "scopes": ["books:read"]}), as_json | service),
        ("scope missing", body({"token": token, "scopes": ["publish:write"]}), as_json | service),
        ("unknown token", body({"token": other}), as_json | service),
        ("malformed token", body({"token": "nope"}), as_json | service),
        ("charset given", body({"token": token}), charset | service),
        ("unknown scope", body({"token": token, "scopes": ["books:burn"]}), as_json | service),
        ("as_of", body({"token": token, "as_of": "2020-01-01T00:00:00Z"}), as_json | service),
        ("not JSON", b"{token", as_json | service),
        ("duplicate key", b'{"token": "a", "token": "b"}', as_json | service),
        ("extra field", body({"token": token, "admin": True}), as_json | service),
        ("wrong type", body({"token": 5}), as_json | service),
        ("empty body", b"", as_json | service),
        ("text body", body({"token": token}), {"content-type": "text/plain"} | service),
        ("no content type", body({"token": token}), service),
        ("too large", body({"token": "x" * 70_000}), as_json | service),
        ("session", body({"token": token}), as_json | signed_in_as("alice")),
        ("wrong secret", body({"token": token}), as_json | bearer("wrong")),
        ("no credentials", body({"token": token}), as_json),
        ("the token as credential", body({"token": token}), as_json | bearer(token)),
    ]


def answer(client: TestClient[Any], body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    response = client.post("/v1/verify", content=body, headers=headers)
    try:
        content: Any = response.json()
    except ValueError:
        content = response.text
    read = tuple(response.headers.get(name) for name in READ_HEADERS)
    return response.status_code, content, read


class Spy:
    """The door's verifier, counting the requests it answered itself."""

    path = VerifyAtTheDoor.path

    def __init__(self, inner: VerifyAtTheDoor) -> None:
        self.inner = inner
        self.answered: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive) -> tuple[Answer | None, Receive]:
        found = await self.inner(scope, receive)
        self.answered.append(found[0] is not None)
        return found


@pytest.mark.parametrize("secret", [VERIFY_SECRET, ""], ids=["service secret", "no secret"])
def test_the_door_answers_as_the_route_would(secret: str) -> None:
    with api_client(settings(secret)) as client:
        key = mint(client, scopes=["books:read"])
        door = client.app.asgi_handler
        assert isinstance(door, FrontDoor) and isinstance(door.verifier, VerifyAtTheDoor)
        spy = Spy(door.verifier)
        service = bearer(secret) if secret else {}
        at_the_door = []
        for what, body, headers in requests(key["token"], service):
            door.verifier = spy
            by_door = answer(client, body, headers)
            if spy.answered[-1]:
                at_the_door.append(what)
            door.verifier = None
            by_route = answer(client, body, headers)
            assert by_door == by_route, what
            assert by_door[0] < 500, what
        # The common questions never reached the route; the rest all did
        common = ["valid", "valid, scopes held", "scope missing", "unknown token"]
        common += ["malformed token", "charset given"]
        assert at_the_door == common + ([] if secret else ["no credentials"])

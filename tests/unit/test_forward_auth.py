"""GET /v1/authz in process: every answer a reverse proxy can get, with exact RFC 6750 values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from domain import token as token_format
from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client, bearer, mint, signed_in_as
from tests.conftest import FakeClock

REALM = 'Bearer realm="anthra"'
METADATA = 'resource_metadata="http://testserver.local/.well-known/oauth-protected-resource"'
TOKEN_IN_URL = (
    f'{REALM}, error="invalid_request", error_description="tokens are accepted only in the '
    'Authorization header, never in the URL"'
)
INVALID_TOKEN = (
    f'{REALM}, error="invalid_token", error_description="the access token is invalid, revoked '
    f'or expired", {METADATA}'
)
POLICY = """
[[route]]
method = "GET"
path = "/api/v1/books/*"
scope = "books:read"

[[route]]
method = "POST"
path = "/api/v1/books/*/publish"
scope = "publish:write"

[[route]]
method = "POST"
path = "/api/v1/books/*/generate/*"
scope = ["books:write", "generation:run"]

[[route]]
method = "GET"
path = "/public/**"
public = true
"""


def original(method: str, uri: str) -> dict[str, str]:
    """What nginx's auth_request location sends, per deploy/nginx.conf."""
    return {"X-Original-Method": method, "X-Original-URI": uri}


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return str(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(policy_file: str, clock: FakeClock) -> Iterator[TestClient[Any]]:
    settings = Settings(
        database_url="memory:", auth_secrets=(SECRET,), policy_file=policy_file, public_url=ORIGIN
    )
    with api_client(settings, clock=clock) as test_client:
        yield test_client


def test_a_granted_request_is_200_with_who_is_calling_and_no_body(
    client: TestClient[Any],
) -> None:
    key = mint(client, scopes=["account:read", "books:read"])
    response = client.get(
        "/v1/authz", headers=original("GET", "/api/v1/books/42") | bearer(key["token"])
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-anthra-key-id"] == key["id"]
    assert response.headers["x-anthra-owner-id"] == "alice"
    assert response.headers["x-anthra-scopes"] == "books:read account:read"
    assert response.headers["cache-control"] == "no-store"
    # HEAD answers the same
    head = client.head(
        "/v1/authz", headers=original("HEAD", "/api/v1/books/42") | bearer(key["token"])
    )
    assert head.status_code == 200
    assert head.headers["x-anthra-key-id"] == key["id"]


def test_an_owner_id_that_is_not_plain_ascii_is_percent_encoded(client: TestClient[Any]) -> None:
    key = mint(client, user_id="zoë@example.com")
    response = client.get(
        "/v1/authz", headers=original("GET", "/api/v1/books/1") | bearer(key["token"])
    )
    assert response.status_code == 200
    assert response.headers["x-anthra-owner-id"] == "zo%C3%AB@example.com"


def test_traefik_and_envoy_conventions_are_understood(client: TestClient[Any]) -> None:
    key = mint(client, scopes=["publish:write"])
    # Traefik ForwardAuth: a GET naming the original in X-Forwarded-Method and -Uri
    traefik = client.get(
        "/v1/authz",
        headers={"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/api/v1/books/1/publish"}
        | bearer(key["token"]),
    )
    assert traefik.status_code == 200
    # Envoy ext_authz: the original method, and its path after the prefix
    envoy = client.post("/v1/authz/api/v1/books/1/publish?draft=1", headers=bearer(key["token"]))
    assert envoy.status_code == 200
    assert envoy.headers["x-anthra-key-id"] == key["id"]
    # Envoy after a path rewrite: X-Envoy-Original-Path
    rewritten = client.post(
        "/v1/authz",
        headers={"X-Envoy-Original-Path": "/api/v1/books/1/publish"} | bearer(key["token"]),
    )
    assert rewritten.status_code == 200
    # The method counts: the same path read with GET needs books:read, which this key lacks
    assert client.get("/v1/authz/api/v1/books/1", headers=bearer(key["token"])).status_code == 403


def test_a_public_route_is_200_without_a_token(client: TestClient[Any]) -> None:
    response = client.get("/v1/authz", headers=original("GET", "/public/catalogue?page=2"))
    assert response.status_code == 200
    assert "x-anthra-key-id" not in response.headers


def test_a_route_not_in_the_policy_is_403_default_deny(client: TestClient[Any]) -> None:
    key = mint(client, scopes=["books:read"])
    for method, uri in [
        ("GET", "/api/v1/secrets"),
        ("DELETE", "/api/v1/books/42"),  # the path is known, the method is not
        ("GET", "/api/v1/books/42/chapters"),
    ]:
        response = client.get("/v1/authz", headers=original(method, uri) | bearer(key["token"]))
        assert response.status_code == 403, (method, uri)
        assert "www-authenticate" not in response.headers
        assert response.json() == {
            "error": "access_denied",
            "error_description": (
                f"{method} {uri} is not in the route policy; unknown routes are denied"
            ),
        }


@pytest.mark.parametrize(
    "uri",
    [
        "/public/../api/v1/books/42",
        "/public/%2e%2e/api/v1/books/42",
        "/public/%252e%252e/api/v1/books/42",
        "/public/..;x/api/v1/books/42",
        "/public/%EF%BC%8E%EF%BC%8E/api/v1/books/42",
        "/public/a%00b",
        "/public/a\\b",
        "/public/a%5Cb",
        # Encoded slashes: one segment to the policy, several to an upstream that decodes them
        "/api/v1/books/1%2Fpublish",
        "/public/x%2F..%2F..%2Fapi%2Fv1%2Fbooks%2F42",
        "/public/x%252F..",
        # Empty segments: an upstream that merges them serves another path than one that does not
        "/public//api/v1/books/42",
        "//api/v1/books/42",
        "/api/v1/books//1",
    ],
)
def test_a_path_an_upstream_could_read_differently_is_400_and_never_judged(
    client: TestClient[Any], uri: str
) -> None:
    key = mint(client, scopes=["books:read", "publish:write"])
    for headers in (original("GET", uri), original("POST", uri) | bearer(key["token"])):
        response = client.get("/v1/authz", headers=headers)
        assert response.status_code == 400, uri
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["error_description"].startswith("the original path is refused: ")
        assert response.headers["www-authenticate"].startswith(
            f'{REALM}, error="invalid_request", error_description="the original path is refused'
        )
    # Envoy's convention, the original path after /v1/authz, is judged alike (the test client
    # itself resolves a raw ..)
    if "/../" not in uri:
        envoy = client.post(f"/v1/authz{uri}", headers=bearer(key["token"]))
        assert envoy.status_code == 400, uri


def test_without_a_policy_every_route_is_denied() -> None:
    with api_client(
        Settings(database_url="memory:", auth_secrets=(SECRET,), public_url=ORIGIN)
    ) as client:
        key = mint(client)
        response = client.get(
            "/v1/authz", headers=original("GET", "/api/v1/books/1") | bearer(key["token"])
        )
        assert response.status_code == 403
        assert response.json() == {
            "error": "access_denied",
            "error_description": (
                "no route policy is loaded (ANTHRA_POLICY_FILE), so every route is denied"
            ),
        }


@pytest.mark.parametrize(
    ("headers", "description"),
    [
        ({}, "the original request is missing: "),
        ({"X-Original-URI": "/api/v1/books/1"}, "X-Original-URI came without X-Original-Method"),
        ({"X-Forwarded-Uri": "/api/v1/books/1"}, "X-Forwarded-Uri came without"),
        (original("G E T", "/api/v1/books/1"), "the original method is not an HTTP method"),
        (
            # A client's own X-Original-URI passed on by a Traefik that forwards client headers
            original("GET", "/public/x")
            | {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/books/1"},
            "the headers naming the original request disagree",
        ),
        (
            original("GET", "/api/v1/books/1") | {"X-Envoy-Original-Path": "/public/x"},
            "the headers naming the original request disagree",
        ),
    ],
)
def test_a_missing_or_ambiguous_original_request_is_400(
    client: TestClient[Any], headers: dict[str, str], description: str
) -> None:
    response = client.get("/v1/authz", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"].startswith(description)
    assert response.headers["www-authenticate"].startswith(
        f'{REALM}, error="invalid_request", error_description="{description}'
    )


def raw_get(client: TestClient[Any], headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """GET /v1/authz with headers exactly as given; the test client would join repeated ones."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/authz",
        "raw_path": b"/v1/authz",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver.local")]
        + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)

    client.blocking_portal.call(call)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_a_repeated_original_or_authorization_header_is_400(client: TestClient[Any]) -> None:
    key = mint(client)
    nginx = [("X-Original-Method", "GET"), ("X-Original-URI", "/api/v1/books/1")]
    for name, headers in [
        ("X-Original-URI", [*nginx, ("X-Original-URI", "/public/x")]),
        ("X-Original-Method", [*nginx, ("X-Original-Method", "POST")]),
        ("Authorization", [*nginx, *[("Authorization", f"Bearer {key['token']}")] * 2]),
    ]:
        status, body = raw_get(client, headers)
        assert status == 400, name
        assert json.loads(body) == {
            "error": "invalid_request",
            "error_description": f"send one {name} header, not several",
        }
    # The same headers once each are granted: the helper is not what refuses them
    status, _ = raw_get(client, [*nginx, ("Authorization", f"Bearer {key['token']}")])
    assert status == 200


def test_a_token_in_the_original_url_is_400_in_any_encoding(client: TestClient[Any]) -> None:
    key = mint(client, scopes=["books:read"])
    token = key["token"]
    encoded = "".join(f"%{ord(c):02x}" for c in token)
    for uri in [
        f"/api/v1/books/1?access_token={token}",
        f"/api/v1/books/1?q={encoded}",
        f"/api/v1/books/1?q={encoded.replace('%', '%25')}",  # double-encoded
        f"/api/v1/books/{token}",
        "/public/x?ACCESS_TOKEN=whatever",
    ]:
        response = client.get("/v1/authz", headers=original("GET", uri) | bearer(token))
        assert response.status_code == 400, uri[:30]
        assert response.headers["www-authenticate"] == TOKEN_IN_URL
        assert response.json()["error"] == "invalid_request"


def test_no_credentials_is_401_with_the_bare_challenge(client: TestClient[Any]) -> None:
    response = client.get("/v1/authz", headers=original("GET", "/api/v1/books/1"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f"{REALM}, {METADATA}"
    assert response.json() == {
        "error": "unauthorized",
        "error_description": "authentication required: send Authorization: Bearer <token>",
    }


def test_a_session_cookie_is_not_accepted(client: TestClient[Any]) -> None:
    # The public API behind a gateway takes tokens only; the cookie is a signed-in session
    response = client.get(
        "/v1/authz", headers=original("GET", "/api/v1/books/1") | signed_in_as("alice")
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f"{REALM}, {METADATA}"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token x"])
def test_a_malformed_authorization_header_is_400(client: TestClient[Any], header: str) -> None:
    response = client.get(
        "/v1/authz", headers=original("GET", "/api/v1/books/1") | {"Authorization": header}
    )
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == (
        f'{REALM}, error="invalid_request", error_description="use Authorization: Bearer <token>"'
    )


def test_unknown_malformed_revoked_and_expired_tokens_are_401_alike(
    client: TestClient[Any], clock: FakeClock
) -> None:
    revoked = mint(client)
    assert client.delete(
        f"/api/v1/keys/{revoked['id']}", headers=bearer(revoked["token"])
    ).is_success
    expiring = mint(client, expires_in_days=1)
    clock.advance(86_400)
    answers = set()
    for candidate in [
        token_format.generate(),
        "ant_live_" + "A" * 50,
        "not-a-token",
        revoked["token"],
        expiring["token"],
    ]:
        response = client.get(
            "/v1/authz", headers=original("GET", "/api/v1/books/1") | bearer(candidate)
        )
        assert response.status_code == 401, candidate[:12]
        assert response.headers["www-authenticate"] == INVALID_TOKEN
        answers.add(response.content)
    assert answers == {
        b'{"error":"invalid_token","error_description":"the access token is invalid, revoked or '
        b'expired"}'
    }


def test_a_missing_scope_is_403_naming_every_scope_the_route_needs(
    client: TestClient[Any],
) -> None:
    key = mint(client, scopes=["books:read", "books:write"])
    publish = client.get(
        "/v1/authz", headers=original("POST", "/api/v1/books/1/publish") | bearer(key["token"])
    )
    assert publish.status_code == 403
    assert publish.headers["www-authenticate"] == (
        f'{REALM}, error="insufficient_scope", error_description="the token lacks the scope this '
        f'request needs: publish:write", scope="publish:write", {METADATA}'
    )
    assert publish.json()["error"] == "insufficient_scope"
    generate = client.get(
        "/v1/authz",
        headers=original("POST", "/api/v1/books/1/generate/outline") | bearer(key["token"]),
    )
    assert generate.status_code == 403
    assert 'scope="books:write generation:run"' in generate.headers["www-authenticate"]


def test_the_challenge_points_at_the_configured_public_url_never_a_forwarded_host(
    client: TestClient[Any], policy_file: str
) -> None:
    # X-Forwarded-* from a peer that is not a trusted proxy changes nothing
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    response = client.get("/v1/authz", headers=original("GET", "/api/v1/books/1") | forwarded)
    assert response.headers["www-authenticate"] == f"{REALM}, {METADATA}"
    # The configured public URL, whatever the Host
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        policy_file=policy_file,
        public_url="https://anthra.example",
    )
    with api_client(settings) as configured:
        response = configured.get(
            "/v1/authz",
            headers=original("GET", "/api/v1/books/1") | forwarded | {"Host": "evil.example"},
        )
        assert response.headers["www-authenticate"] == (
            f'{REALM}, resource_metadata="https://anthra.example/.well-known/'
            'oauth-protected-resource"'
        )


def test_a_stale_index_is_503_and_never_200(client: TestClient[Any]) -> None:
    key = mint(client)
    index = client.app.state.ledger.index
    index.max_staleness = 0.5
    index.confirmed_at -= 5
    response = client.get(
        "/v1/authz", headers=original("GET", "/api/v1/books/1") | bearer(key["token"])
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "temporarily_unavailable"


def test_a_token_in_the_authz_requests_own_url_is_refused_before_routing(
    client: TestClient[Any],
) -> None:
    key = mint(client)
    response = client.get(f"/v1/authz/api/v1/books/1?access_token={key['token']}")
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == TOKEN_IN_URL

"""The security contract: RFC 6750 answers, tokens only in the header, same-origin sessions."""

from __future__ import annotations

import pytest

from domain import token as token_format
from tests.api_support import (
    COOKIE,
    SAME_ORIGIN,
    api_client,
    bearer,
    mint,
    session_cookie,
    signed_in_as,
)
from tests.conftest import FakeClock

REALM = 'Bearer realm="anthra"'
METADATA = 'resource_metadata="http://testserver.local/.well-known/oauth-protected-resource"'
NO_CREDENTIALS = f"{REALM}, {METADATA}"


def challenge(error: str, description: str, scope: str | None = None) -> str:
    value = f'{REALM}, error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "") + f", {METADATA}"


INVALID_TOKEN = challenge("invalid_token", "the access token is invalid, revoked or expired")


def test_no_credentials_is_401_with_a_bare_challenge() -> None:
    with api_client() as client:
        response = client.get("/api/v1/keys")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == NO_CREDENTIALS
        assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Token ant_live_x", "bearer\tx y"],
)
def test_a_malformed_authorization_header_is_400_invalid_request(header: str) -> None:
    with api_client() as client:
        response = client.get("/api/v1/keys", headers={"Authorization": header})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert response.headers["www-authenticate"].startswith(f'{REALM}, error="invalid_request"')


def test_two_authorization_headers_are_400() -> None:
    with api_client() as client:
        key = mint(client)
        response = client.get(
            "/api/v1/keys",
            headers=[("Authorization", f"Bearer {key['token']}"), ("Authorization", "Bearer x")],
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


def test_unknown_malformed_revoked_and_expired_tokens_answer_identically() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        revoked = mint(client)
        client.delete(f"/api/v1/keys/{revoked['id']}", headers=bearer(revoked["token"]))
        expiring = mint(client, expires_in_days=1)
        clock.advance(86_400)
        answers = []
        for candidate in [
            token_format.generate(),  # well formed, unknown
            "ant_live_" + "A" * 50,  # bad checksum
            "not-a-token",
            revoked["token"],
            expiring["token"],
        ]:
            response = client.get("/api/v1/keys", headers=bearer(candidate))
            assert response.status_code == 401, candidate[:12]
            assert response.headers["www-authenticate"] == INVALID_TOKEN
            answers.append(response.content)
        assert len(set(answers)) == 1


def test_a_missing_scope_is_403_naming_it() -> None:
    with api_client() as client:
        key = mint(client, scopes=["books:read"])
        response = client.get("/api/v1/account", headers=bearer(key["token"]))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == challenge(
            "insufficient_scope",
            "the token lacks the scope this request needs: account:read",
            "account:read",
        )
        assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/keys?token={t}",
        "/api/v1/keys?access_token={t}",
        "/api/v1/keys?x={pct}",
        "/api/v1/keys?x={pct2}",
        "/api/v1/keys/{t}",
        "/healthz?token={t}",
    ],
)
def test_a_token_in_the_url_is_refused_and_not_served(url: str) -> None:
    with api_client() as client:
        key = mint(client, scopes=["account:read"])
        t = key["token"]
        pct = "".join(f"%{ord(c):02X}" for c in t)
        pct2 = t.replace("_", "%255F")
        response = client.get(url.format(t=t, pct=pct, pct2=pct2), headers=bearer(t))
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert t[12:] not in response.text


def test_a_revoke_with_the_token_in_the_query_is_not_carried_out() -> None:
    with api_client() as client:
        key = mint(client)
        response = client.delete(
            f"/api/v1/keys/{key['id']}?token={key['token']}", headers=bearer(key["token"])
        )
        assert response.status_code == 400
        assert client.post("/v1/verify", json={"token": key["token"]}).json()["valid"] is True


def test_a_bearer_token_cannot_mint_or_change_scopes() -> None:
    with api_client() as client:
        key = mint(client, scopes=list(["books:read", "account:read"]))
        headers = bearer(key["token"])
        response = client.post(
            "/api/v1/keys", json={"name": "child", "scopes": ["books:read"]}, headers=headers
        )
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
        response = client.put(
            f"/api/v1/keys/{key['id']}/scopes",
            json={"scopes": ["books:read", "account:read", "publish:write"]},
            headers=headers,
        )
        assert response.status_code == 403
        assert client.get("/api/v1/keys", headers=headers).json()["keys"][0]["scopes"] == [
            "books:read",
            "account:read",
        ]


def test_a_token_may_revoke_only_itself() -> None:
    with api_client() as client:
        first, second = mint(client), mint(client)
        response = client.delete(f"/api/v1/keys/{second['id']}", headers=bearer(first["token"]))
        assert response.status_code == 403
        assert client.post("/v1/verify", json={"token": second["token"]}).json()["valid"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {},
    ],
)
def test_a_cross_site_cookie_request_that_changes_state_is_refused(headers: dict[str, str]) -> None:
    with api_client() as client:
        response = client.post(
            "/api/v1/keys",
            json={"name": "csrf", "scopes": ["books:read"]},
            headers=headers | signed_in_as("alice"),
        )
        assert response.status_code == 403
        assert response.json()["error"] == "cross_site_request"
        listed = client.get("/api/v1/keys", headers=signed_in_as("alice"))
        assert listed.json() == {"keys": []}


def test_a_same_origin_cookie_request_by_origin_header_is_accepted() -> None:
    with api_client() as client:
        response = client.post(
            "/api/v1/keys",
            json={"name": "ui", "scopes": ["books:read"]},
            headers={"Origin": "http://testserver.local"} | signed_in_as("alice"),
        )
        assert response.status_code == 201


def test_an_invalid_bearer_never_falls_back_to_the_cookie() -> None:
    with api_client() as client:
        response = client.get(
            "/api/v1/keys",
            headers=bearer(token_format.generate()) | SAME_ORIGIN | signed_in_as("alice"),
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID_TOKEN


def test_a_bad_or_expired_session_cookie_is_signed_out() -> None:
    with api_client() as client:
        for cookie in [
            session_cookie("alice", secret="some-other-secret-entirely-000000"),
            session_cookie("alice", max_age=-60),
            "garbage.value",
        ]:
            response = client.get("/api/v1/keys", headers={"Cookie": f"{COOKIE}={cookie}"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == NO_CREDENTIALS


def test_errors_never_carry_a_stack_trace() -> None:
    with api_client() as client:
        response = client.post(
            "/api/v1/keys",
            content=b"\xff\xfe" * 10,
            headers=SAME_ORIGIN | {"content-type": "application/json"} | signed_in_as("alice"),
        )
        assert response.status_code == 400
        assert "Traceback" not in response.text
        too_big = client.post(
            "/api/v1/keys",
            content=b"{" + b" " * 100_000 + b"}",
            headers=SAME_ORIGIN | {"content-type": "application/json"} | signed_in_as("alice"),
        )
        assert too_big.status_code == 413


def test_a_stale_index_answers_503_and_never_accepts() -> None:
    with api_client() as client:
        key = mint(client, scopes=["account:read"])
        # The index loses touch with the store for longer than it may vouch for
        index = client.app.state.ledger.index
        index.max_staleness = 0.5
        index.confirmed_at -= 5
        response = client.get("/api/v1/account", headers=bearer(key["token"]))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "temporarily_unavailable"
        verify = client.post("/v1/verify", json={"token": key["token"]})
        assert verify.status_code == 503
        assert client.get("/readyz").status_code == 503


def test_an_internal_error_is_a_plain_500_and_its_logged_trace_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import logging

    from infra.logging import RedactingFilter, RedactingFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logger = logging.getLogger("anthra.api")
    logger.addHandler(handler)
    try:
        with api_client() as client:
            key = mint(client, scopes=["account:read"])
            token = key["token"]

            def broken(*args: object, **kwargs: object) -> None:
                raise RuntimeError(f"the store choked on {token}")

            monkeypatch.setattr(client.app.state.ledger, "history", broken)
            response = client.get(f"/api/v1/keys/{key['id']}/history", headers=bearer(token))
            assert response.status_code == 500
            assert response.json()["error"] == "server_error"
            assert "Traceback" not in response.text
            assert token[12:] not in response.text
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "RuntimeError" in logged
    assert token[:12] in logged
    assert token[12:25] not in logged


def test_mcp_clients_find_the_protected_resource_metadata() -> None:
    with api_client() as client:
        # RFC 9728 metadata: the six scopes, tokens in the header only
        body = client.get("/.well-known/oauth-protected-resource").json()
        assert body["resource"] == "http://testserver.local"
        assert body["scopes_supported"] == [
            "books:read",
            "books:write",
            "generation:run",
            "publish:write",
            "account:read",
            "analytics:read",
        ]
        assert body["bearer_methods_supported"] == ["header"]
        # Every 401 and 403 challenge points at it; a 400 does not
        assert METADATA in client.get("/api/v1/keys").headers["www-authenticate"]
        key = mint(client, scopes=["books:read"])
        forbidden = client.get("/api/v1/account", headers=bearer(key["token"]))
        assert forbidden.headers["www-authenticate"].endswith(METADATA)
        malformed = client.get("/api/v1/keys", headers={"Authorization": "Basic x"})
        assert "resource_metadata" not in malformed.headers["www-authenticate"]

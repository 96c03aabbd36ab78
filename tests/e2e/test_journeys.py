"""Journeys against real server processes over HTTP, on PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api_support import COOKIE, OPERATOR, session_cookie
from tests.e2e.conftest import Secrets, StartServer

pytestmark = [pytest.mark.e2e]


def signed_in(server_url: str, user_id: str, secrets_seen: Secrets) -> httpx.Client:
    cookie = session_cookie(user_id)
    secrets_seen.cookies.append(cookie)
    return httpx.Client(
        base_url=server_url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.postgres
def test_mint_use_scope_revoke_over_http(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(postgres_url)
    browser = signed_in(server.url, "alice", secrets_seen)

    # Mint with a session cookie
    response = browser.post(
        "/api/v1/keys", json={"name": "e2e", "scopes": ["account:read"], "expires_in_days": 7}
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    key = response.json()
    token = key["token"]
    secrets_seen.tokens.append(token)

    with httpx.Client(base_url=server.url, timeout=10) as api:
        # Use the token: a granted scope answers 200
        assert api.get("/api/v1/account", headers=bearer(token)).status_code == 200
        # A scope it lacks is 403 insufficient_scope
        browser.put(f"/api/v1/keys/{key['id']}/scopes", json={"scopes": ["books:read"]})
        denied = api.get("/api/v1/account", headers=bearer(token))
        assert denied.status_code == 403
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        assert 'scope="account:read"' in denied.headers["www-authenticate"]

        # Hostile requests that offer the token to the logs: all refused, none served
        assert api.get(f"/api/v1/keys?token={token}").status_code == 400
        encoded = "".join(f"%{ord(c):02x}" for c in token)
        assert api.get(f"/api/v1/keys?q={encoded}").status_code == 400
        assert api.get(f"/api/v1/keys/{token}", headers=bearer(token)).status_code == 400
        assert (
            api.get("/api/v1/keys", headers={"Authorization": f"Token {token}"}).status_code == 400
        )
        assert api.get("/nowhere", params={"access_token": token}).status_code == 400

        # Revoke: the very next request is refused
        revoked = browser.delete(f"/api/v1/keys/{key['id']}")
        assert revoked.status_code == 200
        refused = api.get("/api/v1/keys", headers=bearer(token))
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert api.post("/v1/verify", json={"token": token}).json()["code"] == "invalid_token"

    history = browser.get(f"/api/v1/keys/{key['id']}/history").json()["events"]
    assert [e["type"] for e in history] == ["Minted", "ScopesSet", "Revoked"]

    # The audit trail on PostgreSQL: the same events, chained, exportable, verifiable
    trail = browser.get("/api/v1/audit", params={"order": "oldest"}).json()["events"]
    assert [e["type"] for e in trail] == ["Minted", "ScopesSet", "Revoked"]
    exported = browser.get("/api/v1/audit/export").text.splitlines()
    assert len(exported) == 3
    report = httpx.post(f"{server.url}/v1/operator/audit/check", headers=OPERATOR).json()
    assert report["ok"] is True
    assert report["head_chain"] == trail[-1]["chain"]
    # The key was used: the account shows it, counted before the flush
    usage = browser.get("/api/v1/account").json()["usage"]
    assert usage[0]["requests"] >= 2
    assert usage[0]["last_used_at"] is not None
    browser.close()


@pytest.mark.postgres
def test_a_revoke_on_one_process_is_refused_by_another_within_a_second(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    a = start_server(postgres_url)
    b = start_server(postgres_url)
    browser = signed_in(a.url, "alice", secrets_seen)
    key = browser.post("/api/v1/keys", json={"name": "replicated", "scopes": ["books:read"]}).json()
    secrets_seen.tokens.append(key["token"])

    with httpx.Client(base_url=b.url, timeout=5) as other:
        # B learns of the new key from the store
        deadline = time.monotonic() + 1.0
        while other.post("/v1/verify", json={"token": key["token"]}).json()["code"] != "valid":
            assert time.monotonic() < deadline, "B never saw the minted key"
            time.sleep(0.005)

        # Revoke on A; B refuses within one second
        assert browser.delete(f"/api/v1/keys/{key['id']}").status_code == 200
        revoked_at = time.monotonic()
        while other.get("/api/v1/keys", headers=bearer(key["token"])).status_code != 401:
            assert time.monotonic() - revoked_at < 1.0, "B still accepts a token revoked on A"
            time.sleep(0.005)
        assert time.monotonic() - revoked_at < 1.0
    browser.close()


def test_two_processes_on_one_sqlite_file_agree_within_a_second(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    a = start_server(sqlite_url)
    b = start_server(sqlite_url)
    browser = signed_in(a.url, "alice", secrets_seen)
    key = browser.post("/api/v1/keys", json={"name": "local", "scopes": ["books:read"]}).json()
    secrets_seen.tokens.append(key["token"])
    with httpx.Client(base_url=b.url, timeout=5) as other:
        deadline = time.monotonic() + 1.0
        while other.post("/v1/verify", json={"token": key["token"]}).json()["code"] != "valid":
            assert time.monotonic() < deadline, "B never saw the minted key"
            time.sleep(0.01)
        browser.delete(f"/api/v1/keys/{key['id']}")
        revoked_at = time.monotonic()
        while other.post("/v1/verify", json={"token": key["token"]}).json()["valid"]:
            assert time.monotonic() - revoked_at < 1.0, "B still accepts a revoked token"
            time.sleep(0.01)

    # Both processes serve one audit trail on the SQLite file, each position once
    b_browser = signed_in(b.url, "alice", secrets_seen)
    from_a = browser.get("/api/v1/audit", params={"order": "oldest"}).json()["events"]
    from_b = b_browser.get("/api/v1/audit", params={"order": "oldest"}).json()["events"]
    assert [e["type"] for e in from_a] == ["Minted", "Revoked"]
    assert from_a == from_b
    assert httpx.post(f"{b.url}/v1/operator/audit/check", headers=OPERATOR).json()["ok"] is True
    b_browser.close()
    browser.close()


@pytest.mark.postgres
def test_every_worker_of_a_multi_worker_server_refuses_a_revoked_token(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    # Two worker processes behind one port, each with its own index
    server = start_server(postgres_url, "--workers", "2")
    browser = signed_in(server.url, "alice", secrets_seen)
    key = browser.post("/api/v1/keys", json={"name": "workers", "scopes": ["account:read"]}).json()
    secrets_seen.tokens.append(key["token"])
    with httpx.Client(base_url=server.url, timeout=5) as api:
        # Both workers learn of the key (new connections spread across them)
        deadline = time.monotonic() + 2.0
        accepted = 0
        while accepted < 20:
            assert time.monotonic() < deadline, "a worker never saw the minted key"
            with httpx.Client(base_url=server.url, timeout=5) as fresh:
                if fresh.get("/api/v1/account", headers=bearer(key["token"])).status_code == 200:
                    accepted += 1
        # Revoke; within a second no worker accepts it, on any new connection
        assert browser.delete(f"/api/v1/keys/{key['id']}").status_code == 200
        time.sleep(1.0)
        for _ in range(40):
            with httpx.Client(base_url=server.url, timeout=5) as fresh:
                refused = fresh.get("/api/v1/account", headers=bearer(key["token"]))
                # Past 20 failures for its prefix in a minute, a refused token is told to wait
                assert refused.status_code in (401, 429)
        ready = api.get("/readyz").json()
        assert ready["ready"] is True
        assert ready["position"] >= 2
    browser.close()

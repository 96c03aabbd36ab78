"""The keys API, in process on the in-memory store: what a signed-in user and a token can do."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pytest

from domain.scopes import SCOPES
from infra.settings import Settings
from tests.api_support import ORIGIN, SAME_ORIGIN, SECRET, api_client, bearer, mint, signed_in_as
from tests.conftest import FakeClock


def test_a_key_from_mint_to_revocation() -> None:
    with api_client() as client:
        # Mint a key with a session
        response = client.post(
            "/api/v1/keys",
            json={"name": "CI", "scopes": ["books:read", "account:read"], "expires_in_days": 30},
            headers=SAME_ORIGIN | signed_in_as("alice"),
        )
        assert response.status_code == 201
        assert response.headers["cache-control"] == "no-store"
        key = response.json()
        assert set(key) == {"id", "token", "prefix", "name", "scopes", "created_at", "expires_at"}
        assert key["prefix"] == key["token"][:12]
        assert key["scopes"] == ["books:read", "account:read"]
        token = key["token"]
        # Use it: the list needs account:read, which it has
        listed = client.get("/api/v1/keys", headers=bearer(token))
        assert listed.status_code == 200
        (item,) = listed.json()["keys"]
        assert item["status"] == "active" and "token" not in item
        assert set(item) == {
            "id",
            "prefix",
            "name",
            "scopes",
            "status",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "retires_at",
            "successor_id",
            "predecessor_id",
        }
        # Narrow its scopes with the session; the token loses account:read at once
        response = client.put(
            f"/api/v1/keys/{key['id']}/scopes",
            json={"scopes": ["books:read"]},
            headers=SAME_ORIGIN | signed_in_as("alice"),
        )
        assert response.status_code == 200 and response.json()["scopes"] == ["books:read"]
        denied = client.get("/api/v1/keys", headers=bearer(token))
        assert denied.status_code == 403
        # The token revokes itself; again answers 200 and appends nothing
        first = client.delete(f"/api/v1/keys/{key['id']}", headers=bearer(token))
        assert first.status_code == 200 and first.json()["status"] == "revoked"
        second = client.delete(
            f"/api/v1/keys/{key['id']}", headers=SAME_ORIGIN | signed_in_as("alice")
        )
        assert second.status_code == 200 and second.json()["status"] == "revoked"
        # It no longer authenticates
        assert client.get("/api/v1/keys", headers=bearer(token)).status_code == 401
        # Its history holds each event once, in order, with who and when
        history = client.get(f"/api/v1/keys/{key['id']}/history", headers=signed_in_as("alice"))
        events = history.json()["events"]
        assert [e["type"] for e in events] == ["Minted", "ScopesSet", "Revoked"]
        assert events[0]["actor"] == "user:alice"
        assert events[1]["previous_scopes"] == ["books:read", "account:read"]
        assert events[2]["actor"] == f"key:{key['id']}"
        assert token not in history.text


def test_the_account_counts_keys_by_status() -> None:
    with api_client() as client:
        keep = mint(client, scopes=["account:read"])
        gone = mint(client)
        client.delete(f"/api/v1/keys/{gone['id']}", headers=bearer(gone["token"]))
        response = client.get("/api/v1/account", headers=bearer(keep["token"]))
        assert response.status_code == 200
        body = response.json()
        assert body["user_id"] == "alice"
        assert body["keys"] == {
            "active": 1,
            "revoked": 1,
            "expired": 0,
            "suspended": 0,
            "blocked": 0,
            "rotated": 0,
            "expiring_soon": 0,
        }


def test_another_users_key_is_not_found() -> None:
    with api_client() as client:
        bobs = mint(client, "bob")
        for method, path, body in [
            ("GET", f"/api/v1/keys/{bobs['id']}", None),
            ("GET", f"/api/v1/keys/{bobs['id']}/history", None),
            ("PUT", f"/api/v1/keys/{bobs['id']}/scopes", {"scopes": ["books:read"]}),
            ("DELETE", f"/api/v1/keys/{bobs['id']}", None),
            ("GET", "/api/v1/keys/not-a-key-id", None),
        ]:
            response = client.request(
                method, path, json=body, headers=SAME_ORIGIN | signed_in_as("alice")
            )
            assert response.status_code == 404, (method, path)
            assert response.json()["error"] == "not_found"
        # and bob's key still works
        assert (
            client.get("/api/v1/keys", headers=signed_in_as("bob")).json()["keys"][0]["status"]
            == "active"
        )


def test_bad_input_is_a_400_naming_the_field() -> None:
    cases: list[tuple[Any, str]] = [
        ({"name": "", "scopes": ["books:read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["books:read"]}, "name"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["admin:all"]}, "scopes"),
        ({"name": "x", "scopes": "books:read"}, "scopes"),
        ({"name": "x", "scopes": ["books:read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "scopes": ["books:read"], "expires_in_days": 3651}, "expires_in_days"),
        ({"name": "x", "scopes": ["books:read"], "expires_in_days": "ten"}, "expires_in_days"),
        ({"name": "x", "scopes": ["books:read"], "owner_id": "bob"}, "owner_id"),
        ({"scopes": ["books:read"]}, "name"),
    ]
    with api_client() as client:
        for body, field in cases:
            response = client.post(
                "/api/v1/keys", json=body, headers=SAME_ORIGIN | signed_in_as("alice")
            )
            assert response.status_code == 400, (body, response.text)
            payload = response.json()
            assert payload["error"] == "invalid_request"
            assert payload.get("field") == field or field in payload["error_description"], payload
        # Not JSON at all
        response = client.post(
            "/api/v1/keys",
            content=b"{not json",
            headers=SAME_ORIGIN | {"content-type": "application/json"} | signed_in_as("alice"),
        )
        assert response.status_code == 400
        # Nothing was minted by any of them
        assert client.get("/api/v1/keys", headers=signed_in_as("alice")).json() == {"keys": []}


def test_changing_a_revoked_key_is_a_conflict() -> None:
    with api_client() as client:
        key = mint(client)
        client.delete(f"/api/v1/keys/{key['id']}", headers=SAME_ORIGIN | signed_in_as("alice"))
        response = client.put(
            f"/api/v1/keys/{key['id']}/scopes",
            json={"scopes": ["account:read"]},
            headers=SAME_ORIGIN | signed_in_as("alice"),
        )
        assert response.status_code == 409
        assert response.json()["error"] == "conflict"


def test_verify_answers_for_anthras_own_servers() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        verify_secret="s3cret-verify",
        public_url=ORIGIN,
    )
    with api_client(settings) as client:
        key = mint(client, scopes=["books:read"])
        service = bearer("s3cret-verify")
        # valid
        body = client.post(
            "/v1/verify", json={"token": key["token"], "scopes": ["books:read"]}, headers=service
        ).json()
        assert body["valid"] is True and body["code"] == "valid"
        assert body["key_id"] == key["id"] and body["owner_id"] == "alice"
        assert body["scopes"] == ["books:read"]
        # insufficient scope
        body = client.post(
            "/v1/verify",
            json={"token": key["token"], "scopes": ["publish:write"]},
            headers=service,
        ).json()
        assert body == body | {"valid": False, "code": "insufficient_scope"}
        assert body["missing_scopes"] == ["publish:write"]
        # unknown and malformed answer alike
        unknown = client.post(
            "/v1/verify", json={"token": "ant_live_" + "A" * 50}, headers=service
        ).json()
        garbage = client.post("/v1/verify", json={"token": "hello"}, headers=service).json()
        assert unknown == garbage == {"valid": False, "code": "invalid_token"}
        # an unknown scope is the caller's mistake
        response = client.post(
            "/v1/verify", json={"token": key["token"], "scopes": ["nope"]}, headers=service
        )
        assert response.status_code == 400 and response.json()["field"] == "scopes"


def test_verify_can_require_a_shared_secret() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        verify_secret="s3cret-verify",
        public_url=ORIGIN,
    )
    with api_client(settings) as client:
        key = mint(client)
        body = {"token": key["token"], "scopes": []}
        assert client.post("/v1/verify", json=body).status_code == 401
        assert client.post("/v1/verify", json=body, headers=bearer("wrong")).status_code == 401
        ok = client.post("/v1/verify", json=body, headers=bearer("s3cret-verify"))
        assert ok.status_code == 200 and ok.json()["valid"] is True


def test_health_readiness_and_schema() -> None:
    with api_client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        assert "/api/v1/keys" in schema.json()["paths"]


def test_every_scope_is_grantable() -> None:
    with api_client() as client:
        key = mint(client, scopes=list(SCOPES))
        assert key["scopes"] == list(SCOPES)


def test_every_event_records_who_and_from_where_but_never_a_token() -> None:
    with api_client() as client:
        other = mint(client)
        response = client.post(
            "/api/v1/keys",
            json={"name": "audited", "scopes": ["books:read"]},
            headers=SAME_ORIGIN
            | signed_in_as("alice")
            | {"X-Request-Id": "req-123", "User-Agent": f"curl/8 {other['token']}"},
        )
        assert response.headers["x-request-id"] == "req-123"
        key = response.json()
        history = client.get(f"/api/v1/keys/{key['id']}/history", headers=signed_in_as("alice"))
        (minted,) = history.json()["events"]
        context = minted["context"]
        assert context["request_id"] == "req-123"
        assert context["client_ip"]
        assert context["user_agent"].startswith("curl/8 " + other["token"][:12])
        assert other["token"][12:] not in history.text
        # A request id that is not plainly an id is replaced with one of ours
        odd = client.get("/healthz", headers={"X-Request-Id": other["token"]})
        assert odd.headers["x-request-id"] != other["token"]


def test_usage_is_counted_per_key_per_day_and_shown_with_last_used() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        used = mint(client, scopes=["account:read"])
        idle = mint(client, scopes=["books:read"])
        # A key never used says so
        keys = {
            k["id"]: k
            for k in client.get("/api/v1/keys", headers=signed_in_as("alice")).json()["keys"]
        }
        assert keys[idle["id"]]["last_used_at"] is None
        # Three requests today, two tomorrow
        for _ in range(3):
            assert client.get("/api/v1/account", headers=bearer(used["token"])).status_code == 200
        clock.advance(86_400)
        for _ in range(2):
            client.get("/api/v1/keys", headers=bearer(used["token"]))
        account = client.get("/api/v1/account", headers=bearer(used["token"])).json()
        by_key = {u["key_id"]: u for u in account["usage"]}
        assert by_key[used["id"]]["requests"] == 6
        assert [d["requests"] for d in by_key[used["id"]]["days"]] == [3, 3]
        assert by_key[idle["id"]] == by_key[idle["id"]] | {"requests": 0, "last_used_at": None}
        listed = client.get("/api/v1/keys", headers=signed_in_as("alice")).json()["keys"]
        last = {k["id"]: k["last_used_at"] for k in listed}
        assert datetime.fromisoformat(last[used["id"]]).timestamp() == pytest.approx(
            clock.now, abs=1
        )
        # Filter: keys unused for a day are the idle one only
        unused = client.get(
            "/api/v1/keys", params={"unused_days": 1}, headers=signed_in_as("alice")
        )
        assert [k["id"] for k in unused.json()["keys"]] == [idle["id"]]
        bad = client.get("/api/v1/keys", params={"unused_days": 0}, headers=signed_in_as("alice"))
        assert bad.status_code == 400


def test_a_token_can_ask_who_it_is_and_what_it_may_do() -> None:
    with api_client() as client:
        key = mint(client, scopes=["publish:write", "books:read"])
        body = client.get("/api/v1/account/whoami", headers=bearer(key["token"])).json()
        assert body == {
            "user_id": "alice",
            "via": "token",
            "key_id": key["id"],
            "scopes": ["books:read", "publish:write"],
            "expires_at": None,
        }
        session = client.get("/api/v1/account/whoami", headers=signed_in_as("alice")).json()
        assert session["via"] == "session"
        assert session["key_id"] is None
        assert len(session["scopes"]) == 6
        assert client.get("/api/v1/account/whoami").status_code == 401


def test_a_token_pasted_as_a_name_or_reason_is_refused_and_kept_nowhere() -> None:
    with api_client() as client:
        alice = SAME_ORIGIN | signed_in_as("alice")
        key = mint(client)
        token = key["token"]
        # Mint a key named with a token, as pasted or upper-cased or base64-encoded
        for name in (token, f"CI {token.upper()}", base64.b64encode(token.encode()).decode()):
            response = client.post(
                "/api/v1/keys", json={"name": name, "scopes": ["books:read"]}, headers=alice
            )
            assert response.status_code == 400
            assert response.json()["field"] == "name"
            assert token[12:] not in response.text
        # Revoke with a reason that holds it (the plain token in a URL is refused before)
        encoded = base64.b64encode(f"leaked {token}".encode()).decode()
        response = client.delete(
            f"/api/v1/keys/{key['id']}", params={"reason": encoded}, headers=alice
        )
        assert response.status_code == 400
        assert response.json()["field"] == "reason"
        # Nothing was recorded: the one key, active, and no trace in the list or the trail
        listed = client.get("/api/v1/keys", headers=alice)
        assert [k["status"] for k in listed.json()["keys"]] == ["active"]
        trail = client.get("/api/v1/audit", headers=alice)
        assert [e["type"] for e in trail.json()["events"]] == ["Minted"]
        assert token[12:] not in listed.text + trail.text


def test_every_answer_with_a_key_says_when_it_was_last_used() -> None:
    with api_client() as client:
        key = mint(client, scopes=["account:read"])
        alice = SAME_ORIGIN | signed_in_as("alice")
        assert client.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200
        shown = client.get(f"/api/v1/keys/{key['id']}", headers=alice).json()["last_used_at"]
        assert shown is not None
        url = f"/api/v1/keys/{key['id']}"
        for answer in (
            client.put(f"{url}/scopes", json={"scopes": ["books:read"]}, headers=alice),
            client.post(f"{url}/suspend", headers=alice),
            client.post(f"{url}/resume", headers=alice),
            client.delete(url, headers=alice),
        ):
            assert answer.status_code == 200, answer.text
            assert answer.json()["last_used_at"] == shown

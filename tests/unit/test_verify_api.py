"""POST /v1/verify: anyone may ask if a token is valid; only its owner or a service learn more."""

from __future__ import annotations

from datetime import UTC, datetime

from infra.settings import Settings
from tests.api_support import ORIGIN, SAME_ORIGIN, SECRET, api_client, bearer, mint, signed_in_as
from tests.conftest import FakeClock

VERIFY_SECRET = "s3cret-verify"
DETAILS = {"key_id", "owner_id", "scopes", "expires_at", "missing_scopes"}


def test_anyone_learns_whether_a_token_is_valid_and_nothing_about_whose_it_is() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        key = mint(client, scopes=["books:read"])
        # A live token, a missing scope, a stranger
        for body, code in [
            ({"token": key["token"]}, "valid"),
            ({"token": key["token"], "scopes": ["publish:write"]}, "insufficient_scope"),
            ({"token": "ant_live_" + "A" * 50}, "invalid_token"),
        ]:
            answer = client.post("/v1/verify", json=body).json()
            assert answer == {"valid": code == "valid", "code": code}
        # Revoked, then asked about the time it was live: that needs credentials
        before = datetime.fromtimestamp(clock.now, UTC).isoformat()
        clock.advance(60)
        client.delete(f"/api/v1/keys/{key['id']}", headers=SAME_ORIGIN | signed_in_as("alice"))
        assert client.post("/v1/verify", json={"token": key["token"]}).json() == {
            "valid": False,
            "code": "invalid_token",
        }
        past = client.post("/v1/verify", json={"token": key["token"], "as_of": before})
        assert past.status_code == 401
        assert past.json()["error"] == "unauthorized"
        assert "key_id" not in past.text and "alice" not in past.text


def test_the_owner_signed_in_learns_everything_about_their_own_token_now_and_then() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        key = mint(client, scopes=["books:read"])
        alice = signed_in_as("alice")
        now = client.post(
            "/v1/verify", json={"token": key["token"], "scopes": ["publish:write"]}, headers=alice
        ).json()
        assert now["owner_id"] == "alice" and now["key_id"] == key["id"]
        assert now["missing_scopes"] == ["publish:write"]
        before = datetime.fromtimestamp(clock.now, UTC).isoformat()
        clock.advance(60)
        client.delete(f"/api/v1/keys/{key['id']}", headers=SAME_ORIGIN | alice)
        then = client.post(
            "/v1/verify", json={"token": key["token"], "as_of": before}, headers=alice
        ).json()
        assert then["valid"] is True and then["owner_id"] == "alice"


def test_another_signed_in_user_learns_no_more_than_anyone() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        key = mint(client, user_id="alice")
        mallory = signed_in_as("mallory")
        now = client.post("/v1/verify", json={"token": key["token"]}, headers=mallory).json()
        assert now == {"valid": True, "code": "valid"}
        # About the past, someone else's token answers as an unknown one
        before = datetime.fromtimestamp(clock.now, UTC).isoformat()
        then = client.post(
            "/v1/verify", json={"token": key["token"], "as_of": before}, headers=mallory
        )
        assert then.status_code == 200
        assert then.json() == {"valid": False, "code": "invalid_token"}


def test_a_service_with_the_verify_secret_learns_everything_and_no_one_else_is_served() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        verify_secret=VERIFY_SECRET,
        public_url=ORIGIN,
    )
    with api_client(settings) as client:
        key = mint(client)
        body = {"token": key["token"]}
        full = client.post("/v1/verify", json=body, headers=bearer(VERIFY_SECRET)).json()
        assert set(full) >= DETAILS and full["owner_id"] == "alice"
        # No credentials, or a wrong secret: refused outright while a secret is configured
        assert client.post("/v1/verify", json=body).status_code == 401
        assert client.post("/v1/verify", json=body, headers=bearer("wrong")).status_code == 401
        # The owner's session is still the owner's
        mine = client.post("/v1/verify", json=body, headers=signed_in_as("alice")).json()
        assert mine["key_id"] == key["id"]


def test_without_a_configured_secret_an_authorization_header_is_no_credential() -> None:
    with api_client() as client:
        key = mint(client)
        # Not the token itself, not anything else: the caller is anyone
        for credential in (key["token"], "anything"):
            response = client.post(
                "/v1/verify", json={"token": key["token"]}, headers=bearer(credential)
            )
            assert response.json() == {"valid": True, "code": "valid"}
        past = client.post(
            "/v1/verify",
            json={"token": key["token"], "as_of": key["created_at"]},
            headers=bearer(key["token"]),
        )
        assert past.status_code == 401

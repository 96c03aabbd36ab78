"""What a key could do at any past instant, over HTTP: GET …?as_of= and verify with as_of."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.api_support import SAME_ORIGIN, api_client, mint, signed_in_as
from tests.conftest import FakeClock

HOUR = 3600.0


def instant(clock: FakeClock, offset: float = 0.0) -> str:
    return datetime.fromtimestamp(clock.now + offset, UTC).isoformat()


def test_a_key_as_it_was_and_a_token_as_it_would_have_been_answered() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        alice = SAME_ORIGIN | signed_in_as("alice")
        # Mint with books:read at t0; widen at t1; revoke at t2
        t0 = instant(clock)
        key = mint(client, scopes=["books:read"])
        clock.advance(HOUR)
        t1 = instant(clock)
        client.put(
            f"/api/v1/keys/{key['id']}/scopes",
            json={"scopes": ["books:read", "publish:write"]},
            headers=alice,
        )
        clock.advance(HOUR)
        t2 = instant(clock)
        client.delete(f"/api/v1/keys/{key['id']}", headers=alice)

        def as_of(when: str) -> dict[str, object]:
            response = client.get(
                f"/api/v1/keys/{key['id']}", params={"as_of": when}, headers=alice
            )
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        # Before the mint it did not exist
        before = client.get(
            f"/api/v1/keys/{key['id']}", params={"as_of": instant(clock, -3 * HOUR)}, headers=alice
        )
        assert before.status_code == 404
        # Between t0 and t1: active with books:read only
        assert as_of(t0)["scopes"] == ["books:read"]
        assert as_of(instant(clock, -1.5 * HOUR))["status"] == "active"
        # From t1: publish:write too; from t2: revoked
        assert as_of(t1)["scopes"] == ["books:read", "publish:write"]
        assert as_of(t2)["status"] == "revoked"

        def verify(when: str, scopes: list[str]) -> str:
            body = {"token": key["token"], "scopes": scopes, "as_of": when}
            response = client.post("/v1/verify", json=body, headers=signed_in_as("alice"))
            assert response.status_code == 200, response.text
            return str(response.json()["code"])

        # The verify surface answers for the past the same way
        assert verify(instant(clock, -1.5 * HOUR), ["publish:write"]) == "insufficient_scope"
        assert verify(t1, ["publish:write"]) == "valid"
        assert verify(t2, ["books:read"]) == "invalid_token"
        assert verify(instant(clock, -3 * HOUR), []) == "invalid_token"
        # …while now it is simply revoked
        assert client.post("/v1/verify", json={"token": key["token"]}).json()["valid"] is False

        # The history marks the change that widened the scopes
        events = client.get(f"/api/v1/keys/{key['id']}/history", headers=alice).json()["events"]
        scopes_set = events[1]
        assert scopes_set["widened"] is True
        assert scopes_set["added"] == ["publish:write"]
        assert scopes_set["removed"] == []


def test_an_instant_without_an_offset_or_that_is_not_one_is_a_400() -> None:
    with api_client() as client:
        key = mint(client)
        for bad in ["2026-11-28T12:00:00", "yesterday", "2026-13-01T00:00:00Z"]:
            response = client.get(
                f"/api/v1/keys/{key['id']}", params={"as_of": bad}, headers=signed_in_as("alice")
            )
            assert response.status_code == 400, bad
            assert response.json()["field"] == "as_of"
        response = client.post(
            "/v1/verify",
            json={"token": key["token"], "as_of": "2026-11-28T12:00:00"},
            headers=signed_in_as("alice"),
        )
        assert response.status_code == 400
        assert response.json()["field"] == "as_of"

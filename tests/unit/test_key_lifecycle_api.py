"""The key lifecycle over HTTP, in process on the in-memory store: rotate with a grace, self-
rotation, a lost rotation answer retried, suspend and resume, expiry warnings, the lifetime
policy and stale keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from tests.api_support import OPERATOR, SAME_ORIGIN, api_client, bearer, mint, signed_in_as
from tests.conftest import FakeClock

ALICE = SAME_ORIGIN | signed_in_as("alice")
DAY = 86_400


def rotate(
    client: TestClient[Any], key_id: str, headers: dict[str, str] = ALICE, **body: Any
) -> Any:
    return client.post(f"/api/v1/keys/{key_id}/rotate", json=body, headers=headers)


def whoami(client: TestClient[Any], token: str) -> Any:
    return client.get("/api/v1/account/whoami", headers=bearer(token))


def history_types(client: TestClient[Any], key_id: str) -> list[str]:
    events = client.get(f"/api/v1/keys/{key_id}/history", headers=ALICE).json()["events"]
    return [e["type"] for e in events]


def set_policy(client: TestClient[Any], **terms: Any) -> Any:
    response = client.put("/v1/operator/lifetime-policy", json=terms, headers=OPERATOR)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_rotated_key_works_through_its_grace_and_then_stops(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        old = mint(client, name="deploy bot", scopes=["books:read", "account:read"])
        response = rotate(client, old["id"], grace_seconds=3600)
        assert response.status_code == 201, response.text
        new = response.json()
        assert set(new) == {
            "id",
            "token",
            "prefix",
            "name",
            "scopes",
            "created_at",
            "expires_at",
            "predecessor_id",
            "predecessor_retires_at",
        }
        assert new["name"] == "deploy bot" and new["scopes"] == ["books:read", "account:read"]
        assert new["predecessor_id"] == old["id"] and new["token"] != old["token"]
        retires = datetime.fromisoformat(new["predecessor_retires_at"])
        assert retires == datetime.fromtimestamp(clock.now + 3600, UTC)
        # Both work during the grace; the old one is listed as active until it ends
        assert whoami(client, old["token"]).status_code == 200
        assert whoami(client, new["token"]).status_code == 200
        clock.advance(3600)
        refused = whoami(client, old["token"])
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert whoami(client, new["token"]).status_code == 200
        listed = {
            k["id"]: k["status"] for k in client.get("/api/v1/keys", headers=ALICE).json()["keys"]
        }
        assert listed == {old["id"]: "rotated", new["id"]: "active"}
        shown = client.get(f"/api/v1/keys/{old['id']}", headers=ALICE).json()
        assert shown["successor_id"] == new["id"] and shown["retires_at"] is not None
        successor = client.get(f"/api/v1/keys/{new['id']}", headers=ALICE).json()
        assert successor["predecessor_id"] == old["id"] and successor["successor_id"] is None
        # The lineage, both ways
        assert history_types(client, old["id"]) == ["Minted", "Rotated"]
        rotated = client.get(f"/api/v1/keys/{old['id']}/history", headers=ALICE).json()
        assert rotated["events"][1]["successor_id"] == new["id"]
        minted = client.get(f"/api/v1/keys/{new['id']}/history", headers=ALICE).json()
        assert minted["events"][0]["predecessor_id"] == old["id"]
        assert old["token"] not in rotated and new["token"] not in str(minted)


def test_a_rotation_with_no_grace_stops_the_old_key_before_it_answers() -> None:
    with api_client() as client:
        old = mint(client)
        new = rotate(client, old["id"]).json()
        assert whoami(client, old["token"]).status_code == 401
        assert whoami(client, new["token"]).status_code == 200


def test_the_grace_never_outlives_the_old_keys_expiry(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        old = mint(client, expires_in_days=1)
        clock.advance(DAY - 60)
        new = rotate(client, old["id"], grace_seconds=86_400).json()
        assert new["predecessor_retires_at"] == old["expires_at"]


def test_the_successor_lives_as_long_as_its_predecessor_unless_told(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        thirty = mint(client, expires_in_days=30)
        same = rotate(client, thirty["id"]).json()
        assert datetime.fromisoformat(same["expires_at"]) - datetime.fromisoformat(
            same["created_at"]
        ) == timedelta(days=30)
        shorter = rotate(client, same["id"], expires_in_days=7).json()
        assert datetime.fromisoformat(shorter["expires_at"]) - datetime.fromisoformat(
            shorter["created_at"]
        ) == timedelta(days=7)
        forever = rotate(client, shorter["id"], expires_in_days=None).json()
        assert forever["expires_at"] is None


def test_a_token_rotates_itself_without_any_scope_and_never_another_key() -> None:
    with api_client() as client:
        ci = mint(client, scopes=["books:read"])
        other = mint(client)
        refused = rotate(client, other["id"], headers=bearer(ci["token"]))
        assert refused.status_code == 403
        response = rotate(client, ci["id"], headers=bearer(ci["token"]), grace_seconds=60)
        assert response.status_code == 201, response.text
        successor = response.json()
        assert successor["scopes"] == ["books:read"]
        # The answer's own request carried the old token: it says when that token expires not
        assert whoami(client, successor["token"]).json()["key_id"] == successor["id"]
        events = client.get(f"/api/v1/keys/{ci['id']}/history", headers=ALICE).json()["events"]
        assert events[-1]["actor"] == f"key:{ci['id']}"


def test_a_rotation_cannot_widen_or_name_anything_else() -> None:
    with api_client() as client:
        key = mint(client)
        for body, field in (
            ({"scopes": ["keys:write"]}, "scopes"),
            ({"grace_seconds": 86_401}, "grace_seconds"),
            ({"grace_seconds": -1}, "grace_seconds"),
            ({"grace_seconds": "60"}, "grace_seconds"),
            ({"expires_in_days": 0}, "expires_in_days"),
        ):
            response = rotate(client, key["id"], **body)
            assert response.status_code == 400, (body, response.text)
            assert field in response.text
        assert whoami(client, key["token"]).status_code == 200


def test_a_key_is_rotated_once_and_ended_keys_not_at_all() -> None:
    with api_client() as client:
        key = mint(client)
        assert rotate(client, key["id"], grace_seconds=600).status_code == 201
        again = rotate(client, key["id"], grace_seconds=600)
        assert again.status_code == 409 and "Idempotency-Key" in again.json()["error_description"]
        revoked = mint(client)
        client.delete(f"/api/v1/keys/{revoked['id']}", headers=ALICE)
        assert rotate(client, revoked["id"]).status_code == 409
        assert rotate(client, "not-a-key").status_code == 404
        assert rotate(client, mint(client, user_id="bob")["id"]).status_code == 404


def test_a_rotation_retried_after_a_lost_answer_leaves_one_live_successor() -> None:
    with api_client() as client:
        key = mint(client)
        retry = ALICE | {"Idempotency-Key": "rotate-ci-1"}
        lost = rotate(client, key["id"], headers=retry, grace_seconds=600).json()
        # The client never saw `lost`; it sends the same request again
        second = rotate(client, key["id"], headers=retry, grace_seconds=600)
        assert second.status_code == 201, second.text
        kept = second.json()
        assert kept["id"] != lost["id"]
        assert kept["predecessor_retires_at"] == lost["predecessor_retires_at"]
        assert whoami(client, lost["token"]).status_code == 401
        assert whoami(client, kept["token"]).status_code == 200
        assert whoami(client, key["token"]).status_code == 200  # still in its grace
        statuses = {
            k["id"]: k["status"] for k in client.get("/api/v1/keys", headers=ALICE).json()["keys"]
        }
        assert statuses == {key["id"]: "active", lost["id"]: "revoked", kept["id"]: "active"}
        old_events = client.get(f"/api/v1/keys/{key['id']}/history", headers=ALICE).json()
        assert old_events["events"][-1]["successor_id"] == kept["id"]
        # Another request under the same key is refused, not taken for a retry
        other = rotate(client, key["id"], headers=retry, grace_seconds=5)
        assert other.status_code == 422


def test_suspend_refuses_a_key_everywhere_until_it_is_resumed() -> None:
    with api_client() as client:
        key = mint(client, scopes=["books:read", "account:read"])
        suspended = client.post(
            f"/api/v1/keys/{key['id']}/suspend", json={"reason": "laptop lost"}, headers=ALICE
        )
        assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
        refused = whoami(client, key["token"])
        assert refused.status_code == 401
        assert "suspended" in refused.headers["www-authenticate"]
        verified = client.post("/v1/verify", json={"token": key["token"]})
        assert verified.json() == {"valid": False, "code": "invalid_token"}
        # A suspended key cannot be rotated, and suspending again changes nothing
        assert rotate(client, key["id"]).status_code == 409
        again = client.post(f"/api/v1/keys/{key['id']}/suspend", headers=ALICE)
        assert again.status_code == 200
        resumed = client.post(f"/api/v1/keys/{key['id']}/resume", headers=ALICE)
        assert resumed.status_code == 200 and resumed.json()["status"] == "active"
        assert whoami(client, key["token"]).status_code == 200
        assert history_types(client, key["id"]) == ["Minted", "Suspended", "Resumed"]


def test_only_a_session_or_an_operator_suspends_and_resumes() -> None:
    with api_client() as client:
        key = mint(client, scopes=["books:write", "account:read"])
        as_token = client.post(f"/api/v1/keys/{key['id']}/suspend", headers=bearer(key["token"]))
        assert as_token.status_code in (401, 403)
        bobs = client.post(
            f"/api/v1/keys/{key['id']}/suspend", headers=SAME_ORIGIN | signed_in_as("bob")
        )
        assert bobs.status_code == 404
        by_operator = client.post(f"/v1/operator/keys/{key['id']}/suspend", headers=OPERATOR)
        assert by_operator.status_code == 200 and by_operator.json()["status"] == "suspended"
        events = client.get(f"/api/v1/keys/{key['id']}/history", headers=ALICE).json()["events"]
        assert events[-1]["actor"] == "operator:api"
        back = client.post(f"/v1/operator/keys/{key['id']}/resume", headers=OPERATOR)
        assert back.json()["status"] == "active"


def test_every_token_answer_says_when_the_token_expires(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        expiring = mint(client, scopes=["account:read"], expires_in_days=30)
        forever = mint(client, scopes=["account:read"])
        answer = client.get("/api/v1/keys", headers=bearer(expiring["token"]))
        expected = datetime.fromisoformat(expiring["expires_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert answer.headers["anthra-token-expiration"] == expected
        assert whoami(client, expiring["token"]).headers["anthra-token-expiration"] == expected
        assert datetime.fromisoformat(
            whoami(client, expiring["token"]).json()["expires_at"]
        ) == datetime.fromisoformat(expiring["expires_at"])
        assert "anthra-token-expiration" not in whoami(client, forever["token"]).headers
        assert whoami(client, forever["token"]).json()["expires_at"] is None
        assert "anthra-token-expiration" not in client.get("/api/v1/keys", headers=ALICE).headers


def test_keys_expiring_soon_are_listed_soonest_first(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        mint(client, name="month", expires_in_days=30)
        week = mint(client, name="week", expires_in_days=7)
        day = mint(client, name="day", expires_in_days=1)
        mint(client, name="forever")
        gone = mint(client, name="gone", expires_in_days=2)
        client.delete(f"/api/v1/keys/{gone['id']}", headers=ALICE)
        soon = client.get("/api/v1/keys?expiring_within_days=7", headers=ALICE).json()["keys"]
        assert [k["id"] for k in soon] == [day["id"], week["id"]]
        counts = client.get("/api/v1/account", headers=ALICE).json()["keys"]
        assert counts["expiring_soon"] == 2 and counts["revoked"] == 1
        bad = client.get("/api/v1/keys?expiring_within_days=0", headers=ALICE)
        assert bad.status_code == 400 and "expiring_within_days" in bad.text


def test_the_lifetime_policy_refuses_at_mint_and_rotate_naming_the_limit() -> None:
    with api_client() as client:
        assert set_policy(client, max_lifetime_days=30)["max_lifetime_days"] == 30
        for body in ({"expires_in_days": 90}, {"expires_in_days": None}):
            response = client.post(
                "/api/v1/keys", json={"name": "k", "scopes": ["books:read"]} | body, headers=ALICE
            )
            assert response.status_code == 400, response.text
            assert response.json()["field"] == "expires_in_days"
            assert "30 days" in response.json()["error_description"]
        key = mint(client, expires_in_days=30)
        assert rotate(client, key["id"], expires_in_days=31).status_code == 400
        assert rotate(client, key["id"], expires_in_days=10).status_code == 201


def test_a_tightened_policy_blocks_keys_at_use_and_relaxing_it_lets_them_work() -> None:
    with api_client() as client:
        long = mint(client, scopes=["account:read"], expires_in_days=365)
        short = mint(client, scopes=["account:read"], expires_in_days=30)
        view = set_policy(client, max_lifetime_days=90)
        assert view["blocked_keys"] == 1
        refused = whoami(client, long["token"])
        assert refused.status_code == 401
        assert "lifetime policy" in refused.headers["www-authenticate"]
        assert whoami(client, short["token"]).status_code == 200
        listed = {
            k["id"]: k["status"] for k in client.get("/api/v1/keys", headers=ALICE).json()["keys"]
        }
        assert listed == {long["id"]: "blocked", short["id"]: "active"}
        set_policy(client)
        assert whoami(client, long["token"]).status_code == 200
        # Nothing was recorded on the key itself
        assert history_types(client, long["id"]) == ["Minted"]


def test_the_policy_is_for_operators_only_and_checked() -> None:
    with api_client() as client:
        key = mint(client, scopes=["account:read"])
        for headers in (ALICE, bearer(key["token"]), {}):
            response = client.put(
                "/v1/operator/lifetime-policy", json={"max_lifetime_days": 1}, headers=headers
            )
            assert response.status_code in (401, 403)
        for terms, field in (
            ({"max_lifetime_days": 0}, "max_lifetime_days"),
            ({"max_lifetime_days": 3651}, "max_lifetime_days"),
            ({"expiry_required": "yes"}, "expiry_required"),
            ({"revoke_unused_after_days": -5}, "revoke_unused_after_days"),
            ({"forever": True}, "forever"),
        ):
            response = client.put("/v1/operator/lifetime-policy", json=terms, headers=OPERATOR)
            assert response.status_code == 400 and field in response.text
        assert client.get("/v1/operator/lifetime-policy", headers=OPERATOR).json() == {
            "max_lifetime_days": None,
            "expiry_required": False,
            "revoke_unused_after_days": None,
            "blocked_keys": 0,
        }


def test_stale_keys_are_listed_then_revoked_as_unused(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        idle = mint(client, scopes=["account:read"])
        busy = mint(client, scopes=["account:read"])
        clock.advance(40 * DAY)
        assert whoami(client, busy["token"]).status_code == 200
        fresh = mint(client, scopes=["account:read"])
        nothing = client.get("/v1/operator/stale-keys", headers=OPERATOR).json()
        assert nothing == {"revoke_unused_after_days": None, "keys": []}
        set_policy(client, revoke_unused_after_days=30)
        dry = client.get("/v1/operator/stale-keys", headers=OPERATOR).json()
        assert [k["id"] for k in dry["keys"]] == [idle["id"]]
        # A dry run revokes nothing (asked with the session: a use of the token would count)
        assert client.get(f"/api/v1/keys/{idle['id']}", headers=ALICE).json()["status"] == "active"
        sweeper = client.app.state.sweeper
        assert sweeper.revoke_stale() == 1
        assert whoami(client, idle["token"]).status_code == 401
        for token in (busy["token"], fresh["token"]):
            assert whoami(client, token).status_code == 200
        events = client.get(f"/api/v1/keys/{idle['id']}/history", headers=ALICE).json()["events"]
        assert events[-1]["type"] == "Revoked" and events[-1]["reason"] == "unused"
        assert events[-1]["actor"] == "system"


def test_answers_about_the_past_judge_a_key_by_the_policy_then_in_force(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        year = mint(client, scopes=["books:read", "account:read"], expires_in_days=365)
        start = datetime.fromtimestamp(clock.now, UTC)
        clock.advance(DAY)
        set_policy(client, max_lifetime_days=90)  # blocks it from here
        clock.advance(DAY)
        set_policy(client)  # and no more from here
        clock.advance(DAY)
        blocked_then = (start + timedelta(days=1, hours=12)).isoformat()
        shown = client.get(
            f"/api/v1/keys/{year['id']}", params={"as_of": blocked_then}, headers=ALICE
        )
        assert shown.json()["status"] == "blocked"
        fine_then = (start + timedelta(hours=12)).isoformat()
        shown = client.get(f"/api/v1/keys/{year['id']}", params={"as_of": fine_then}, headers=ALICE)
        assert shown.json()["status"] == "active"
        exposure = client.get(
            "/api/v1/audit/exposure",
            params={
                "scope": "books:read",
                "since": start.isoformat(),
                "until": (start + timedelta(days=3)).isoformat(),
            },
            headers=ALICE,
        ).json()
        (key,) = exposure["keys"]
        assert len(key["intervals"]) == 2  # usable before the policy, and after it relaxed
        assert key["intervals"][0]["end"] == (start + timedelta(days=1)).isoformat().replace(
            "+00:00", "Z"
        )

"""The audit API over HTTP, in process: the trail, its pages, exposure, export and the chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from infra.settings import Settings
from tests.api_support import (
    OPERATOR,
    ORIGIN,
    SAME_ORIGIN,
    SECRET,
    api_client,
    bearer,
    mint,
    signed_in_as,
)
from tests.conftest import FakeClock

HOUR = 3600.0


def at(clock: FakeClock, offset: float = 0.0) -> str:
    return datetime.fromtimestamp(clock.now + offset, UTC).isoformat()


def test_the_trail_pages_filters_and_stays_the_callers_own() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        alice = SAME_ORIGIN | signed_in_as("alice")
        # Three keys of alice and one of bob, with a scope change and a revocation
        keys = [mint(client, scopes=["books:read"]) for _ in range(3)]
        mint(client, "bob")
        clock.advance(HOUR)
        client.put(
            f"/api/v1/keys/{keys[0]['id']}/scopes",
            json={"scopes": ["publish:write"]},
            headers=alice,
        )
        client.delete(f"/api/v1/keys/{keys[1]['id']}", headers=alice)

        # Newest first by default, tagged by type, never a token
        page = client.get("/api/v1/audit", headers=alice).json()
        assert [e["type"] for e in page["events"]] == [
            "Revoked",
            "ScopesSet",
            "Minted",
            "Minted",
            "Minted",
        ]
        assert page["next"] is None
        assert page["events"][1]["widened"] is True
        assert all(k["token"][12:] not in json.dumps(page) for k in keys)
        assert {e["key_id"] for e in page["events"]} == {k["id"] for k in keys}

        # Pages of two, oldest first, stable while events are appended in between
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"order": "oldest", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/audit", params=params, headers=alice).json()
            seen += [e["position"] for e in page["events"]]
            if len(seen) == 2:
                mint(client)  # a new event lands mid-way
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == sorted(seen)
        assert len(seen) == len(set(seen)) == 6

        # Filters: one key, one type, a time window
        only = client.get("/api/v1/audit", params={"key_id": keys[0]["id"]}, headers=alice).json()
        assert [e["type"] for e in only["events"]] == ["ScopesSet", "Minted"]
        revoked = client.get("/api/v1/audit", params={"type": "Revoked"}, headers=alice).json()
        assert [e["key_id"] for e in revoked["events"]] == [keys[1]["id"]]
        recent = client.get("/api/v1/audit", params={"since": at(clock, -60)}, headers=alice).json()
        assert {e["type"] for e in recent["events"]} == {"ScopesSet", "Revoked", "Minted"}
        assert len(recent["events"]) == 3

        # Bad filters are 400s naming the field
        for params, field in [
            ({"key_id": "nope"}, "key_id"),
            ({"type": "Deleted"}, "type"),
            ({"since": "yesterday"}, "since"),
            ({"cursor": "abc"}, "cursor"),
        ]:
            response = client.get("/api/v1/audit", params=params, headers=alice)
            assert response.status_code == 400, params
            assert response.json()["field"] == field
        assert client.get("/api/v1/audit", params={"limit": 0}, headers=alice).status_code == 400


def test_exposure_lists_the_keys_that_held_a_scope_in_a_window() -> None:
    clock = FakeClock()
    with api_client(clock=clock) as client:
        alice = SAME_ORIGIN | signed_in_as("alice")
        start = at(clock)
        held = mint(client, scopes=["publish:write"])
        mint(client, scopes=["books:read"])
        clock.advance(HOUR)
        client.delete(f"/api/v1/keys/{held['id']}", headers=alice)
        revoked_at = at(clock)
        clock.advance(HOUR)
        body = client.get(
            "/api/v1/audit/exposure",
            params={"scope": "publish:write", "since": start, "until": at(clock)},
            headers=alice,
        ).json()
        (key,) = body["keys"]
        assert key["id"] == held["id"]
        (interval,) = key["intervals"]
        assert datetime.fromisoformat(interval["start"]) == datetime.fromisoformat(start)
        assert datetime.fromisoformat(interval["end"]) == datetime.fromisoformat(revoked_at)
        bad = client.get(
            "/api/v1/audit/exposure", params={"scope": "root", "since": start}, headers=alice
        )
        assert bad.status_code == 400
        assert bad.json()["field"] == "scope"


def test_export_is_ndjson_resumable_from_a_position_and_the_chain_verifies() -> None:
    with api_client() as client:
        alice = signed_in_as("alice")
        for _ in range(3):
            mint(client)
        lines = [
            json.loads(line)
            for line in client.get("/api/v1/audit/export", headers=alice).text.splitlines()
        ]
        assert [line["type"] for line in lines] == ["Minted"] * 3
        resumed = client.get(
            "/api/v1/audit/export", params={"after": lines[0]["position"]}, headers=alice
        ).text.splitlines()
        assert [json.loads(line)["position"] for line in resumed] == [
            lines[1]["position"],
            lines[2]["position"],
        ]
        report = client.post("/v1/operator/audit/check", headers=OPERATOR).json()
        assert report["ok"] is True
        assert report["head_chain"] == lines[-1]["chain"]


def test_a_token_needs_account_read_for_the_trail() -> None:
    with api_client() as client:
        key = mint(client, scopes=["books:read"])
        assert client.get("/api/v1/audit", headers=bearer(key["token"])).status_code == 403
        reader = mint(client, scopes=["account:read"])
        assert client.get("/api/v1/audit", headers=bearer(reader["token"])).status_code == 200


def test_verifying_the_whole_chain_is_an_operator_action_one_at_a_time() -> None:
    with api_client() as client:
        reader = mint(client, scopes=["account:read"])
        # It reads every owner's events: neither a token nor a signed-in user may start it
        for headers in (bearer(reader["token"]), signed_in_as("alice") | SAME_ORIGIN, {}):
            refused = client.post("/v1/operator/audit/check", headers=headers)
            assert refused.status_code in (401, 403), headers
        wrong = {"Authorization": "Bearer " + "x" * 40}
        assert client.post("/v1/operator/audit/check", headers=wrong).status_code == 401
        # The operator may; while one runs, a second caller is told to come back
        audit = client.app.state.audit
        audit._checking.acquire()
        try:
            busy = client.post("/v1/operator/audit/check", headers=OPERATOR)
        finally:
            audit._checking.release()
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "5"
        assert client.post("/v1/operator/audit/check", headers=OPERATOR).json()["ok"]
        # And a new run starts at most every few seconds
        again = client.post("/v1/operator/audit/check", headers=OPERATOR)
        assert again.status_code == 429
        assert 1 <= int(again.headers["retry-after"]) <= 10
        # The old session route is gone
        assert client.get("/api/v1/audit/verify", headers=signed_in_as("alice")).status_code in (
            400,
            404,
        )


def test_operator_routes_are_off_without_an_operator_secret() -> None:
    settings = Settings(database_url="memory:", auth_secrets=(SECRET,), public_url=ORIGIN)
    with api_client(settings) as client:
        refused = client.post("/v1/operator/audit/check", headers=OPERATOR)
        assert refused.status_code == 403
        assert "ANTHRA_OPERATOR_SECRET" in refused.json()["error_description"]


def test_the_type_filter_takes_every_type_the_trail_shows() -> None:
    from typing import get_args

    from api.events import AUDIT_EVENT_TYPES, AuditEventType

    assert set(get_args(AuditEventType)) == AUDIT_EVENT_TYPES

"""Idempotency-Key: a retried request never leaves two live keys and is never done twice."""

from __future__ import annotations

from typing import Any

import pytest

from domain.idempotency import record_id
from tests.api_support import SAME_ORIGIN, api_client, bearer, signed_in_as
from tests.conftest import FakeClock

ALICE = SAME_ORIGIN | signed_in_as("alice")
BODY = {"name": "deploy", "scopes": ["books:read"], "expires_in_days": 30}


def mint(client: Any, key: str, body: dict[str, Any] = BODY, user: str = "alice") -> Any:
    # As bytes, so that the HTTP client sends whatever the test says, non-ASCII included.
    headers = SAME_ORIGIN | signed_in_as(user) | {"Idempotency-Key": key.encode()}
    return client.post("/api/v1/keys", json=body, headers=headers)


def live_keys(client: Any, user: str = "alice") -> list[dict[str, Any]]:
    keys = client.get("/api/v1/keys", headers=signed_in_as(user)).json()["keys"]
    return [k for k in keys if k["status"] == "active"]


def test_a_retried_mint_supersedes_the_first_attempt_and_leaves_one_live_key() -> None:
    with api_client() as client:
        # The first attempt is minted, but say its response never reached the client
        first = mint(client, "req-7f3a")
        assert first.status_code == 201
        # The retry under the same key answers with a new token
        retry = mint(client, "req-7f3a")
        assert retry.status_code == 201
        assert retry.json()["token"] != first.json()["token"]
        # Exactly one key is live: the retry's
        assert [k["id"] for k in live_keys(client)] == [retry.json()["id"]]
        # The first attempt's key was revoked as superseded, by the same caller
        history = client.get(
            f"/api/v1/keys/{first.json()['id']}/history", headers=signed_in_as("alice")
        ).json()["events"]
        assert [e["type"] for e in history] == ["Minted", "Revoked"]
        assert history[-1]["reason"] == "superseded"
        assert history[-1]["actor"] == "user:alice"
        # Its token no longer works; the new one does
        assert (
            client.get("/api/v1/account/whoami", headers=bearer(first.json()["token"])).status_code
            == 401
        )
        assert (
            client.get("/api/v1/account/whoami", headers=bearer(retry.json()["token"])).status_code
            == 200
        )
        # A third try supersedes the second in turn
        third = mint(client, "req-7f3a")
        assert [k["id"] for k in live_keys(client)] == [third.json()["id"]]


def test_another_request_under_the_same_key_is_a_422_and_mints_nothing() -> None:
    with api_client() as client:
        assert mint(client, "req-1").status_code == 201
        other = mint(client, "req-1", BODY | {"name": "something else"})
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reused"
        assert other.json()["field"] == "Idempotency-Key"
        assert len(live_keys(client)) == 1


def test_after_24_hours_the_key_names_a_new_request(clock: FakeClock) -> None:
    with api_client(clock=clock) as client:
        first = mint(client, "nightly")
        clock.advance(24 * 3600)
        # A day later the same key is a new request: the earlier key stays live
        later = mint(client, "nightly", BODY | {"name": "another"})
        assert later.status_code == 201
        assert {k["id"] for k in live_keys(client)} == {first.json()["id"], later.json()["id"]}


def test_idempotency_keys_belong_to_their_owner() -> None:
    with api_client() as client:
        mine = mint(client, "shared-name")
        theirs = mint(client, "shared-name", user="bob")
        assert theirs.status_code == 201
        assert [k["id"] for k in live_keys(client)] == [mine.json()["id"]]
        assert [k["id"] for k in live_keys(client, "bob")] == [theirs.json()["id"]]


def test_a_retried_revoke_or_scope_change_is_done_once_and_answered_again() -> None:
    with api_client() as client:
        key = mint(client, "mint-1").json()
        path = f"/api/v1/keys/{key['id']}"
        # The same scope change twice under one key: one ScopesSet, the same answer
        change = {"scopes": ["books:read", "account:read"]}
        headers = ALICE | {"Idempotency-Key": "scopes-1"}
        first = client.put(f"{path}/scopes", json=change, headers=headers)
        again = client.put(f"{path}/scopes", json=change, headers=headers)
        assert first.status_code == again.status_code == 200
        assert first.json()["scopes"] == again.json()["scopes"]
        # Another change under that key is refused and changes nothing
        refused = client.put(f"{path}/scopes", json={"scopes": ["books:write"]}, headers=headers)
        assert refused.status_code == 422
        # A revoke twice under one key: one Revoked
        headers = ALICE | {"Idempotency-Key": "revoke-1"}
        assert client.delete(path, headers=headers).status_code == 200
        assert client.delete(path, headers=headers).json()["status"] == "revoked"
        history = client.get(f"{path}/history", headers=signed_in_as("alice")).json()["events"]
        assert [e["type"] for e in history] == ["Minted", "ScopesSet", "Revoked"]
        # The mint's key cannot be reused for a revoke
        other = mint(client, "mint-2").json()
        reused = client.delete(
            f"/api/v1/keys/{other['id']}", headers=ALICE | {"Idempotency-Key": "mint-1"}
        )
        assert reused.status_code == 422
        assert live_keys(client)[0]["id"] == other["id"]


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "has space", "naïve", "tab\there"],
    ids=["empty", "256 chars", "space", "non-ASCII", "tab"],
)
def test_a_malformed_idempotency_key_is_a_400_naming_the_header(key: str) -> None:
    with api_client() as client:
        answer = mint(client, key)
        assert answer.status_code == 400
        assert answer.json()["field"] == "Idempotency-Key"
        assert live_keys(client) == []


def test_an_idempotency_record_is_not_a_key() -> None:
    with api_client() as client:
        mint(client, "req-9")
        record = record_id("alice", "req-9")
        for path in (f"/api/v1/keys/{record}", f"/api/v1/keys/{record}/history"):
            assert client.get(path, headers=signed_in_as("alice")).status_code == 404
        assert client.delete(f"/api/v1/keys/{record}", headers=ALICE).status_code == 404

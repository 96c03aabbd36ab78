"""Failed authentication attempts: limited per client IP and token prefix, never a valid token."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from domain import token as token_format
from infra.auth_failure_stores import MemoryAuthFailureStore
from infra.auth_failure_sync import AuthFailureSync
from infra.auth_failures import AuthFailures, ip_subject, prefix_subject
from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client, bearer, from_peer, mint, signed_in_as
from tests.conftest import FakeClock

POLICY = """
[[route]]
method = "GET"
path = "/api/v1/books/*"
scope = "books:read"
"""


def limiter(clock: FakeClock, per_ip: int = 3, per_prefix: int = 2) -> AuthFailures:
    return AuthFailures(per_ip=per_ip, per_prefix=per_prefix, window=60, clock=clock)


# Counting


def test_a_client_is_refused_after_its_limit_until_the_window_ends() -> None:
    clock = FakeClock(start=6000.0)
    failures = limiter(clock)
    # Three failures are answered as failures; the fourth is "too many"
    assert [failures.attempt_failed("6.6.6.6") for _ in range(3)] == [None, None, None]
    clock.advance(15)
    assert failures.attempt_failed("6.6.6.6") == 45
    # Another client is not
    assert failures.attempt_failed("7.7.7.7") is None
    # The next window starts afresh
    clock.advance(45)
    assert failures.attempt_failed("6.6.6.6") is None


def test_a_token_prefix_is_limited_from_any_client() -> None:
    failures = limiter(FakeClock(start=6000.0), per_ip=100, per_prefix=2)
    guess = "ant_live_Abc" + "x" * 47
    assert failures.attempt_failed("1.1.1.1", guess) is None
    assert failures.attempt_failed("2.2.2.2", guess[:12] + "y" * 47) is None
    assert failures.attempt_failed("3.3.3.3", guess) == 60
    assert failures.attempt_failed("3.3.3.3", "ant_live_Xyz" + "x" * 47) is None


def test_subjects_keep_at_most_twelve_characters_and_ipv6_clients_count_by_their_64() -> None:
    token = token_format.generate()
    assert prefix_subject(token) == "prefix:" + token[:12]
    # Not token-shaped: 12 characters of some other secret are not kept at all
    assert prefix_subject("a-verify-secret-of-some-length") is None
    assert ip_subject("2001:db8:1:2:aaaa::1") == ip_subject("2001:db8:1:2:ffff::9")
    assert ip_subject("2001:db8:1:2:aaaa::1") == "ip:2001:db8:1:2::/64"
    assert ip_subject("::ffff:6.6.6.6") == "ip:6.6.6.6"
    assert ip_subject("testclient") is None


def test_a_limit_of_zero_is_off() -> None:
    failures = limiter(FakeClock(), per_ip=0, per_prefix=0)
    assert not failures.enabled
    assert all(failures.attempt_failed("6.6.6.6", "ant_live_x") is None for _ in range(50))


# Sharing between processes


def test_failures_counted_in_one_process_limit_another_through_the_shared_store() -> None:
    clock = FakeClock(start=6000.0)
    store = MemoryAuthFailureStore()
    a, b = limiter(clock), limiter(clock)
    sync_a, sync_b = AuthFailureSync(a, store, 1), AuthFailureSync(b, store, 1)
    for _ in range(2):
        assert a.attempt_failed("6.6.6.6") is None
    assert b.attempt_failed("6.6.6.6") is None
    # Until they meet in the store, each counts alone
    assert a.attempt_failed("6.6.6.6") is None
    sync_a.sync()
    sync_b.sync()
    # Four failures in all: both now refuse that client, and only that one
    assert b.attempt_failed("6.6.6.6") == 60
    assert a.attempt_failed("6.6.6.6") == 60
    assert b.attempt_failed("7.7.7.7") is None
    assert "ip:6.6.6.6" in b.over_limit()
    # A refused attempt is not counted again: the store holds the four failures
    sync_a.sync()
    assert dict(store.at_least(a.current_window(), 1))["ip:6.6.6.6"] == 4
    # The next window, the limit is lifted everywhere and the old counts are dropped
    clock.advance(120)
    sync_b.sync()
    assert b.attempt_failed("6.6.6.6") is None
    assert store.at_least(b.current_window() - 2, 1) == []


# Over HTTP, in process


@pytest.fixture
def client(tmp_path: Any) -> Any:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url=ORIGIN,
        policy_file=str(policy),
        auth_failures_per_ip=5,
        auth_failures_per_prefix=1000,
    )
    with api_client(settings) as test_client:
        from_peer(test_client, "6.6.6.6")
        yield test_client


def exhaust(client: TestClient[Any]) -> None:
    """Five failed attempts from the client, each answered as the failure it is."""
    for _ in range(5):
        assert client.get("/api/v1/account/whoami", headers=bearer("nope")).status_code == 401


def test_after_too_many_failures_a_client_gets_429_on_every_surface(
    client: TestClient[Any],
) -> None:
    key = mint(client, scopes=["books:read"])
    exhaust(client)
    authz = {"X-Original-Method": "GET", "X-Original-URI": "/api/v1/books/1"}
    unknown = token_format.generate()
    for response in (
        client.get("/api/v1/account/whoami", headers=bearer(unknown)),
        client.get("/api/v1/keys", headers=bearer("ant_live_short")),
        client.get("/v1/authz", headers=authz | bearer(unknown)),
        client.post("/v1/verify", json={"token": unknown}),
        # Answers about the past take a session (or the verify secret) before any lookup
        client.post(
            "/v1/verify",
            json={"token": unknown, "as_of": "2026-01-01T00:00:00Z"},
            headers=signed_in_as("alice"),
        ),
    ):
        assert response.status_code == 429, response.request.url
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.json() == {
            "error": "too_many_requests",
            "error_description": "too many failed authentication attempts from this client or "
            "for this token prefix; retry later",
        }
        assert response.headers["cache-control"] == "no-store"
        assert "www-authenticate" not in response.headers
    # A valid token from the same client is never refused, on any surface
    token = key["token"]
    assert client.get("/api/v1/account/whoami", headers=bearer(token)).status_code == 200
    assert client.get("/v1/authz", headers=authz | bearer(token)).status_code == 200
    assert client.post("/v1/verify", json={"token": token}).json()["valid"] is True
    # And a missing scope is still 403, not a failed attempt
    assert client.get("/api/v1/account", headers=bearer(token)).status_code == 403
    # Another client is not limited
    from_peer(client, "7.7.7.7")
    assert client.get("/api/v1/account/whoami", headers=bearer(unknown)).status_code == 401


def test_a_wrong_verify_secret_counts_against_the_client() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url=ORIGIN,
        verify_secret="the-verify-secret",
        auth_failures_per_ip=3,
    )
    with api_client(settings) as client:
        from_peer(client, "6.6.6.6")
        wrong = {"Authorization": "Bearer guess"}
        for _ in range(3):
            assert client.post("/v1/verify", json={"token": "x"}, headers=wrong).status_code == 401
        assert client.post("/v1/verify", json={"token": "x"}, headers=wrong).status_code == 429
        right = {"Authorization": "Bearer the-verify-secret"}
        answer = client.post("/v1/verify", json={"token": mint(client)["token"]}, headers=right)
        assert answer.json()["valid"] is True


def test_a_wrong_operator_secret_counts_against_the_client() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url=ORIGIN,
        operator_secret="o" * 32,
        auth_failures_per_ip=3,
    )
    with api_client(settings) as client:
        from_peer(client, "6.6.6.6")
        wrong = {"Authorization": "Bearer " + "g" * 32}
        for _ in range(3):
            assert client.post("/v1/operator/audit/check", headers=wrong).status_code == 401
        refused = client.post("/v1/operator/audit/check", headers=wrong)
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_requests"
        right = {"Authorization": "Bearer " + "o" * 32}
        assert client.post("/v1/operator/audit/check", headers=right).status_code == 200

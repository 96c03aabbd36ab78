"""The key lifecycle on real server processes sharing PostgreSQL: a rotation's old key refused
everywhere once its grace ends, a self-rotation whose answer was cut retried into one live
successor, a suspension and a policy change heard by every process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.api_support import COOKIE, OPERATOR_SECRET, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.test_retries import send_and_hang_up

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# The propagation budget: a change made on one process holds on every other within this.
BUDGET = 1.0


def until(check: Callable[[], bool], what: str, within: float = BUDGET) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def whoami(url: str, token: str) -> int:
    answer = httpx.get(f"{url}/api/v1/account/whoami", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


@pytest.fixture
def alice(secrets_seen: Secrets) -> dict[str, str]:
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    return {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"}


def mint(url: str, alice: dict[str, str], secrets_seen: Secrets, **body: object) -> dict[str, str]:
    fields = {"name": "ci", "scopes": ["account:read"], "expires_in_days": 30} | body
    answer = httpx.post(f"{url}/api/v1/keys", json=fields, headers=alice)
    assert answer.status_code == 201, answer.text
    key: dict[str, str] = answer.json()
    secrets_seen.tokens.append(key["token"])
    return key


def test_a_rotated_key_is_refused_on_every_process_after_its_grace(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a, b = start_server(postgres_url), start_server(postgres_url)
    old = mint(a.url, alice, secrets_seen)
    until(lambda: whoami(b.url, old["token"]) == 200, "B never learnt of the key")
    grace = 2
    answer = httpx.post(
        f"{a.url}/api/v1/keys/{old['id']}/rotate", json={"grace_seconds": grace}, headers=alice
    )
    assert answer.status_code == 201, answer.text
    new = answer.json()
    secrets_seen.tokens.append(new["token"])
    until(lambda: whoami(b.url, new["token"]) == 200, "B never learnt of the successor")
    assert whoami(b.url, old["token"]) == 200  # still in its grace
    time.sleep(grace)
    for server in (a, b):
        until(lambda s=server: whoami(s.url, old["token"]) == 401, "the old key still works")  # type: ignore[misc]
        assert whoami(server.url, new["token"]) == 200


def test_a_self_rotation_whose_answer_was_cut_leaves_one_live_successor(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a, b = start_server(postgres_url), start_server(postgres_url)
    old = mint(a.url, alice, secrets_seen)
    headers = {
        "Authorization": f"Bearer {old['token']}",
        "Content-Type": "application/json",
        "Idempotency-Key": "ci-rotation-2026-12-02",
    }
    body = json.dumps({"grace_seconds": 3600}).encode()
    # The CI job's first attempt reaches A; its connection drops before the answer
    send_and_hang_up(f"{a.url}/api/v1/keys/{old['id']}/rotate", headers, body)
    until(
        lambda: len(httpx.get(f"{a.url}/api/v1/keys", headers=alice).json()["keys"]) == 2,
        "the first attempt never landed",
        within=10,
    )
    # It retries on B, with the same key (still in its grace) and the same Idempotency-Key
    until(lambda: whoami(b.url, old["token"]) == 200, "B never learnt of the key")
    retried = httpx.post(f"{b.url}/api/v1/keys/{old['id']}/rotate", content=body, headers=headers)
    assert retried.status_code == 201, retried.text
    successor = retried.json()
    secrets_seen.tokens.append(successor["token"])
    keys = httpx.get(f"{b.url}/api/v1/keys", headers=alice).json()["keys"]
    statuses = sorted((k["id"] == successor["id"], k["status"]) for k in keys)
    # The old key (in its grace), the lost successor (superseded), the one the client holds
    assert statuses == [(False, "active"), (False, "revoked"), (True, "active")]
    history = httpx.get(f"{b.url}/api/v1/keys/{old['id']}/history", headers=alice).json()
    assert history["events"][-1]["successor_id"] == successor["id"]
    for server in (a, b):
        until(lambda s=server: whoami(s.url, successor["token"]) == 200, "successor unknown")  # type: ignore[misc]


def test_a_suspension_and_a_tightened_policy_hold_on_every_process(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, alice: dict[str, str]
) -> None:
    a, b = start_server(postgres_url), start_server(postgres_url)
    month = mint(a.url, alice, secrets_seen)
    year = mint(a.url, alice, secrets_seen, expires_in_days=365)
    until(lambda: whoami(b.url, year["token"]) == 200, "B never learnt of the keys")
    suspended = httpx.post(f"{a.url}/api/v1/keys/{month['id']}/suspend", headers=alice)
    assert suspended.json()["status"] == "suspended"
    assert whoami(a.url, month["token"]) == 401  # by the process that suspended it, at once
    until(lambda: whoami(b.url, month["token"]) == 401, "B still accepts a suspended key")
    operator = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
    policy = httpx.put(
        f"{a.url}/v1/operator/lifetime-policy", json={"max_lifetime_days": 90}, headers=operator
    )
    assert policy.status_code == 200, policy.text
    until(lambda: whoami(b.url, year["token"]) == 401, "B still accepts a blocked key")
    refusal = httpx.get(
        f"{b.url}/api/v1/account/whoami", headers={"Authorization": f"Bearer {year['token']}"}
    )
    assert "lifetime policy" in refusal.headers["www-authenticate"]
    httpx.put(f"{a.url}/v1/operator/lifetime-policy", json={}, headers=operator)
    httpx.post(f"{a.url}/api/v1/keys/{month['id']}/resume", headers=alice)
    for server in (a, b):
        until(lambda s=server: whoami(s.url, year["token"]) == 200, "still blocked")  # type: ignore[misc]
        until(lambda s=server: whoami(s.url, month["token"]) == 200, "still suspended")  # type: ignore[misc]

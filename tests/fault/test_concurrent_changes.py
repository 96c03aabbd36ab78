"""Scope changes and revokes racing on one key across two servers: every answer is a 200 or a
409 that says why, never a 500, and the key's history stays whole."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Secrets, StartServer
from tests.fault.conftest import mint, signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

KEYS = 3
CHANGES_PER_CLIENT = 25
CLIENTS_PER_SERVER = 4
SCOPE_SETS = (["books:read"], ["books:read", "books:write"], ["account:read"])


def test_racing_scope_changes_and_revokes_never_answer_500(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    servers = [start_server(postgres_url), start_server(postgres_url)]
    statuses: Counter[int] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()

    for round_ in range(KEYS):
        owner = signed_in(servers[0], "alice", secrets_seen)
        key = mint(owner, secrets_seen, f"raced {round_}")
        owner.close()

        def race(server_index: int, client: int, key: dict[str, Any] = key) -> None:
            browser = signed_in(servers[server_index], "alice", secrets_seen)
            for change in range(CHANGES_PER_CLIENT):
                # One client on each server revokes halfway; everyone else changes scopes
                if client == 0 and change == CHANGES_PER_CLIENT // 2:
                    response = browser.delete(f"/api/v1/keys/{key['id']}")
                else:
                    scopes = SCOPE_SETS[(client + change) % len(SCOPE_SETS)]
                    response = browser.put(
                        f"/api/v1/keys/{key['id']}/scopes", json={"scopes": scopes}
                    )
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code not in {200, 409}:
                        unexpected.append(f"{response.status_code} {response.text[:200]}")
                    elif response.status_code == 409:
                        assert response.json()["error"] == "conflict"
            browser.close()

        threads = [
            threading.Thread(target=race, args=(s, c))
            for s in range(len(servers))
            for c in range(CLIENTS_PER_SERVER)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not unexpected, unexpected[:5]

        # The history is whole: one Revoked, versions without gaps, and both servers agree
        reader = signed_in(servers[1], "alice", secrets_seen)
        events = reader.get(f"/api/v1/keys/{key['id']}/history").json()["events"]
        types = [e["type"] for e in events]
        assert types.count("Revoked") == 1
        assert types[-1] == "Revoked"
        assert [e["version"] for e in events] == list(range(1, len(events) + 1))
        shown = [
            signed_in(server, "alice", secrets_seen).get(f"/api/v1/keys/{key['id']}").json()
            for server in servers
        ]
        assert shown[0]["status"] == shown[1]["status"] == "revoked"
        assert shown[0]["scopes"] == shown[1]["scopes"]
        reader.close()

    assert statuses[200] > 0

"""A signed leak report to one process revokes the token on every process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.unit.test_leak_reports import Partner, report

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_a_signed_leak_report_revokes_the_token_on_every_process(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets, tmp_path: Path
) -> None:
    partner = Partner()
    keys = tmp_path / "secret-scanning-keys.json"
    keys.write_text(json.dumps(partner.document()))
    a = start_server(postgres_url, ANTHRA_LEAK_KEYS_FILE=str(keys))
    b = start_server(postgres_url, ANTHRA_LEAK_KEYS_FILE=str(keys))
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    alice = {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"}
    minted = httpx.post(
        f"{a.url}/api/v1/keys", json={"name": "ci", "scopes": ["account:read"]}, headers=alice
    ).json()
    token = minted["token"]
    secrets_seen.tokens.append(token)
    bearer = {"Authorization": f"Bearer {token}"}
    body = report(token)
    answer = httpx.post(f"{a.url}/v1/leaks", content=body, headers=partner.sign(body))
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["label"] == "true_positive"
    assert httpx.get(f"{a.url}/api/v1/account/whoami", headers=bearer).status_code == 401
    deadline = time.monotonic() + 1
    while httpx.get(f"{b.url}/api/v1/account/whoami", headers=bearer).status_code != 401:
        assert time.monotonic() < deadline, "B still accepts a reported token"
        time.sleep(0.01)
    history = httpx.get(f"{b.url}/api/v1/keys/{minted['id']}/history", headers=alice).json()
    assert history["events"][-1]["reason"] == "leaked"

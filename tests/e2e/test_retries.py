"""A client whose response was lost retries with the same Idempotency-Key: one live key, on
real server processes."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

BODY = {"name": "deploy bot", "scopes": ["books:read"], "expires_in_days": 30}


def send_and_hang_up(url: str, headers: dict[str, str], body: bytes) -> None:
    """Send a request and close the connection without reading a byte of the answer."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        sock.shutdown(socket.SHUT_RDWR)


def test_a_mint_whose_response_was_cut_is_retried_into_one_live_key(
    postgres_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    a = start_server(postgres_url)
    b = start_server(postgres_url)
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    headers = {
        "Cookie": f"{COOKIE}={cookie}",
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": "application/json",
        "Idempotency-Key": "deploy-bot-2026-12-01",
    }
    # The first attempt reaches process A; the client hangs up before the answer
    send_and_hang_up(f"{a.url}/api/v1/keys", headers, json.dumps(BODY).encode())
    deadline = time.monotonic() + 10
    while not httpx.get(f"{a.url}/api/v1/keys", headers=headers).json()["keys"]:
        assert time.monotonic() < deadline, "the first attempt never landed"
        time.sleep(0.05)
    # The client retries on process B, twice at once for good measure
    answers: list[httpx.Response] = []

    def retry() -> None:
        answers.append(httpx.post(f"{b.url}/api/v1/keys", json=BODY, headers=headers, timeout=10))

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [201, 201]
    secrets_seen.tokens.extend(r.json()["token"] for r in answers)
    # Whatever interleaving: exactly one key is live, and the rest were superseded
    keys = httpx.get(f"{b.url}/api/v1/keys", headers=headers).json()["keys"]
    assert len(keys) == 3
    live = [k for k in keys if k["status"] == "active"]
    assert len(live) == 1
    assert live[0]["id"] in {r.json()["id"] for r in answers}
    for key in keys:
        if key["status"] != "active":
            history = httpx.get(f"{b.url}/api/v1/keys/{key['id']}/history", headers=headers)
            assert history.json()["events"][-1]["reason"] == "superseded"
    # The live one works on both processes (A hears of it within the propagation budget)
    token = next(r.json()["token"] for r in answers if r.json()["id"] == live[0]["id"])
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b.url}/api/v1/account/whoami", headers=bearer).status_code == 200
    deadline = time.monotonic() + 1
    while httpx.get(f"{a.url}/api/v1/account/whoami", headers=bearer).status_code != 200:
        assert time.monotonic() < deadline, "A never learnt of the retried key"
        time.sleep(0.01)

"""The edge against real `anthra-keys serve` processes: limits, forwarded headers, failures."""

from __future__ import annotations

import contextlib
import random
import socket
import time

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer

pytestmark = [pytest.mark.e2e]


def signed_in(server_url: str, secrets_seen: Secrets) -> httpx.Client:
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    return httpx.Client(
        base_url=server_url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )


def mint(account: httpx.Client, secrets_seen: Secrets) -> dict[str, str]:
    response = account.post("/api/v1/keys", json={"name": "edge", "scopes": ["account:read"]})
    assert response.status_code == 201, response.text
    key: dict[str, str] = response.json()
    secrets_seen.tokens.append(key["token"])
    return key


def test_oversized_headers_are_431_under_several_workers(
    sqlite_url: str, start_server: StartServer
) -> None:
    server = start_server(sqlite_url, "--workers", "2")
    # New connections spread over both workers
    for _ in range(6):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for headers in (
                {"X-Big": "a" * 1_000_000},
                {f"X-Many-{i}": "x" for i in range(1000)},
                {"X-Big": "a" * 16_400},
                {f"X-Many-{i}": "x" for i in range(101)},
            ):
                response = client.get("/api/v1/account/whoami", headers=headers)
                assert response.status_code == 431
                assert response.json()["error"] == "request_headers_too_large"
            assert client.get("/healthz", headers={"X-Fine": "a" * 8000}).status_code == 200
    # A head that never ends is cut off long before it is all in memory
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        with contextlib.suppress(OSError):  # the server closes the connection as it answers
            for _ in range(200):
                raw.sendall(b"a" * 1_000_000)
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"error":"request_headers_too_large"' in answer
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_forwarded_for_header_is_believed_only_from_a_configured_proxy(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    for trusted, expected in (("", "127.0.0.1"), ("127.0.0.1", "6.6.6.6")):
        server = start_server(sqlite_url, ANTHRA_TRUSTED_PROXIES=trusted)
        with signed_in(server.url, secrets_seen) as account:
            # The key's audit record names the client the server may believe
            response = account.post(
                "/api/v1/keys", json={"name": "audited", "scopes": ["books:read"]}, headers=forged
            )
            assert response.status_code == 201, response.text
            key = response.json()
            secrets_seen.tokens.append(key["token"])
            history = account.get(f"/api/v1/keys/{key['id']}/history").json()
            assert history["events"][0]["context"]["client_ip"] == expected
        server.stop()
        # And so does the access log
        access = [line for line in server.log_lines() if "POST /api/v1/keys" in line]
        assert access, "no access log line for the mint"
        assert all(expected in line for line in access), access
        if expected != "6.6.6.6":
            assert not any("6.6.6.6" in line for line in server.log_lines())


def _store_env(
    kind: str, request: pytest.FixtureRequest, tmp_path_url: str
) -> tuple[str, dict[str, str]]:
    if kind == "postgres":
        return request.getfixturevalue("postgres_url"), {}
    if kind == "redis":
        return tmp_path_url, {"ANTHRA_REDIS_URL": request.getfixturevalue("redis_url")}
    return tmp_path_url, {}


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_failed_attempts_counted_by_one_process_limit_the_other_never_a_valid_token(
    kind: str,
    request: pytest.FixtureRequest,
    sqlite_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
) -> None:
    database_url, env = _store_env(kind, request, sqlite_url)
    limits = {
        "ANTHRA_AUTH_FAILURES_PER_IP": "5",
        "ANTHRA_AUTH_FAILURE_SYNC_INTERVAL": "0.05",
        # A client address of this run's own, named by a proxy the servers trust, so that
        # runs sharing a Redis never count each other's failures.
        "ANTHRA_TRUSTED_PROXIES": "127.0.0.1",
        **env,
    }
    a = start_server(database_url, **limits)
    b = start_server(database_url, **limits)
    client_ip = f"203.0.113.{random.randrange(1, 255)}"
    other_ip = f"198.51.100.{random.randrange(1, 255)}"
    with signed_in(a.url, secrets_seen) as account:
        token = mint(account, secrets_seen)["token"]
    me = {"X-Forwarded-For": client_ip}
    bogus = {"Authorization": "Bearer ant_live_" + "x" * 50} | me
    valid = {"Authorization": f"Bearer {token}"} | me
    with httpx.Client(timeout=10) as http:
        # B knows the key
        deadline = time.monotonic() + 5
        while http.get(f"{b.url}/api/v1/account/whoami", headers=valid).status_code != 200:
            assert time.monotonic() < deadline, "B never learnt of the key"
            time.sleep(0.05)

        # Five failures on A, each answered as what it is
        for _ in range(5):
            assert http.get(f"{a.url}/api/v1/account/whoami", headers=bogus).status_code == 401

        # B, which saw none of them, soon refuses this client's next failure with 429
        deadline = time.monotonic() + 5
        while True:
            answer = http.post(f"{b.url}/v1/verify", json={"token": "ant_live_nope"}, headers=me)
            if answer.status_code == 429:
                break
            # Each of these counts too, so B limits by itself after five at most
            assert answer.status_code == 200 and answer.json()["valid"] is False
            assert time.monotonic() < deadline, "B never learnt of A's failures"
            time.sleep(0.1)
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert answer.json()["error"] == "too_many_requests"
        refused = http.get(f"{b.url}/api/v1/account/whoami", headers=bogus)
        assert refused.status_code == 429

        # The valid token from the limited client still passes, on both
        for server in (a, b):
            assert http.get(f"{server.url}/api/v1/account/whoami", headers=valid).status_code == 200
            verified = http.post(f"{server.url}/v1/verify", json={"token": token}, headers=me)
            assert verified.json()["valid"] is True
        # Another client is not limited
        other = {"Authorization": bogus["Authorization"], "X-Forwarded-For": other_ip}
        assert http.get(f"{b.url}/api/v1/account/whoami", headers=other).status_code == 401


def test_a_verify_body_in_pieces_gets_the_answer_a_whole_one_does(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    # The front door reads /v1/verify's body itself; a body split across packets and chunks,
    # or too large, is read (or refused) as the route would.
    server = start_server(sqlite_url)
    with signed_in(server.url, secrets_seen) as account:
        key = mint(account, secrets_seen)
    body = b'{"token": "%s", "scopes": ["account:read"]}' % key["token"].encode()
    whole = httpx.post(f"{server.url}/v1/verify", content=body, headers=JSON).json()
    assert whole == {"valid": True, "code": "valid"}

    def ask(head: bytes, pieces: list[bytes]) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(head)
            for piece in pieces:
                raw.sendall(piece)
                time.sleep(0.02)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                more = raw.recv(65536)
                if not more:
                    break
                answer += more
        return answer

    start = b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    sized = ask(
        start + b"Content-Length: %d\r\n\r\n" % len(body), [body[:7], body[7:30], body[30:]]
    )
    chunked = ask(
        start + b"Transfer-Encoding: chunked\r\n\r\n",
        [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])] + [b"0\r\n\r\n"],
    )
    for answer in (sized, chunked):
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert answer.endswith(b'{"valid":true,"code":"valid"}'), answer[-200:]
    too_large = httpx.post(
        f"{server.url}/v1/verify", content=b'{"token": "' + b"a" * 70_000 + b'"}', headers=JSON
    )
    assert too_large.status_code == 413


JSON = {"Content-Type": "application/json"}

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


READ_TIMEOUT = 1.0
_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
_BODY_HEAD = (
    b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 400\r\n\r\n"
)
# What a slow client (slowloris) sends, piece by piece, 50 ms apart: never a whole request.
SLOW_CLIENTS = {
    "connects and sends nothing": [],
    "stops half way through the head": [_HEAD],
    "sends the head a byte at a time": [bytes([b]) for b in _HEAD + b"X-Slow: " + b"a" * 200],
    "stops half way through the body": [_BODY_HEAD + b'{"token": "'],
    "sends the body a byte at a time": [_BODY_HEAD, *([b" "] * 300)],
    "answered once, then starts another request and stops": [
        _HEAD + b"\r\n" + b"GET /hea",
    ],
}


@pytest.mark.parametrize("pieces", SLOW_CLIENTS.values(), ids=SLOW_CLIENTS.keys())
def test_a_request_that_does_not_arrive_in_time_is_408_and_its_connection_closed(
    pieces: list[bytes], sqlite_url: str, start_server: StartServer
) -> None:
    server = start_server(sqlite_url, ANTHRA_REQUEST_READ_TIMEOUT=str(READ_TIMEOUT))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server closes the connection as it answers
            for piece in pieces:
                raw.sendall(piece)
                time.sleep(0.05)
        received = b""
        while chunk := raw.recv(65536):  # until the server closes the connection
            received += chunk
        took = time.monotonic() - started
    assert took < READ_TIMEOUT + 2, f"the connection was held {took:.1f} s"
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert answers, "the server closed the connection without an answer"
    assert answers[-1].startswith(b"408 "), received[-300:]
    assert b'"error":"request_timeout"' in answers[-1]
    assert all(a.startswith(b"200 ") for a in answers[:-1])
    # The server serves on, and the access log never counts a lost client as its own failure
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    server.stop()
    assert not [line for line in server.log_lines() if '" 500 ' in line]


def test_an_answer_being_streamed_is_never_cut_by_the_read_deadline(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(sqlite_url, ANTHRA_REQUEST_READ_TIMEOUT=str(READ_TIMEOUT))
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(
            b"GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Cookie: {COOKIE}={cookie}\r\n\r\n".encode()
        )
        assert raw.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(READ_TIMEOUT * 3)
        raw.settimeout(0.2)
        with contextlib.suppress(TimeoutError):  # nothing more to read: still open
            assert raw.recv(65536), "the stream was closed"


# Requests that are not HTTP/1.1 as RFC 9112 has it, each sent on a connection of its own. The
# revoke would be carried out if any of them were served.
NOT_HTTP = {
    "a token in a fragment": "DELETE /api/v1/keys/{key_id}#{token} HTTP/1.1\r\n{head}\r\n",
    "a fragment": "DELETE /api/v1/keys/{key_id}#now HTTP/1.1\r\n{head}\r\n",
    "two lengths": (
        "DELETE /api/v1/keys/{key_id} HTTP/1.1\r\n{head}Content-Length: 0\r\n"
        "Content-Length: 5\r\n\r\n"
    ),
    "a length and a chunked body": (
        "DELETE /api/v1/keys/{key_id} HTTP/1.1\r\n{head}Content-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two Host lines": "DELETE /api/v1/keys/{key_id} HTTP/1.1\r\n{head}Host: other.example\r\n\r\n",
    "a lower-case method": "delete /api/v1/keys/{key_id} HTTP/1.1\r\n{head}\r\n",
    "a TLS handshake": "\x16\x03\x01\x00\xa5\x01\x00\x00\r\n\r\n",
}


@pytest.mark.parametrize("request_text", NOT_HTTP.values(), ids=NOT_HTTP.keys())
def test_what_is_not_http_is_a_400_with_the_json_error_body_and_never_served(
    request_text: str, sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(sqlite_url)
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    with signed_in(server.url, secrets_seen) as account:
        key = mint(account, secrets_seen)
        head = (
            f"Host: 127.0.0.1:{server.port}\r\nCookie: {COOKIE}={cookie}\r\n"
            "Sec-Fetch-Site: same-origin\r\nConnection: close\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(
                request_text.format(key_id=key["id"], token=key["token"], head=head).encode()
            )
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"application/json" in answer.split(b"\r\n\r\n")[0]
        assert b'"error":"invalid_request"' in answer
        assert account.get(f"/api/v1/keys/{key['id']}").json()["status"] == "active"

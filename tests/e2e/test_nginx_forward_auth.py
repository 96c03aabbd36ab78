"""deploy/nginx.conf on a real nginx: two ledgers answer its auth_request, an echo is the API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import COOKIE, SECRET, session_cookie
from tests.conftest import IN_CI
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import ServerProcess, free_port, windows

pytestmark = [pytest.mark.e2e]

NGINX = "/usr/sbin/nginx"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REALM = 'Bearer realm="anthra"'
DEMO_USER = "demo-user"
DEMO_PASSWORD = "correct-horse-battery-staple"  # the demo account of the shipped Auth.js app


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Debian's nginx; in CI a missing one fails the test instead of skipping it."""
    if not os.access(NGINX, os.X_OK):
        message = (
            f"nginx is not installed at {NGINX}. Install Debian's package (apt-get install nginx) "
            "to run the forward-auth tests through a real nginx."
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return NGINX


class Upstream:
    """The stand-in for the books service: answers every request with what reached it, as JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Echo(BaseHTTPRequestHandler):
            def echo(self) -> None:
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "anthra": {
                        k: v for k, v in self.headers.items() if k.lower().startswith("x-anthra-")
                    },
                    "authorization": self.headers.get("Authorization"),
                }
                upstream.requests.append(seen)
                body = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = echo  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass  # the gateway's and the ledgers' logs are the ones checked

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AuthjsApp:
    """deploy/authjs/server.mjs, the real @auth/core, on this machine's Node.js."""

    def __init__(self, tmp: Path) -> None:
        folder = DEPLOY / "authjs"
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            message = (
                "Node.js and npm are not installed: the gateway's Auth.js app needs them "
                "(Debian's nodejs and npm, or nodejs.org)."
            )
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        if not (folder / "node_modules" / "@auth" / "core").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=folder,
                check=True,
                timeout=300,
            )
        self.port = free_port()
        self.log_path = tmp / "authjs.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [node, "server.mjs"],
            cwd=folder,
            env=os.environ
            | {
                "AUTH_SECRET": SECRET,
                "AUTHJS_DEMO_USER": DEMO_USER,
                "AUTHJS_DEMO_PASSWORD": DEMO_PASSWORD,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log_path.read_text()
                    raise RuntimeError(f"Auth.js app did not start:\n{log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


class Nginx:
    """nginx in the foreground on deploy/nginx.conf, with this machine's addresses and paths."""

    def __init__(
        self, binary: str, tmp: Path, ledgers: list[int], upstream: int, port: int, authjs: int
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = tmp / "access.log"
        self.error_log = tmp / "error.log"
        conf = tmp / "nginx.conf"
        conf.write_text(self._local_conf(tmp, ledgers, upstream, authjs))
        self.output = tmp / "nginx.out"
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    binary,
                    "-p",
                    f"{tmp}/",
                    "-c",
                    str(conf),
                    "-e",
                    str(self.error_log),
                    "-g",
                    f"pid {tmp}/nginx.pid; daemon off;",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait_listening()

    def _local_conf(self, tmp: Path, ledgers: list[int], upstream: int, authjs: int) -> str:
        # Only addresses, log destinations and scratch paths change: the rest is what deploys.
        temp_paths = "".join(
            f"\n    {name}_temp_path {tmp}/{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        replacements = [
            ("error_log /dev/stderr crit;", f"error_log {self.error_log} crit;"),
            ("access_log /dev/stdout anthra;", f"access_log {self.access_log} anthra;"),
            ("server ledger-a:8000 ", f"server 127.0.0.1:{ledgers[0]} "),
            ("server ledger-b:8000 ", f"server 127.0.0.1:{ledgers[1]} "),
            ("server books:8080;", f"server 127.0.0.1:{upstream};"),
            ("server authjs:3000;", f"server 127.0.0.1:{authjs};"),
            ("listen 80;", f"listen 127.0.0.1:{self.port};"),
            ("http {", "http {" + temp_paths),
        ]
        conf = (DEPLOY / "nginx.conf").read_text()
        for old, new in replacements:
            assert conf.count(old) == 1, f"deploy/nginx.conf no longer has {old!r} once"
            conf = conf.replace(old, new)
        # Workers as root can use the root-only scratch directory; nginx ignores it otherwise.
        return ("user root;\n" if os.geteuid() == 0 else "") + conf

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.output.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx not listening in {timeout} s:\n{self.output.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the logs are flushed
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_lines(self) -> list[str]:
        paths = [self.access_log, self.error_log, self.output]
        return [
            line
            for path in paths
            if path.exists()
            for line in path.read_text(errors="replace").splitlines()
        ]


Gateway = tuple[Nginx, list[ServerProcess], Upstream]


@pytest.fixture
def authjs_app(tmp_path: Path) -> Iterator[AuthjsApp]:
    app = AuthjsApp(tmp_path)
    yield app
    app.stop()


@pytest.fixture
def gateway_env() -> dict[str, str]:
    """More settings for the gateway's ledgers; a test overrides it with parametrize."""
    return {}


@pytest.fixture
def gateway(
    nginx_binary: str,
    sqlite_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    tmp_path: Path,
    gateway_env: dict[str, str],
    authjs_app: AuthjsApp,
) -> Iterator[Gateway]:
    """nginx on deploy/nginx.conf, two ledgers on one store with deploy/policy.toml, an echo.

    The ledgers know the gateway's URL as their public URL and trust its address (127.0.0.1)
    as a proxy, as docker-compose.yml sets them up.
    """
    policy = str(DEPLOY / "policy.toml")
    port = free_port()
    env = {
        "ANTHRA_POLICY_FILE": policy,
        "ANTHRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ANTHRA_TRUSTED_PROXIES": "127.0.0.1",
    }
    ledgers = [start_server(sqlite_url, **env, **gateway_env) for _ in range(2)]
    upstream = Upstream()
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    try:
        nginx = Nginx(
            nginx_binary, nginx_dir, [s.port for s in ledgers], upstream.port, port, authjs_app.port
        )
    except Exception:
        upstream.stop()
        raise
    yield nginx, ledgers, upstream
    nginx.stop()
    upstream.stop()
    # No run of 13 characters of a token in anything nginx wrote (start_server checks the
    # ledgers' logs), nor any part of a session cookie.
    lines = nginx.log_lines() + authjs_app.log_lines()
    assert any("/api/v1/" in line for line in lines), "nginx logged nothing to check"
    for line in lines:
        for token in secrets_seen.tokens:
            leaked = [run for run in windows(token, 13) if run in line]
            assert not leaked, f"an nginx log line holds 13+ characters of a token: {line[:200]!r}"
        for cookie in secrets_seen.cookies:
            leaked = [run for run in windows(cookie, 16) if run in line]
            assert not leaked, f"an nginx log line holds part of a session cookie: {line[:200]!r}"


def signed_in(base_url: str, secrets_seen: Secrets, local_address: str = "") -> httpx.Client:
    cookie = session_cookie("alice")
    secrets_seen.cookies.append(cookie)
    return httpx.Client(
        base_url=base_url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
        transport=httpx.HTTPTransport(local_address=local_address or None),
    )


def mint(
    account: httpx.Client, ledgers: list[ServerProcess], secrets_seen: Secrets, *scopes: str
) -> dict[str, Any]:
    """A key minted through the gateway, once every replica knows it."""
    response = account.post(
        "/api/v1/keys", json={"name": "gateway", "scopes": list(scopes), "expires_in_days": 7}
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    secrets_seen.tokens.append(key["token"])
    # A new key may take a moment to reach the other replica; no contract bounds it.
    every_ledger_answers(ledgers, key["token"], "valid", within=5.0)
    return key


def every_ledger_answers(
    ledgers: list[ServerProcess], token: str, code: str, within: float = 1.0
) -> None:
    """Wait until each replica verifies the token so; by default at most the second it may lag."""
    for ledger in ledgers:

        def answers(url: str = f"{ledger.url}/v1/verify") -> bool:
            return bool(httpx.post(url, json={"token": token}).json()["code"] == code)

        eventually(answers, within)


def eventually(condition: Callable[[], bool], within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not so within {within} s"
        time.sleep(0.01)


def test_nginx_passes_on_only_what_the_policy_and_the_ledger_allow(
    gateway: Gateway, secrets_seen: Secrets
) -> None:
    nginx, ledgers, upstream = gateway
    metadata = f'resource_metadata="{nginx.url}/.well-known/oauth-protected-resource"'
    with (
        signed_in(nginx.url, secrets_seen) as account,
        httpx.Client(base_url=nginx.url, timeout=10) as client,
    ):
        # Mint a books:read key through the gateway, with the page's session
        key = mint(account, ledgers, secrets_seen, "books:read")
        bearer = {"Authorization": f"Bearer {key['token']}"}

        # Granted, on either replica: the upstream sees who calls, never the token nor a forgery
        for _ in range(2):
            granted = client.get(
                "/api/v1/books/42", headers=bearer | {"X-Anthra-Owner-Id": "mallory"}
            )
            assert granted.status_code == 200, granted.text
            seen = granted.json()
            assert seen["path"] == "/api/v1/books/42"
            assert seen["anthra"] == {
                "X-Anthra-Key-Id": key["id"],
                "X-Anthra-Owner-Id": "alice",
                "X-Anthra-Scopes": "books:read",
            }
            assert seen["authorization"] is None

        # A public route needs no token, and carries no identity, forged or not
        public = client.get("/api/v1/published/books/42", headers={"X-Anthra-Key-Id": "forged"})
        assert public.status_code == 200
        assert public.json()["anthra"] == {}
        served = len(upstream.requests)

        # A scope the key lacks: 403 insufficient_scope naming the scope the route needs
        publish = client.post("/api/v1/books/42/publish", headers=bearer)
        assert publish.status_code == 403
        assert publish.headers["www-authenticate"] == (
            f'{REALM}, error="insufficient_scope", error_description="the token lacks the scope '
            f'this request needs: publish:write", scope="publish:write", {metadata}'
        )
        assert publish.json() == {
            "error": "insufficient_scope",
            "error_description": "the token lacks the scope this request needs: publish:write",
        }

        # No token: 401 with the bare challenge
        anonymous = client.get("/api/v1/books/42")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == f"{REALM}, {metadata}"
        assert anonymous.json()["error"] == "unauthorized"
        # Naming a public route in another proxy's headers changes nothing
        smuggled = client.get(
            "/api/v1/books/42",
            headers={
                "X-Original-URI": "/api/v1/published/1",
                "X-Forwarded-Uri": "/api/v1/published/1",
                "X-Forwarded-Method": "GET",
                "X-Envoy-Original-Path": "/api/v1/published/1",
            },
        )
        assert smuggled.status_code == 401
        assert (
            client.get(f"{nginx.url}/.well-known/oauth-protected-resource").json()["resource"]
            == nginx.url
        )

        # A malformed Authorization header: 400 invalid_request
        malformed = client.get("/api/v1/books/42", headers={"Authorization": "Basic YTpi"})
        assert malformed.status_code == 400
        assert malformed.headers["www-authenticate"] == (
            f'{REALM}, error="invalid_request", error_description="use Authorization: Bearer '
            '<token>"'
        )
        assert "retry-after" not in malformed.headers

        # A route the policy does not name: denied (the gateway keeps /v1/authz to itself: 404)
        for path in ("/api/v1/secrets",):
            denied = client.get(path, headers=bearer)
            assert denied.status_code == 403, path
            assert "www-authenticate" not in denied.headers
            assert denied.json()["error"] == "access_denied"

        # A path the upstream could read as another one: 400, never judged nor served
        for path in (
            "/api/v1/published/%2e%2e/books/42",
            "/api/v1/published/..%2Fbooks%2F42",
            "/api/v1/published//books/42",
            "/api/v1/books/42%2Fpublish",
        ):
            ambiguous = client.get(path, headers=bearer)
            assert ambiguous.status_code == 400, path
            assert ambiguous.json()["error"] == "invalid_request"
            assert ambiguous.json()["error_description"].startswith("the original path is refused")

        # The token in the query string, plain or percent-encoded, or in the path: 400, not served
        encoded = "".join(f"%{ord(c):02x}" for c in key["token"])
        for target in (
            f"/api/v1/books/42?access_token={key['token']}",
            f"/api/v1/books/42?q={encoded}",
            f"/api/v1/published/{key['token']}",
        ):
            refused = client.get(target, headers=bearer)
            assert refused.status_code == 400, target[:24]
            assert refused.headers["www-authenticate"] == (
                f'{REALM}, error="invalid_request", error_description="tokens are accepted only '
                'in the Authorization header, never in the URL"'
            )
            assert refused.json()["error"] == "invalid_request"
        assert len(upstream.requests) == served, "a refused request reached the upstream"

        # Revoke it through the gateway: within a second neither replica accepts it
        assert account.delete(f"/api/v1/keys/{key['id']}").status_code == 200
        every_ledger_answers(ledgers, key["token"], "invalid_token")
        for _ in range(4):
            revoked = client.get("/api/v1/books/42", headers=bearer)
            assert revoked.status_code == 401
            assert revoked.headers["www-authenticate"] == (
                f'{REALM}, error="invalid_token", error_description="the access token is '
                f'invalid, revoked or expired", {metadata}'
            )
            assert revoked.json() == {
                "error": "invalid_token",
                "error_description": "the access token is invalid, revoked or expired",
            }
        assert len(upstream.requests) == served


def test_nginx_fails_over_to_the_other_ledger_and_fails_closed_without_one(
    gateway: Gateway, secrets_seen: Secrets
) -> None:
    nginx, ledgers, upstream = gateway
    with (
        signed_in(nginx.url, secrets_seen) as account,
        httpx.Client(base_url=nginx.url, timeout=10) as client,
    ):
        key = mint(account, ledgers, secrets_seen, "books:read")
        bearer = {"Authorization": f"Bearer {key['token']}"}

        # One replica down: every request is still decided, by the other
        ledgers[0].stop()
        for _ in range(4):
            assert client.get("/api/v1/books/7", headers=bearer).status_code == 200

        # Both down: 503, never a request passed on unchecked
        ledgers[1].stop()
        served = len(upstream.requests)
        for headers in (bearer, {}):
            unavailable = client.get("/api/v1/books/7", headers=headers)
            assert unavailable.status_code == 503
            assert unavailable.headers["retry-after"] == "1"
            assert unavailable.json()["error"] == "temporarily_unavailable"
        public = client.get("/api/v1/published/books/7")
        assert public.status_code == 503
        assert len(upstream.requests) == served


def test_the_gateway_refuses_oversized_headers_with_the_ledgers_431(
    gateway: Gateway, secrets_seen: Secrets
) -> None:
    nginx, ledgers, upstream = gateway
    with (
        signed_in(nginx.url, secrets_seen) as account,
        httpx.Client(base_url=nginx.url, timeout=10) as client,
    ):
        key = mint(account, ledgers, secrets_seen, "books:read")
        bearer = {"Authorization": f"Bearer {key['token']}"}
        served = len(upstream.requests)
        for headers in (
            {"X-Big": "a" * 1_000_000},  # over one line's buffer: nginx itself
            {f"X-Big-{i}": "a" * 8000 for i in range(4)},  # over the total: the ledger
            {f"X-Many-{i}": "x" for i in range(1000)},
        ):
            for path in (
                "/api/v1/books/42",
                "/api/v1/keys",
                "/.well-known/oauth-protected-resource",
            ):
                refused = client.get(path, headers=bearer | headers)
                assert refused.status_code == 431, path
                assert refused.json()["error"] == "request_headers_too_large"
                assert refused.headers["content-type"] == "application/json"
        assert len(upstream.requests) == served
        long_uri = client.get("/api/v1/books/" + "9" * 20_000, headers=bearer)
        assert long_uri.status_code == 414
        assert long_uri.json()["error"] == "uri_too_long"
        assert client.get("/api/v1/books/42", headers=bearer).status_code == 200


@pytest.mark.parametrize(
    "gateway_env",
    [{"ANTHRA_AUTH_FAILURES_PER_IP": "5", "ANTHRA_AUTH_FAILURE_SYNC_INTERVAL": "0.05"}],
)
def test_behind_the_gateway_a_client_is_known_by_its_address_and_limited_by_it(
    gateway: Gateway, secrets_seen: Secrets
) -> None:
    nginx, ledgers, _ = gateway
    # Clients on addresses of their own: the gateway's, 127.0.0.1, is the trusted proxy
    attacker = httpx.Client(
        base_url=nginx.url, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    neighbour = httpx.Client(
        base_url=nginx.url, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.3")
    )
    account = signed_in(nginx.url, secrets_seen, local_address="127.0.0.4")
    with account, attacker, neighbour:
        key = mint(account, ledgers, secrets_seen, "books:read")
        # The audit trail names the client, not what it claims in X-Forwarded-For
        forged = account.delete(
            f"/api/v1/keys/{mint(account, ledgers, secrets_seen, 'books:read')['id']}",
            headers={"X-Forwarded-For": "6.6.6.6"},
        )
        assert forged.status_code == 200
        assert account.get("/api/v1/books/1").status_code == 401  # for the log check
        events = account.get("/api/v1/audit", params={"type": "Revoked"}).json()["events"]
        assert events[0]["context"]["client_ip"] == "127.0.0.4"

        # Failed attempts, whatever X-Forwarded-For says, count against the attacker's address
        bogus = {"Authorization": "Bearer ant_live_" + "x" * 50}
        for i in range(5):
            spoof = {"X-Forwarded-For": f"10.9.9.{i}"}
            assert attacker.get("/api/v1/books/1", headers=bogus | spoof).status_code == 401
        # Both replicas counted some; within a sync interval each knows the sum
        deadline = time.monotonic() + 2
        while (limited := attacker.get("/api/v1/books/1", headers=bogus)).status_code != 429:
            assert limited.status_code == 401
            assert time.monotonic() < deadline, "the replicas never shared their counts"
            time.sleep(0.05)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"] == "too_many_requests"
        # On the ledger's own routes too, from either replica
        eventually(lambda: attacker.get("/api/v1/keys", headers=bogus).status_code == 429)
        # Its valid token is still let through, and its neighbour is not limited
        valid = {"Authorization": f"Bearer {key['token']}"}
        assert attacker.get("/api/v1/books/1", headers=valid).status_code == 200
        assert neighbour.get("/api/v1/books/1", headers=bogus).status_code == 401


def test_a_person_signs_in_through_the_gateway_and_mints_a_key_the_api_accepts(
    gateway: Gateway, secrets_seen: Secrets
) -> None:
    nginx, ledgers, upstream = gateway
    browser = httpx.Client(base_url=nginx.url, timeout=10, follow_redirects=False)
    # Signed out, the keys page offers the sign-in link, on this origin
    page = browser.get("/account/api-keys")
    assert page.status_code == 401
    link = re.search(r'href="(/api/auth/signin[^"]*)"', page.text)
    assert link, page.text[:500]
    # The link reaches the Auth.js app through the gateway: its sign-in form
    signin = browser.get(link[1].replace("&amp;", "&"))
    assert signin.status_code == 200 and "csrfToken" in signin.text
    csrf = browser.get("/api/auth/csrf").json()["csrfToken"]
    wrong = browser.post(
        "/api/auth/callback/credentials",
        data={"csrfToken": csrf, "username": DEMO_USER, "password": "not the password"},
    )
    assert "error" in wrong.headers["location"] and "authjs.session-token" not in browser.cookies
    signed = browser.post(
        "/api/auth/callback/credentials",
        data={
            "csrfToken": csrf,
            "username": DEMO_USER,
            "password": DEMO_PASSWORD,
            "callbackUrl": "/account/api-keys",
        },
    )
    assert signed.status_code == 302 and signed.headers["location"].endswith("/account/api-keys")
    cookie = browser.cookies["authjs.session-token"]
    secrets_seen.cookies.append(cookie)
    # The ledger behind the same gateway accepts the Auth.js session: the page, whoami, a mint
    assert browser.get("/account/api-keys").status_code == 200
    me = browser.get("/api/v1/account/whoami").json()
    assert me == me | {"user_id": DEMO_USER, "via": "session"}
    minted = browser.post(
        "/api/v1/keys",
        json={"name": "from the gateway", "scopes": ["books:read"], "expires_in_days": 7},
        headers={"Origin": nginx.url},
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    secrets_seen.tokens.append(token)
    every_ledger_answers(ledgers, token, "valid", within=5.0)
    # The API behind forward-auth takes the token; services may ask /v1/verify; operators' and
    # forward-auth's own routes are not reachable from outside
    bearer = {"Authorization": f"Bearer {token}"}
    assert browser.get("/api/v1/books/1", headers=bearer).status_code == 200
    assert upstream.requests[-1]["anthra"]["X-Anthra-Owner-Id"] == DEMO_USER
    assert browser.post("/v1/verify", json={"token": token}).json()["valid"] is True
    assert browser.get("/api/v1/account/whoami", headers=bearer).json()["via"] == "token"
    assert browser.post("/v1/operator/audit/check").status_code == 404
    assert browser.get("/v1/authz", headers=bearer).status_code == 404
    # Signing out ends the session for the ledger too
    csrf = browser.get("/api/auth/csrf").json()["csrfToken"]
    browser.post("/api/auth/signout", data={"csrfToken": csrf})
    assert browser.get("/api/v1/account/whoami").status_code == 401

"""The README's embedding example, run as written: a Litestar service verifying the ledger's
tokens with `anthra_keys_client.asgi.TokenVerifier`, against two real ledger processes on
PostgreSQL. A revocation made on the other process reaches the service within the propagation
budget; when the ledger it follows stops, the service refuses (503), it never lets through."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import ServerProcess, free_port, windows

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SOURCE = ROOT / "client"
VERIFY_SECRET = "embedded-verify-secret-0123456789abcdef0123456789"
SECTION = "### Embedding verification in another Python service"
# The propagation budget: a change made on one ledger process holds everywhere within this.
BUDGET = 1.0


def readme_example() -> str:
    """The first fenced Python block of the README's embedding section, as written there."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    found = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, "the embedding section has no Python example"
    return found.group(1)


def until(check: Callable[[], bool], what: str, within: float = BUDGET) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


class Service:
    """The README's example in a process of its own, as its readers run it."""

    def __init__(self, source: str, ledger_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = workdir / "books.py"
        script.write_text(source)
        self.log_path = workdir / "books.log"
        self._log = self.log_path.open("wb")
        environment = {
            "PATH": os.environ["PATH"],
            # The client from its source; Litestar and uvicorn from the test's environment.
            "PYTHONPATH": str(CLIENT_SOURCE),
            "ANTHRA_URL": ledger_url,
            "ANTHRA_VERIFY_SECRET": VERIFY_SECRET,
            "BOOKS_URL": self.url,
            "BOOKS_PORT": str(self.port),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            env=environment,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.05)

    def books(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}/books", headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    services: list[Service] = []

    def run(ledger_url: str) -> Service:
        workdir = tmp_path / f"books-{len(services)}"
        workdir.mkdir()
        services.append(Service(readme_example(), ledger_url, workdir))
        return services[-1]

    yield run
    for service in services:
        service.stop()


def verifications(ledger: ServerProcess) -> int:
    """How many verify requests the ledger has answered (its access log)."""
    return sum('"POST /v1/verify' in line for line in ledger.log_lines())


def signed_in(url: str, user_id: str, secrets_seen: Secrets) -> httpx.Client:
    cookie = session_cookie(user_id)
    secrets_seen.cookies.append(cookie)
    return httpx.Client(
        base_url=url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )


def mint(browser: httpx.Client, secrets_seen: Secrets, *scopes: str) -> dict[str, Any]:
    response = browser.post("/api/v1/keys", json={"name": "books", "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    secrets_seen.tokens.append(key["token"])
    return key


def test_the_readme_example_verifies_follows_revocations_and_fails_closed(
    postgres_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    run_example: Callable[[str], Service],
) -> None:
    followed = start_server(postgres_url, ANTHRA_VERIFY_SECRET=VERIFY_SECRET)
    other = start_server(postgres_url, ANTHRA_VERIFY_SECRET=VERIFY_SECRET)
    service = run_example(followed.url)
    alice = signed_in(other.url, "alice", secrets_seen)
    reader = mint(alice, secrets_seen, "books:read")
    kept = mint(alice, secrets_seen, "books:read")
    writer = mint(alice, secrets_seen, "books:write")

    # A token with books:read reads the books: the caller is the verified key
    until(lambda: service.books(reader["token"]).status_code == 200, "the key never verified")
    answer = service.books(reader["token"])
    assert answer.json() == {"owner": "alice", "key": reader["id"], "books": ["Dune", "Solaris"]}
    # … again and again, from the service's cache while the ledger's feed is live
    asked = verifications(followed)
    for _ in range(5):
        assert service.books(reader["token"]).status_code == 200
    assert verifications(followed) - asked < 5
    assert service.books(kept["token"]).status_code == 200

    # No token, an unknown one, a missing scope: RFC 6750 challenges naming the service's own
    # RFC 9728 metadata, which it serves
    metadata_url = f"{service.url}/.well-known/oauth-protected-resource"
    bare = httpx.get(f"{service.url}/books")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == (
        f'Bearer realm="anthra", resource_metadata="{metadata_url}"'
    )
    assert bare.json()["error"] == "unauthorized"
    unknown = service.books("ant_live_" + "x" * 43)
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    lacking = service.books(writer["token"])
    assert lacking.status_code == 403
    assert 'error="insufficient_scope", error_description=' in lacking.headers["www-authenticate"]
    assert 'scope="books:read"' in lacking.headers["www-authenticate"]
    assert f'resource_metadata="{metadata_url}"' in lacking.headers["www-authenticate"]
    metadata = httpx.get(metadata_url).json()
    assert metadata == {
        "resource": service.url,
        "authorization_servers": [followed.url],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["books:read"],
    }
    assert httpx.get(f"{service.url}/healthz").status_code == 200  # not protected

    # Revoked on the other ledger process: the embedded service refuses it within the budget
    assert alice.delete(f"/api/v1/keys/{reader['id']}").status_code == 200
    until(
        lambda: service.books(reader["token"]).status_code == 401,
        "the embedded service still accepts a token revoked on another ledger process",
    )
    for _ in range(5):
        assert service.books(reader["token"]).status_code == 401
    # A scope taken away on the other process: 403 within the budget
    rescoped = alice.put(f"/api/v1/keys/{kept['id']}/scopes", json={"scopes": ["books:write"]})
    assert rescoped.status_code == 200
    until(lambda: service.books(kept["token"]).status_code == 403, "the scope change was missed")
    restored = alice.put(f"/api/v1/keys/{kept['id']}/scopes", json={"scopes": ["books:read"]})
    assert restored.status_code == 200
    until(lambda: service.books(kept["token"]).status_code == 200, "the scope was never back")

    # The ledger it follows stops: the feed is cut and the ledger unreachable. Within the
    # budget every request is refused with 503 and Retry-After; none is let through.
    followed.stop()
    until(
        lambda: service.books(kept["token"]).status_code == 503, "the service never failed closed"
    )
    for _ in range(5):
        refused = service.books(kept["token"])
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "temporarily_unavailable"

    # Nothing the service logged holds a token or the verify secret
    service.stop()
    logged = service.log_path.read_text()
    assert "Uvicorn running" in logged or "Application startup complete" in logged
    for token in [reader["token"], kept["token"], writer["token"]]:
        assert not any(run in logged for run in windows(token, 13))
    assert not any(run in logged for run in windows(VERIFY_SECRET, 13))
    alice.close()

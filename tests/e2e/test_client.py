"""The token holders' client and its CLI against real `anthra-keys serve` processes; and the
client installed on its own, as its users install it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthra_keys_client import (
    Client,
    Forbidden,
    Unauthorized,
    Unavailable,
    Verification,
    WhoAmI,
)

from domain import token as token_format
from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import windows
from tests.fault.proxy import TcpProxy

pytestmark = [pytest.mark.e2e]

CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "client"
VERIFY_SECRET = "test-verify-secret-0123456789abcdef0123456789"
SERVER_PACKAGES = {"anthra-keys", "litestar", "eventsourcing", "psycopg", "cryptography", "redis"}


def signed_in(server_url: str, user_id: str, secrets_seen: Secrets) -> httpx.Client:
    cookie = session_cookie(user_id)
    secrets_seen.cookies.append(cookie)
    return httpx.Client(
        base_url=server_url,
        headers={"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )


def mint(browser: httpx.Client, secrets_seen: Secrets, name: str, *scopes: str) -> dict[str, Any]:
    response = browser.post("/api/v1/keys", json={"name": name, "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    secrets_seen.tokens.append(key["token"])
    return key


def holds(text: str, token: str) -> bool:
    """Whether the text holds more than the token's display prefix."""
    return any(run in text for run in windows(token, 13))


def anthra_token(
    url: str, *args: str, token: str | None = None, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, as a holder runs it: the token in its environment."""
    command = [sys.executable, "-m", "anthra_keys_client", *args]
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(CLIENT_SOURCE), "ANTHRA_URL": url}
    if token is not None:
        environment["ANTHRA_TOKEN"] = token
        assert not holds(" ".join(command), token)
    return subprocess.run(
        command, env=environment | env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_a_holder_and_a_service_use_the_library(
    sqlite_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(sqlite_url, ANTHRA_VERIFY_SECRET=VERIFY_SECRET)
    browser = signed_in(server.url, "alice", secrets_seen)
    reader = mint(browser, secrets_seen, "reader", "account:read", "books:read")
    narrow = mint(browser, secrets_seen, "narrow", "books:read")
    caplog.set_level(logging.DEBUG)

    with Client(server.url, reader["token"]) as holder:
        # Who the token is: its user, its key, its scopes
        me = holder.whoami()
        assert isinstance(me, WhoAmI)
        assert (me.user_id, me.via, me.key_id) == ("alice", "token", reader["id"])
        assert set(me.scopes) == {"account:read", "books:read"}

        # Its owner's keys, typed
        keys = holder.keys()
        assert [(k.id, k.name, k.status) for k in keys] == [
            (reader["id"], "reader", "active"),
            (narrow["id"], "narrow", "active"),
        ]
        assert keys[0].created_at.tzinfo is not None
        assert keys[0].prefix == reader["token"][:12]
        one = holder.key(narrow["id"])
        assert (one.id, one.scopes, one.expires_at) == (narrow["id"], ("books:read",), None)

    # A scope the token lacks: 403, naming the scope
    with Client(server.url, narrow["token"]) as limited, pytest.raises(Forbidden) as refused:
        limited.keys()
    assert (refused.value.status, refused.value.error) == (403, "insufficient_scope")
    assert refused.value.scope == ("account:read",)

    # A token the ledger never minted: 401 invalid_token
    stranger = token_format.generate()
    with Client(server.url, stranger) as unknown, pytest.raises(Unauthorized) as refused_401:
        unknown.whoami()
    assert (refused_401.value.status, refused_401.value.error) == (401, "invalid_token")
    assert not holds(str(refused_401.value), stranger)

    with Client(server.url, token="") as service:
        # A service with the verify secret learns whose token it is
        answer = service.verify(narrow["token"], ["books:read"], verify_secret=VERIFY_SECRET)
        assert answer == Verification(
            valid=True,
            code="valid",
            key_id=narrow["id"],
            owner_id="alice",
            scopes=("books:read",),
            expires_at=None,
            missing_scopes=None,
        )
        # … and which scopes it lacks
        lacking = service.verify(
            narrow["token"], ["books:read", "publish:write"], verify_secret=VERIFY_SECRET
        )
        assert (lacking.valid, lacking.code) == (False, "insufficient_scope")
        assert lacking.missing_scopes == ("publish:write",)
        # Without the secret, or with a wrong one, the service is refused
        with pytest.raises(Unauthorized):
            service.verify(narrow["token"], verify_secret=None)
        with pytest.raises(Unauthorized) as wrong:
            service.verify(narrow["token"], verify_secret="not-the-verify-secret")
        assert wrong.value.error == "invalid_token"

    # The holder revokes its own token: refused from then on
    with Client(server.url, narrow["token"]) as limited:
        revoked = limited.revoke_self(reason="no longer needed")
        assert (revoked.id, revoked.status) == (narrow["id"], "revoked")
        with pytest.raises(Unauthorized):
            limited.whoami()

    # httpx and httpcore logged every request at DEBUG, and no line holds a token
    assert "HTTP Request: POST" in caplog.text
    for token in [reader["token"], narrow["token"], stranger]:
        assert not holds(caplog.text, token)
    browser.close()


def test_a_holder_and_a_service_use_the_cli(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(sqlite_url, ANTHRA_VERIFY_SECRET=VERIFY_SECRET)
    browser = signed_in(server.url, "alice", secrets_seen)
    reader = mint(browser, secrets_seen, "reader", "account:read", "books:read")
    narrow = mint(browser, secrets_seen, "narrow", "books:read")
    runs: list[subprocess.CompletedProcess[str]] = []

    def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(anthra_token(server.url, *args, **kwargs))
        return runs[-1]

    # whoami
    me = cli("whoami", token=reader["token"])
    assert me.returncode == 0, me.stderr
    assert me.stdout.startswith(f"alice via token, key {reader['id']}\n")

    # keys list and keys show
    listed = cli("keys", "list", token=reader["token"])
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [reader["id"], narrow["id"]]
    listed_json = cli("--json", "keys", "list", token=reader["token"])
    assert [k["name"] for k in json.loads(listed_json.stdout)["keys"]] == ["reader", "narrow"]
    shown = cli("keys", "show", narrow["id"], token=reader["token"])
    assert "name       narrow\n" in shown.stdout
    assert "scopes     books:read\n" in shown.stdout

    # A missing scope: exit 1, the scope named
    refused = cli("keys", "list", token=narrow["token"])
    assert refused.returncode == 1
    assert "403 insufficient_scope" in refused.stderr
    assert "(needs scope account:read)" in refused.stderr
    refused_json = cli("keys", "list", "--json", token=narrow["token"])
    assert json.loads(refused_json.stderr)["scope"] == ["account:read"]

    # An unknown token: exit 1, invalid_token
    unknown = cli("whoami", token=token_format.generate())
    assert unknown.returncode == 1
    assert "401 invalid_token" in unknown.stderr

    # verify reads the token on standard input, the secret from ANTHRA_VERIFY_SECRET
    secret = {"ANTHRA_VERIFY_SECRET": VERIFY_SECRET}
    valid = cli("verify", "--scope", "books:read", stdin=narrow["token"] + "\n", **secret)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith(f"valid\nkey {narrow['id']} of alice\n")
    lacking = cli(
        "verify", "--scope", "publish:write", "--json", stdin=narrow["token"] + "\n", **secret
    )
    assert lacking.returncode == 1
    assert json.loads(lacking.stdout)["missing_scopes"] == ["publish:write"]

    # Nothing the CLI printed holds a token
    for run in runs:
        for token in [reader["token"], narrow["token"]]:
            assert not holds(run.stdout + run.stderr, token)
    browser.close()


@pytest.fixture
def postgres_link(postgres_server: str) -> Iterator[TcpProxy]:
    """A network link to PostgreSQL that the test can cut (set up before the servers, so that
    it closes after they stop)."""
    link = TcpProxy(int(postgres_server.rsplit(":", 1)[1].split("/")[0]))
    yield link
    link.close()


@pytest.mark.postgres
def test_a_503_is_retried_until_the_ledger_can_vouch_for_tokens_again(
    postgres_link: TcpProxy,
    postgres_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(postgres_link.url(postgres_url))
    browser = signed_in(server.url, "alice", secrets_seen)
    key = mint(browser, secrets_seen, "patient", "books:read")
    holder = Client(server.url, key["token"], retries=10, retry_within=30)
    assert holder.whoami().key_id == key["id"]

    # The network to PostgreSQL goes silent: the ledger stops vouching for tokens (503)
    postgres_link.cut()
    deadline = time.monotonic() + 10
    bearer = {"Authorization": f"Bearer {key['token']}"}
    while httpx.get(f"{server.url}/api/v1/account/whoami", headers=bearer).status_code != 503:
        assert time.monotonic() < deadline, "the ledger never stopped vouching"
        time.sleep(0.05)

    # Out of retries while it lasts: Unavailable, with the ledger's error and Retry-After
    with (
        Client(server.url, key["token"], retries=1) as impatient,
        pytest.raises(Unavailable) as unavailable,
    ):
        impatient.whoami()
    assert (unavailable.value.status, unavailable.value.error) == (503, "temporarily_unavailable")
    assert unavailable.value.retry_after == 1.0
    # … and the CLI exits 3
    assert anthra_token(server.url, "--retries", "0", "whoami", token=key["token"]).returncode == 3

    # The network comes back while the client is retrying: it gets its answer
    caplog.set_level(logging.DEBUG, logger="anthra_keys_client")
    healing = threading.Timer(1.5, postgres_link.heal)
    healing.start()
    assert holder.whoami().key_id == key["id"]
    healing.join()
    assert "503 temporarily_unavailable" in caplog.text
    assert "retry 1 of 10" in caplog.text
    assert not holds(caplog.text, key["token"])
    holder.close()
    browser.close()


def whoami(server_url: str, token: str) -> WhoAmI:
    with Client(server_url, token) as holder:
        return holder.whoami()


def rotation_served(server_url: str) -> bool:
    """Whether this ledger's API document has POST /api/v1/keys/{…}/rotate."""
    paths = httpx.get(f"{server_url}/schema/openapi.json", timeout=10).json()["paths"]
    return any(
        path.startswith("/api/v1/keys/") and path.endswith("/rotate") and "post" in operations
        for path, operations in paths.items()
    )


def test_a_holder_rotates_its_token_with_the_library_and_the_cli(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    server = start_server(sqlite_url)
    if not rotation_served(server.url):
        pytest.skip(
            "this ledger does not serve POST /api/v1/keys/{key_id}/rotate yet; the test runs "
            "as soon as the server's rotation lands"
        )
    browser = signed_in(server.url, "alice", secrets_seen)
    first = mint(browser, secrets_seen, "deploy", "account:read", "books:read")

    # The token rotates itself; the old one keeps working through the grace
    with Client(server.url, first["token"]) as holder:
        second = holder.rotate(grace_seconds=300)
    secrets_seen.tokens.append(second.token)
    assert second.predecessor_id == first["id"]
    assert (second.name, set(second.scopes)) == ("deploy", {"account:read", "books:read"})
    assert second.token != first["token"]
    assert second.predecessor_retires_at is not None
    assert whoami(server.url, second.token).key_id == second.id
    assert whoami(server.url, first["token"]).key_id == first["id"]

    # A retry with the same Idempotency-Key, its answer lost: a fresh token, the lost one void
    with Client(server.url, second.token) as holder:
        lost = holder.rotate(grace_seconds=300, idempotency_key="rotate-ci-deploy-1")
        again = holder.rotate(grace_seconds=300, idempotency_key="rotate-ci-deploy-1")
    secrets_seen.tokens += [lost.token, again.token]
    assert lost.predecessor_id == again.predecessor_id == second.id
    assert lost.token != again.token
    with pytest.raises(Unauthorized):
        whoami(server.url, lost.token)
    assert whoami(server.url, again.token).key_id == again.id

    # The CLI: the new token once, alone on stdout's last line; without grace the old one stops
    rotated = anthra_token(server.url, "keys", "rotate", "--json", token=again.token)
    assert rotated.returncode == 0, rotated.stderr
    *described, token = rotated.stdout.splitlines()
    secrets_seen.tokens.append(token)
    assert token.startswith("ant_live_")
    assert len(token) == len(first["token"])
    assert json.loads("\n".join(described))["predecessor_id"] == again.id
    assert not holds("\n".join(described) + rotated.stderr, token)
    assert "store it now (e.g. as ANTHRA_TOKEN)" in rotated.stderr
    assert whoami(server.url, token).key_id == json.loads(described[0])["id"]
    with pytest.raises(Unauthorized):
        whoami(server.url, again.token)
    browser.close()


def test_the_client_installs_on_its_own_beside_a_package_named_api(tmp_path: Path) -> None:
    # A copy of client/ alone: the distribution needs nothing from the rest of the repository
    source = tmp_path / "anthra-keys-client"
    shutil.copytree(
        CLIENT_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # A project of the user's own, with its own package named api
    project = tmp_path / "project"
    (project / "api").mkdir(parents=True)
    (project / "api" / "__init__.py").write_text('WHOSE = "the project\'s"\n')

    # pip install ./anthra-keys-client, as its users do
    pip = [sys.executable, "-m", "pip", "--python", python]
    installed_client = subprocess.run(
        [*pip, "install", "--quiet", str(source)],
        cwd=project,
        timeout=600,
        capture_output=True,
        text=True,
    )
    assert installed_client.returncode == 0, installed_client.stdout + installed_client.stderr

    # Only the client and its two dependencies' trees: nothing of the server's
    listed = subprocess.run(
        [*pip, "list", "--format", "json"], check=True, capture_output=True, text=True
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"anthra-keys-client", "msgspec", "httpx"} <= installed
    assert not installed & SERVER_PACKAGES

    # The project's api is still its own, and the client imports beside it
    both = subprocess.run(
        [python, "-c", "import api, anthra_keys_client as c; print(api.WHOSE, c.__version__)"],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )
    assert both.stdout == "the project's 0.1.0\n"
    # … and so does its ASGI middleware, in a module of the project's own importing both
    (project / "service.py").write_text(
        "import api\n"
        "from anthra_keys_client.asgi import TokenVerifier\n"
        "async def app(scope, receive, send): ...\n"
        "wrapped = TokenVerifier(app, ledger_url='http://ledger:8000', verify_secret='s' * 32)\n"
        "print(api.WHOSE, type(wrapped).__module__)\n"
    )
    service = subprocess.run(
        [python, "service.py"], cwd=project, check=True, capture_output=True, text=True
    )
    assert service.stdout == "the project's anthra_keys_client.asgi\n"
    # Outside the project, none of the server's top-level packages is importable
    server_names = ["api", "domain", "infra", "projections", "ledger"]
    elsewhere = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u\n"
            f"print([n for n in {server_names!r} if u.find_spec(n) is not None])",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert elsewhere.stdout == "[]\n"
    files = subprocess.run(
        [*pip, "show", "--files", "anthra-keys-client"], check=True, capture_output=True, text=True
    )
    top_level = {
        line.strip().split("/")[0] for line in files.stdout.split("Files:")[1].splitlines()
    }
    assert not top_level & set(server_names), top_level

    # The console script is there, and asks for the token it was not given
    cli = str(venv / "bin" / "anthra-token")
    assert subprocess.run([cli, "--help"], capture_output=True, check=False).returncode == 0
    no_token = subprocess.run(
        [cli, "whoami"], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert no_token.returncode == 2
    assert "set ANTHRA_TOKEN" in no_token.stderr

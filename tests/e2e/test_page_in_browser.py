"""The /account/api-keys page in a real Chromium: create, copy once, re-scope, revoke, history."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/ when ANTHRA_SCREENSHOTS=docs (to refresh the README's pictures), else a temp dir."""
    if os.environ.get("ANTHRA_SCREENSHOTS") == "docs":
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path


def sign_in_link(server: ServerProcess) -> str:
    output = "\n".join(server.log_lines())
    match = re.search(r"(http://127\.0\.0\.1:\d+/account/sign-in/local\?code=\S+)", output)
    assert match, output
    return match.group(1)


@pytest.fixture
def dev_server(sqlite_url: str, start_server: StartServer) -> ServerProcess:
    """The Quickstart's server: SQLite, loopback, no AUTH_SECRET, so development mode."""
    return start_server(sqlite_url, AUTH_SECRET="")


@pytest.fixture
def page(browser: Any, dev_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(sign_in_link(dev_server))
    page.wait_for_url("**/account/api-keys")
    yield page
    context.close()
    assert not problems, f"the page logged errors (CSP violations included): {problems}"


def create_key(page: Any, name: str, scopes: list[str], expiry: str = "30") -> str:
    page.get_by_test_id("key-name").fill(name)
    for scope in scopes:
        page.get_by_test_id(f"scope-{scope}").check()
    page.get_by_test_id("expiry").select_option(expiry)
    page.get_by_test_id("create-button").click()
    page.get_by_test_id("token-panel").wait_for()
    token = page.get_by_test_id("token-value").inner_text().strip()
    assert token.startswith("ant_live_")
    return str(token)


def api(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_a_person_manages_a_key_in_the_page(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets
) -> None:
    # Create a key with two scopes; the token is shown once, in the panel
    token = create_key(page, "Nightly export", ["account:read", "books:read"])
    secrets_seen.tokens.append(token)
    assert "will not be shown again" in page.get_by_test_id("token-panel").inner_text()
    row = page.get_by_test_id("key-row").filter(has_text="Nightly export")
    assert row.get_by_test_id("key-prefix").inner_text().startswith(token[:12])
    assert row.get_by_test_id("key-status").inner_text().strip().lower() == "active"

    assert row.get_by_test_id("key-last-used").inner_text().strip() == "never used"

    # The token works against the API for a granted scope, and cannot manage keys
    with api(dev_server, token) as client:
        assert client.get("/api/v1/account").status_code == 200
        key_id = client.get("/api/v1/keys").json()["keys"][0]["id"]
        assert (
            client.put(f"/api/v1/keys/{key_id}/scopes", json={"scopes": ["books:read"]}).status_code
            == 403
        )
        verdict = client.post("/v1/verify", json={"token": token, "scopes": ["publish:write"]})
        assert verdict.json()["code"] == "insufficient_scope"

    # Reload: the token is gone for good, and the key shows it was used
    page.reload()
    page.get_by_test_id("key-row").first.wait_for()
    used = page.get_by_test_id("key-row").filter(has_text="Nightly export")
    assert used.get_by_test_id("key-last-used").inner_text().strip() != "never used"
    assert (
        page.get_by_test_id("token-panel").count() == 0
        or not page.get_by_test_id("token-panel").is_visible()
    )
    assert token[12:] not in page.content()

    # Edit scopes: drop account:read, add publish:write; the API follows at once
    row = page.get_by_test_id("key-row").filter(has_text="Nightly export")
    row.get_by_test_id("edit-scopes").click()
    row.get_by_test_id("edit-scope-account:read").uncheck()
    row.get_by_test_id("edit-scope-publish:write").check()
    row.get_by_test_id("save-scopes").click()
    page.get_by_test_id("key-row").filter(has_text="publish:write").wait_for()
    with api(dev_server, token) as client:
        denied = client.get("/api/v1/account")
        assert denied.status_code == 403
        assert 'scope="account:read"' in denied.headers["www-authenticate"]

    # Revoke in the page, confirming by the key's name; the API answers 401
    row = page.get_by_test_id("key-row").filter(has_text="Nightly export")
    row.get_by_test_id("revoke").click()
    confirm = page.get_by_test_id("confirm-revoke")
    confirm.wait_for()
    assert "Nightly export" in page.locator("dialog[open]").inner_text()
    confirm.click()
    page.get_by_test_id("key-row").filter(has_text="Nightly export").get_by_test_id(
        "key-status"
    ).filter(has_text=re.compile("revoked", re.I)).wait_for()
    with api(dev_server, token) as client:
        assert client.get("/api/v1/keys").status_code == 401

    # The key's history lists Minted, ScopesSet, Revoked, oldest first
    row = page.get_by_test_id("key-row").filter(has_text="Nightly export")
    row.get_by_test_id("show-history").click()
    events = page.get_by_test_id("history-event")
    events.nth(2).wait_for()
    assert [events.nth(i).get_attribute("data-type") for i in range(events.count())] == [
        "Minted",
        "ScopesSet",
        "Revoked",
    ]
    # ... saying who acted as the API does, and what the scope change added and removed
    assert "by user:local-developer (you)" in events.nth(0).inner_text()
    scopes_set = events.nth(1)
    assert "(added publish:write; removed account:read)" in scopes_set.inner_text()
    assert scopes_set.get_attribute("data-widened") == "true"


def test_errors_show_next_to_the_field(page: Any) -> None:
    # No scope ticked: the form says so by the scopes, and nothing is created
    page.get_by_test_id("key-name").fill("no scopes")
    page.get_by_test_id("create-button").click()
    page.get_by_test_id("error-scopes").wait_for()
    assert page.get_by_test_id("error-scopes").inner_text().strip()
    assert (
        page.get_by_test_id("token-panel").count() == 0
        or not page.get_by_test_id("token-panel").is_visible()
    )


def test_the_page_works_at_375_pixels_and_is_screenshotted(
    page: Any, secrets_seen: Secrets, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    # A wide screenshot with keys in it, for the README
    for name, scopes, expiry in [
        ("CI deploy", ["books:read"], "90"),
        ("Analytics dashboard", ["analytics:read", "account:read"], "7"),
        ("Publishing bot", ["books:write", "publish:write"], "365"),
    ]:
        secrets_seen.tokens.append(create_key(page, name, scopes, expiry))
        page.get_by_test_id("token-done").click()
    page.screenshot(path=str(shots / "account-api-keys.png"), full_page=True)

    # At 375 px wide nothing overflows sideways and every control can still be reached
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    page.get_by_test_id("key-row").first.wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, f"the page is {overflow} px wide at a 375 px viewport"
    secrets_seen.tokens.append(create_key(page, "Phone-made key", ["books:read"]))
    assert page.get_by_test_id("copy-button").is_visible()
    # Dismissed before the picture: a screenshot must not hold a whole token either
    page.get_by_test_id("token-done").click()
    assert (
        page.get_by_test_id("token-panel").count() == 0
        or not page.get_by_test_id("token-panel").is_visible()
    )
    page.screenshot(path=str(shots / "account-api-keys-375.png"), full_page=True)

"""The /account/api-keys page in a real Chromium: create, copy once, re-scope, revoke, history."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import OPERATOR_SECRET
from tests.e2e.conftest import Secrets, StartServer
from tests.e2e.server import ServerProcess
from tests.unit.test_leak_reports import Partner, report

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
def leak_partner() -> Partner:
    return Partner()


@pytest.fixture
def dev_server(
    sqlite_url: str, start_server: StartServer, leak_partner: Partner, tmp_path: Path
) -> ServerProcess:
    """The Quickstart's server: SQLite, loopback, no AUTH_SECRET, so development mode (and a
    secret-scanning partner it takes leak reports from)."""
    keys = tmp_path / "secret-scanning-keys.json"
    keys.write_text(json.dumps(leak_partner.document()))
    return start_server(sqlite_url, AUTH_SECRET="", ANTHRA_LEAK_KEYS_FILE=str(keys))


@pytest.fixture
def page_errors() -> list[str]:
    """What the page logged as errors; a test that provokes one takes it out, by its words."""
    return []


@pytest.fixture
def page(browser: Any, dev_server: ServerProcess, page_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = page_errors
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


# ---- the key lifecycle: rotate, suspend and resume, expiring soon, blocked by policy ----------


def row_by_prefix(page: Any, token: str) -> Any:
    """The row of the key whose token this is, found by its prefix (names repeat on rotation)."""
    return page.get_by_test_id("key-row").filter(
        has=page.get_by_test_id("key-prefix").filter(has_text=token[:12])
    )


def status_of(row: Any) -> str:
    return str(row.get_by_test_id("key-status").inner_text().strip().lower())


def wait_for_status(row: Any, status: str) -> None:
    row.get_by_test_id("key-status").filter(has_text=re.compile(f"^{status}$", re.I)).wait_for()


def open_history(row: Any) -> Any:
    row.get_by_test_id("show-history").click()
    events = row.get_by_test_id("history-event")
    events.first.wait_for()
    return events


def rotate_in_page(page: Any, row: Any, grace_seconds: int) -> str:
    row.get_by_test_id("rotate").click()
    dialog = page.get_by_test_id("rotate-dialog")
    dialog.wait_for()
    dialog.get_by_test_id(f"grace-{grace_seconds}").check()
    page.get_by_test_id("confirm-rotate").click()
    page.get_by_test_id("token-panel").wait_for()
    return str(page.get_by_test_id("token-value").inner_text().strip())


def test_a_person_rotates_a_key_with_a_grace_and_the_history_shows_the_lineage(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets
) -> None:
    # Create a key; note its token
    old_token = create_key(page, "CI deploy", ["account:read", "books:read"])
    secrets_seen.tokens.append(old_token)
    page.get_by_test_id("token-done").click()

    # Rotate it in the page, keeping the old key for an hour
    row = row_by_prefix(page, old_token)
    assert "CI deploy" in row.get_by_test_id("rotate").inner_text()
    new_token = rotate_in_page(page, row, 3600)
    secrets_seen.tokens.append(new_token)

    # The successor's token is shown once, in the new-token panel, saying when the old one stops
    assert new_token.startswith("ant_live_") and new_token != old_token
    panel = page.get_by_test_id("token-panel").inner_text()
    assert "CI deploy" in panel and "will not be shown again" in panel
    note = page.get_by_test_id("token-note").inner_text()
    assert old_token[:12] in note and "keeps working until" in note and "(in 1 hour)" in note

    # Both keys are listed, with the same name and scopes; the old one is active in its grace
    row_by_prefix(page, new_token).wait_for()
    old_row, new_row = row_by_prefix(page, old_token), row_by_prefix(page, new_token)
    assert status_of(old_row) == "active" and status_of(new_row) == "active"
    assert "CI deploy" in new_row.get_by_test_id("key-name-text").inner_text()
    scopes = new_row.get_by_test_id("key-scopes").inner_text().split()
    assert scopes == old_row.get_by_test_id("key-scopes").inner_text().split()
    assert sorted(scopes) == ["account:read", "books:read"]
    assert "2 keys: 2 active" in page.locator("#keys-summary").inner_text()

    # Both tokens work during the grace
    for token in (old_token, new_token):
        with api(dev_server, token) as client:
            assert client.get("/api/v1/account").status_code == 200

    # Where the list says when the old key stops, its row says so and offers no second rotation
    with api(dev_server, new_token) as client:
        listed = {k["prefix"]: k for k in client.get("/api/v1/keys").json()["keys"]}
    if listed[old_token[:12]].get("retires_at"):
        assert "rotated; stops at" in old_row.get_by_test_id("key-retires").inner_text()
        assert old_row.get_by_test_id("rotate").count() == 0

    # "Done": the token is gone from the page
    page.get_by_test_id("token-done").click()
    assert new_token[12:] not in page.content()

    # The old key's history ends with the rotation: into which key, and when the old one stops
    events = open_history(old_row)
    events.nth(1).wait_for()
    rotated = events.last
    assert rotated.get_attribute("data-type") == "Rotated"
    assert f"Rotated into “CI deploy” ({new_token[:12]}…" in rotated.inner_text()
    assert "stops at" in rotated.inner_text()

    # ... and its link opens the successor's history, which names its predecessor
    rotated.get_by_test_id("lineage-link").click()
    minted = row_by_prefix(page, new_token).get_by_test_id("history-event").first
    minted.wait_for()
    assert minted.get_attribute("data-type") == "Minted"
    assert f"Minted as the successor of “CI deploy” ({old_token[:12]}…" in minted.inner_text()
    focused = page.evaluate("document.activeElement.dataset.testid")
    assert focused == "show-history"


def test_a_lost_rotate_answer_is_retried_and_leaves_one_live_successor(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets, page_errors: list[str]
) -> None:
    old_token = create_key(page, "Nightly sync", ["account:read"])
    secrets_seen.tokens.append(old_token)
    page.get_by_test_id("token-done").click()

    # The first rotate reaches the server, but its answer is cut on the way back
    sent: list[str] = []
    lost: list[str] = []

    def cut_first_answer(route: Any) -> None:
        sent.append(route.request.headers.get("idempotency-key", ""))
        if len(sent) == 1:
            answer = route.fetch()
            lost.append(answer.json()["token"])
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/keys/*/rotate", cut_first_answer)
    new_token = rotate_in_page(page, row_by_prefix(page, old_token), 3600)
    secrets_seen.tokens.extend([new_token, *lost])

    # The browser logs the cut answer; nothing else
    assert [e for e in page_errors if "ERR_CONNECTION_RESET" in e]
    page_errors[:] = [e for e in page_errors if "ERR_CONNECTION_RESET" not in e]

    # The page sent the same request again, under the same Idempotency-Key
    assert len(sent) == 2 and sent[0] == sent[1] and len(sent[0]) >= 32
    assert lost and lost[0] != new_token

    # One live successor: the one whose token was shown; the lost one's token is refused
    with api(dev_server, old_token) as client:
        keys = client.get("/api/v1/keys").json()["keys"]
    live = [k for k in keys if k["status"] in {"active", "suspended", "blocked"}]
    assert sorted(k["prefix"] for k in live) == sorted([old_token[:12], new_token[:12]])
    with api(dev_server, lost[0]) as client:
        assert client.get("/api/v1/account").status_code == 401
    with api(dev_server, new_token) as client:
        assert client.get("/api/v1/account").status_code == 200


def test_a_person_suspends_and_resumes_a_key(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets
) -> None:
    token = create_key(page, "Publishing bot", ["account:read"])
    secrets_seen.tokens.append(token)
    page.get_by_test_id("token-done").click()
    row = row_by_prefix(page, token)

    # Suspend: no confirmation; the badge says so, Resume takes its place, and it is announced
    row.get_by_test_id("suspend").click()
    wait_for_status(row, "suspended")
    assert row.get_by_test_id("resume").is_visible()
    assert row.get_by_test_id("suspend").count() == 0 and row.get_by_test_id("rotate").count() == 0
    assert "refused everywhere until you resume it" in (
        row.get_by_test_id("key-status").get_attribute("title") or ""
    )
    assert page.evaluate("document.activeElement.dataset.testid") == "resume"
    page.locator("#status-message").filter(has_text="Suspended").wait_for()
    assert "1 suspended" in page.locator("#keys-summary").inner_text()

    # While suspended, the token is refused
    with api(dev_server, token) as client:
        refused = client.get("/api/v1/account")
    assert refused.status_code == 401

    # Resume: active again, and the token works
    row.get_by_test_id("resume").click()
    wait_for_status(row, "active")
    page.locator("#status-message").filter(has_text="Resumed").wait_for()
    with api(dev_server, token) as client:
        assert client.get("/api/v1/account").status_code == 200

    # The history shows both
    events = open_history(row)
    events.nth(2).wait_for()
    assert [events.nth(i).get_attribute("data-type") for i in range(events.count())] == [
        "Minted",
        "Suspended",
        "Resumed",
    ]


def test_keys_expiring_within_a_week_are_listed_at_the_top(
    page: Any, secrets_seen: Secrets
) -> None:
    # No key expires soon: no section
    secrets_seen.tokens.append(create_key(page, "Monthly report", ["books:read"], "30"))
    page.get_by_test_id("token-done").click()
    assert not page.get_by_test_id("expiring-soon").is_visible()

    # A week-long key and a two-day one: both listed, soonest first, with prefix and when
    week = create_key(page, "Weekly export", ["books:read"], "7")
    page.get_by_test_id("token-done").click()
    page.get_by_test_id("key-name").fill("Short job")
    page.get_by_test_id("scope-books:read").check()
    page.get_by_test_id("expiry").select_option("custom")
    page.get_by_test_id("expiry-custom").fill("2")
    page.get_by_test_id("create-button").click()
    page.get_by_test_id("token-panel").wait_for()
    short = page.get_by_test_id("token-value").inner_text().strip()
    secrets_seen.tokens.extend([week, short])
    page.get_by_test_id("token-done").click()

    section = page.get_by_test_id("expiring-soon")
    section.get_by_test_id("expiring-key").nth(1).wait_for()
    items = section.get_by_test_id("expiring-key")
    texts = [items.nth(i).inner_text() for i in range(items.count())]
    assert len(texts) == 2
    assert "Short job" in texts[0] and short[:12] in texts[0] and "in 2 days" in texts[0]
    assert "Weekly export" in texts[1] and week[:12] in texts[1] and "in 7 days" in texts[1]
    assert "within 7 days" in section.inner_text()
    assert section.get_by_test_id("expiring-key").filter(has_text="Monthly report").count() == 0

    # The per-key warning in the table stays
    assert row_by_prefix(page, short).get_by_test_id("expiry-warning").is_visible()


def test_a_key_the_lifetime_policy_no_longer_allows_is_shown_blocked(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets
) -> None:
    long_lived = create_key(page, "Long-lived", ["account:read"], "90")
    page.get_by_test_id("token-done").click()
    short = create_key(page, "Short-lived", ["account:read"], "7")
    page.get_by_test_id("token-done").click()
    secrets_seen.tokens.extend([long_lived, short])
    operator = httpx.Client(
        base_url=dev_server.url,
        headers={"Authorization": f"Bearer {OPERATOR_SECRET}"},
        timeout=10,
    )

    # The operator tightens the policy to 30 days: the 90-day key is blocked, not revoked
    with operator:
        tightened = operator.put("/v1/operator/lifetime-policy", json={"max_lifetime_days": 30})
        assert tightened.status_code == 200, tightened.text
        page.reload()
        row = row_by_prefix(page, long_lived)
        wait_for_status(row, "blocked")
        assert status_of(row_by_prefix(page, short)) == "active"
        title = row.get_by_test_id("key-status").get_attribute("title") or ""
        assert "lifetime policy" in title and "works again if the policy relaxes" in title
        assert "1 blocked" in page.locator("#keys-summary").inner_text()
        # ... it can still be rotated into a key within the policy, or revoked
        assert row.get_by_test_id("rotate").is_visible()
        assert row.get_by_test_id("revoke").is_visible()
        with api(dev_server, long_lived) as client:
            assert client.get("/api/v1/account").status_code == 401

        # Relaxed again: the same key works, with no event of its own
        relaxed = operator.put("/v1/operator/lifetime-policy", json={"max_lifetime_days": None})
        assert relaxed.status_code == 200, relaxed.text
    page.reload()
    wait_for_status(row_by_prefix(page, long_lived), "active")
    with api(dev_server, long_lived) as client:
        assert client.get("/api/v1/account").status_code == 200


def test_a_key_revoked_by_a_leak_report_says_where_the_token_was_found(
    page: Any, dev_server: ServerProcess, secrets_seen: Secrets, leak_partner: Partner
) -> None:
    token = create_key(page, "Pasted in a gist", ["account:read"])
    secrets_seen.tokens.append(token)
    page.get_by_test_id("token-done").click()
    body = report(token, url="https://gist.github.com/octo/0123abcd")
    answer = httpx.post(f"{dev_server.url}/v1/leaks", content=body, headers=leak_partner.sign(body))
    assert answer.json()[0]["label"] == "true_positive"
    page.reload()
    row = row_by_prefix(page, token)
    wait_for_status(row, "revoked")
    events = open_history(row)
    events.nth(1).wait_for()
    place = row.get_by_test_id("leak-place")
    assert "https://gist.github.com/octo/0123abcd" in place.inner_text()
    assert "Reason: leaked" in events.nth(1).inner_text()
    assert place.locator("a").count() == 0  # the reporter's URL is shown, never linked

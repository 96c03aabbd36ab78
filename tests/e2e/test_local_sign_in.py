"""Quickstart's promise: serve, follow the printed link, and be signed in as the local user."""

from __future__ import annotations

import re

import httpx

from tests.e2e.conftest import Secrets, StartServer


def test_the_printed_link_signs_in_the_local_developer(
    sqlite_url: str, start_server: StartServer, secrets_seen: Secrets
) -> None:
    # Serve with no AUTH_SECRET on loopback: development mode
    server = start_server(sqlite_url, AUTH_SECRET="")
    output = "\n".join(server.log_lines())
    match = re.search(r"(http://127\.0\.0\.1:\d+/account/sign-in/local\?code=\S+)", output)
    assert match, output
    link = match.group(1)

    with httpx.Client(timeout=10) as browser:
        # A wrong code, or a foreign Host header, is refused
        assert browser.get(link + "x").status_code == 403
        spoofed = browser.get(link, headers={"Host": "evil.example"})
        assert spoofed.status_code == 403
        assert "set-cookie" not in spoofed.headers

        # The link sets a genuine Auth.js session cookie and lands on the page
        response = browser.get(link, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/account/api-keys"
        cookie = response.cookies["authjs.session-token"]
        assert cookie.count(".") == 4
        secrets_seen.cookies.append(cookie)
        set_cookie = response.headers["set-cookie"].lower()
        assert "httponly" in set_cookie
        assert "samesite=lax" in set_cookie

        # The API takes it as the signed-in local user
        account = browser.get(
            f"{server.url}/api/v1/account",
            headers={"Cookie": f"authjs.session-token={cookie}"},
        )
        assert account.status_code == 200
        assert account.json()["user_id"] == "local-developer"

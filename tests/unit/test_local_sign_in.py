"""Local sign-in exists only in development mode, and only for this machine."""

from __future__ import annotations

from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client

LINK = "/account/sign-in/local?code="


def test_it_is_refused_when_an_auth_secret_is_set() -> None:
    with api_client(
        Settings(database_url="memory:", auth_secrets=(SECRET,), public_url=ORIGIN)
    ) as client:
        response = client.get(LINK + "anything", follow_redirects=False)
        assert response.status_code == 403
        assert "not in development mode" in response.text
        assert "set-cookie" not in response.headers


def test_it_is_refused_when_serving_beyond_loopback() -> None:
    settings = Settings(database_url="memory:", host="0.0.0.0", public_url=ORIGIN)  # noqa: S104
    assert not settings.dev_mode
    with api_client(settings) as client:
        code = client.app.state.dev_sign_in_code
        response = client.get(LINK + code, follow_redirects=False)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers


def test_it_is_refused_to_a_client_that_is_not_this_machine() -> None:
    settings = Settings(database_url="memory:", host="127.0.0.1")
    assert settings.dev_mode
    with api_client(settings) as client:
        # The test client's address is not a loopback address
        code = client.app.state.dev_sign_in_code
        response = client.get(LINK + code, follow_redirects=False)
        assert response.status_code == 403
        assert "only for requests from this machine" in response.text
        assert "set-cookie" not in response.headers

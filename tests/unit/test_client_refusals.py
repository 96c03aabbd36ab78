"""The client reads a refusal as the ledger writes it: status, RFC 6750 challenge and body."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from anthra_keys_client import (
    AnthraError,
    BadRequest,
    Conflict,
    Forbidden,
    Key,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    WhoAmI,
)
from anthra_keys_client.errors import challenge_params, error_for

RESOURCE = 'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource"'


def answer(status: int, body: object, **headers: str) -> httpx.Response:
    """An answer as the ledger words it (built here: what is tested is only its reading)."""
    return httpx.Response(
        status,
        content=msgspec.json.encode(body),
        headers={"content-type": "application/json", **headers},
    )


def test_a_challenge_gives_its_parameters_by_name() -> None:
    header = (
        'Bearer realm="anthra", error="insufficient_scope", '
        'error_description="the token lacks the scope this request needs: account:read", '
        f'scope="account:read books:read", {RESOURCE}'
    )
    assert challenge_params(header) == {
        "realm": "anthra",
        "error": "insufficient_scope",
        "error_description": "the token lacks the scope this request needs: account:read",
        "scope": "account:read books:read",
        "resource_metadata": "http://127.0.0.1:8000/.well-known/oauth-protected-resource",
    }


def test_a_challenge_reads_escapes_commas_in_quotes_and_bare_values() -> None:
    header = r'Bearer realm="a, \"b\"", error=invalid_token, scope="x"'
    assert challenge_params(header) == {"realm": 'a, "b"', "error": "invalid_token", "scope": "x"}


def test_a_challenge_of_another_scheme_or_none_gives_nothing() -> None:
    assert challenge_params('Basic realm="x"') == {}
    assert challenge_params("") == {}


def test_401_names_the_rfc_6750_error() -> None:
    refusal = error_for(
        answer(
            401,
            {"error": "invalid_token", "error_description": "the access token is invalid"},
            **{
                "www-authenticate": 'Bearer realm="anthra", error="invalid_token", '
                'error_description="the access token is invalid", ' + RESOURCE
            },
        )
    )
    assert isinstance(refusal, Unauthorized)
    assert (refusal.status, refusal.error) == (401, "invalid_token")
    assert str(refusal) == "401 invalid_token: the access token is invalid"


def test_401_without_credentials_is_unauthorized() -> None:
    refusal = error_for(
        answer(
            401,
            {"error": "unauthorized", "error_description": "authentication required"},
            **{"www-authenticate": 'Bearer realm="anthra"'},
        )
    )
    assert isinstance(refusal, Unauthorized)
    assert refusal.error == "unauthorized"


def test_403_names_the_missing_scope() -> None:
    refusal = error_for(
        answer(
            403,
            {"error": "insufficient_scope", "error_description": "lacks account:read"},
            **{
                "www-authenticate": 'Bearer realm="anthra", error="insufficient_scope", '
                'error_description="lacks account:read", scope="account:read"'
            },
        )
    )
    assert isinstance(refusal, Forbidden)
    assert refusal.error == "insufficient_scope"
    assert refusal.scope == ("account:read",)
    assert str(refusal).endswith("(needs scope account:read)")
    assert refusal.as_dict()["scope"] == ["account:read"]


def test_403_without_a_scope_to_name() -> None:
    refusal = error_for(
        answer(
            403,
            {"error": "cross_site_request", "error_description": "same origin only"},
            **{"www-authenticate": 'Bearer realm="anthra"'},
        )
    )
    assert isinstance(refusal, Forbidden)
    assert (refusal.error, refusal.scope) == ("cross_site_request", ())


@pytest.mark.parametrize("status", [400, 422])
def test_bad_input_names_the_field(status: int) -> None:
    refusal = error_for(
        answer(
            status,
            {
                "error": "idempotency_key_reused",
                "error_description": "used for another request",
                "field": "Idempotency-Key",
            },
        )
    )
    assert isinstance(refusal, BadRequest)
    assert (refusal.error, refusal.field) == ("idempotency_key_reused", "Idempotency-Key")


def test_429_and_503_say_how_long_to_wait() -> None:
    limited = error_for(
        answer(
            429, {"error": "too_many_requests", "error_description": "…"}, **{"retry-after": "17"}
        )
    )
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 17.0
    unavailable = error_for(
        answer(
            503,
            {"error": "temporarily_unavailable", "error_description": "catching up"},
            **{"retry-after": "1"},
        )
    )
    assert isinstance(unavailable, Unavailable)
    assert (unavailable.error, unavailable.retry_after) == ("temporarily_unavailable", 1.0)


def test_404_409_and_the_rest() -> None:
    assert isinstance(error_for(answer(404, {"error": "not_found"})), NotFound)
    assert isinstance(error_for(answer(409, {"error": "conflict"})), Conflict)
    other = error_for(answer(415, {"error": "unsupported_media_type"}))
    assert type(other) is AnthraError
    assert other.error == "unsupported_media_type"


def test_an_answer_that_is_not_the_ledgers_json_is_still_an_error() -> None:
    refusal = error_for(httpx.Response(502, content=b"<html>Bad Gateway</html>"))
    assert type(refusal) is AnthraError
    assert (refusal.status, refusal.error) == (502, "http_502")


# Answers decode leniently: the ledger may add fields and statuses


def test_fields_the_client_does_not_know_are_ignored() -> None:
    me = msgspec.json.decode(
        b'{"user_id": "alice", "via": "token", "key_id": "k1", "scopes": ["books:read"],'
        b' "organisation": "anthra"}',
        type=WhoAmI,
    )
    assert me == WhoAmI(user_id="alice", via="token", key_id="k1", scopes=("books:read",))


def test_a_status_the_client_does_not_know_is_kept_as_text() -> None:
    key = msgspec.json.decode(
        b'{"id": "k1", "prefix": "ant_live_aB3", "name": "n", "scopes": [],'
        b' "status": "quarantined", "created_at": "2026-11-28T12:00:00Z", "expires_at": null}',
        type=Key,
    )
    assert key.status == "quarantined"
    assert key.revoked_at is None

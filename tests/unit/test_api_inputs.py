"""Bad input is a 400 naming the field, never a 500: instants, whole numbers and JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.settings import Settings
from tests.api_support import ORIGIN, SAME_ORIGIN, SECRET, api_client, bearer, mint, signed_in_as

VERIFY_SECRET = "s3cret-verify"
# Each is an instant on its own clock, and before year 1 or after year 9999 in UTC.
OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
NOT_INSTANTS = [
    "2026-11-28T12:00:00",  # no offset
    "2026-11-28",  # no time
    "2026-02-30T00:00:00Z",  # no such day
    "2026-11-28T12:00:60Z",  # a leap second Python cannot hold
    "20261128T120000Z",  # ISO 8601, not RFC 3339
    "1969-12-31T23:59:59Z",  # before the range
]


def _settings() -> Settings:
    return Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        verify_secret=VERIFY_SECRET,
        public_url=ORIGIN,
    )


@pytest.mark.parametrize("instant", OVERFLOWING + NOT_INSTANTS)
def test_an_instant_out_of_range_or_malformed_is_a_400_on_every_surface(instant: str) -> None:
    with api_client(_settings()) as client:
        key = mint(client)
        alice = signed_in_as("alice")
        answers = {
            "since": client.get("/api/v1/audit", params={"since": instant}, headers=alice),
            "until": client.get("/api/v1/audit", params={"until": instant}, headers=alice),
            "since ": client.get(
                "/api/v1/audit/exposure",
                params={"scope": "books:read", "since": instant},
                headers=alice,
            ),
            "until ": client.get(
                "/api/v1/audit/exposure",
                params={"scope": "books:read", "since": "2026-01-01T00:00:00Z", "until": instant},
                headers=alice,
            ),
            "as_of": client.get(
                f"/api/v1/keys/{key['id']}", params={"as_of": instant}, headers=alice
            ),
            "as_of ": client.post(
                "/v1/verify",
                json={"token": key["token"], "as_of": instant},
                headers=bearer(VERIFY_SECRET),
            ),
        }
        for field, response in answers.items():
            assert response.status_code == 400, (field, response.text)
            assert response.json()["field"] == field.strip()


def test_instants_at_any_offset_within_the_range_are_read() -> None:
    with api_client(_settings()) as client:
        for instant in [
            "1970-01-01T00:00:00+23:59",
            "9998-12-31T23:59:59-23:59",
            "2026-11-28T12:00:00.123456789Z",
        ]:
            response = client.get(
                "/api/v1/audit", params={"since": instant}, headers=signed_in_as("alice")
            )
            assert response.status_code == 200, (instant, response.text)


@pytest.mark.parametrize(
    "value",
    ["9223372036854775808", "²", "٣", "\uff11", "+1", "-1", " 1", "1e3", "1.0", "null", ""],
)
def test_a_whole_number_is_ascii_digits_within_its_bounds(value: str) -> None:
    with api_client() as client:
        alice = signed_in_as("alice")
        for path, field in [
            ("/api/v1/audit", "cursor"),
            ("/api/v1/audit", "limit"),
            ("/api/v1/audit/export", "after"),
            ("/api/v1/keys", "unused_days"),
        ]:
            response = client.get(path, params={field: value}, headers=alice)
            # The export answers before its first byte: a 400, not a stream that breaks.
            assert response.status_code == 400, (path, value, response.text)
            assert response.json()["field"] == field


def test_the_largest_position_is_still_a_position() -> None:
    with api_client() as client:
        alice = signed_in_as("alice")
        last = str(2**63 - 1)
        assert (
            client.get("/api/v1/audit", params={"cursor": last}, headers=alice).status_code == 200
        )
        export = client.get("/api/v1/audit/export", params={"after": last}, headers=alice)
        assert export.status_code == 200 and export.text == ""


def test_json_nested_thousands_deep_is_a_400_even_without_credentials() -> None:
    with api_client() as client:
        deep = '{"token": "x", "scopes": ' + "[" * 5000 + "]" * 5000 + "}"
        response = client.post(
            "/v1/verify", content=deep, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        # Far below the interpreter's limit too: a body is no place for depth.
        shallow_enough = '{"token": "x", "scopes": ' + "[" * 40 + "]" * 40 + "}"
        response = client.post(
            "/v1/verify", content=shallow_enough, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400


def test_a_body_is_json_said_to_be_json_with_each_key_once_and_no_coercion() -> None:
    with api_client() as client:
        alice = SAME_ORIGIN | signed_in_as("alice")
        valid = {"name": "CI", "scopes": ["books:read"]}

        def post(body: str, content_type: str = "application/json") -> tuple[int, dict[str, str]]:
            response = client.post(
                "/api/v1/keys", content=body, headers=alice | {"Content-Type": content_type}
            )
            return response.status_code, response.json()

        # JSON sent as anything else
        for content_type in ["text/plain", "application/x-www-form-urlencoded", ""]:
            status, body = post(json.dumps(valid), content_type)
            assert status == 415, content_type
            assert body["error"] == "unsupported_media_type"
        # A whole number as a string, or as a float
        for days in ['"30"', "1.0", "30.5", "true"]:
            status, body = post(json.dumps(valid)[:-1] + f', "expires_in_days": {days}}}')
            assert (status, body.get("field")) == (400, "expires_in_days"), days
        # A key given twice, however it is spelled
        for twice in [
            '{"name": "CI", "name": "other", "scopes": ["books:read"]}',
            '{"name": "CI", "\\u006eame": "other", "scopes": ["books:read"]}',
        ]:
            status, body = post(twice)
            assert status == 400 and "twice" in body["error_description"]
        # The same document, said right, is minted
        assert post(json.dumps(valid))[0] == 201
        assert post(json.dumps(valid), "application/json; charset=utf-8")[0] == 201


def test_a_key_id_that_is_not_one_is_a_404_and_a_filter_that_is_not_one_a_400() -> None:
    with api_client() as client:
        alice = signed_in_as("alice")
        for key_id in ["x", "²", "9" * 40, "00000000000000000000000000000000"]:
            assert client.get(f"/api/v1/keys/{key_id}", headers=alice).status_code == 404
            response = client.get("/api/v1/audit", params={"key_id": key_id}, headers=alice)
            assert response.status_code == 400 and response.json()["field"] == "key_id"
        for value in ["Deleted", "", "Minted,Revoked"]:
            response = client.get("/api/v1/audit", params={"type": value}, headers=alice)
            assert response.status_code == 400 and response.json()["field"] == "type"


# Where an error body quotes what the caller sent: a token there keeps its display prefix only,
# as in every log line (the caller may be replaying a token it found, and bodies get logged).
QUOTED: dict[str, tuple[str, str, str, Callable[[str], object]]] = {
    "an unknown field of a mint": ("POST", "/api/v1/keys", "session", lambda t: {t: 1}),
    "an unknown scope of a mint": (
        "POST",
        "/api/v1/keys",
        "session",
        lambda t: {"name": "x", "scopes": [t]},
    ),
    "an unknown scope of a scope change": (
        "PUT",
        "/api/v1/keys/{key_id}/scopes",
        "session",
        lambda t: {"scopes": [t]},
    ),
    "an unknown field of a verify": ("POST", "/v1/verify", "none", lambda t: {t: 1}),
    "an unknown scope of a verify": (
        "POST",
        "/v1/verify",
        "none",
        lambda t: {"token": "x", "scopes": [t]},
    ),
    "an unknown event type of a webhook": (
        "POST",
        "/api/v1/webhooks",
        "session",
        lambda t: {"url": "https://hooks.example.com/", "event_types": [t]},
    ),
    "an unknown field of a suspension": (
        "POST",
        "/api/v1/keys/{key_id}/suspend",
        "session",
        lambda t: {"reason": "x", t: 1},
    ),
}


@pytest.mark.parametrize(("method", "path", "caller", "body"), QUOTED.values(), ids=QUOTED.keys())
@pytest.mark.parametrize("shape", ["whole", "without its prefix"])
def test_an_error_body_never_quotes_more_of_a_token_than_its_display_prefix(
    method: str, path: str, caller: str, body: Callable[[str], object], shape: str
) -> None:
    with api_client() as client:
        key = mint(client, "alice")
        token = key["token"]
        quoted = token if shape == "whole" else token[len("ant_live_") :]
        headers = SAME_ORIGIN | signed_in_as("alice") if caller == "session" else {}
        response = client.request(
            method, path.format(key_id=key["id"]), json=body(quoted), headers=headers
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    runs = [token[i : i + 13] for i in range(len(token) - 12)]
    assert [run for run in runs if run in response.text] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"scopes": ["books:read"]}', "name"),
        ('{"name": "x"}', "scopes"),
        ('{"name": "x", "scopes": ["books:read"], "owner": "bob"}', "owner"),
        ('{"name": "x", "scopes": ["books:read"], "expires_in_days": "30"}', "expires_in_days"),
    ],
)
def test_a_body_field_missing_unknown_or_wrong_is_named(body: str, field: str) -> None:
    with api_client() as client:
        response = client.post(
            "/api/v1/keys",
            content=body,
            headers=SAME_ORIGIN | signed_in_as("alice") | {"Content-Type": "application/json"},
        )
    assert (response.status_code, response.json().get("field")) == (400, field), response.text


@pytest.mark.parametrize(
    ("path", "caller"),
    [
        ("/api/v1/keys", "session"),
        ("/api/v1/keys/{key_id}/scopes", "session"),
        ("/api/v1/webhooks", "session"),
        ("/v1/verify", "none"),
    ],
)
def test_an_empty_body_where_one_is_needed_is_a_400_that_says_so(path: str, caller: str) -> None:
    with api_client() as client:
        key = mint(client, "alice")
        headers = SAME_ORIGIN | signed_in_as("alice") if caller == "session" else {}
        method = "PUT" if path.endswith("scopes") else "POST"
        response = client.request(
            method,
            path.format(key_id=key["id"]),
            content=b"",
            headers=headers | {"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "send a JSON body (application/json)",
    }

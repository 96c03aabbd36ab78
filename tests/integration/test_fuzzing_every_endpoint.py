"""Every endpoint the app routes, fuzzed: no input answers 5xx, and every API error is an ErrorBody.

The routes are read from the app itself, so a new endpoint is fuzzed without editing this file.
Inputs lean on what broke before: digits that are not ASCII, integers past 64 bits, instants that
overflow at an offset, JSON nested thousands deep, keys given twice, bodies that are not JSON,
credentials of every kind, methods a path does not have. The app runs on SQLite, where a cursor
beyond 64 bits once broke the store (and on PostgreSQL when one is at hand).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.app import create_app
from api.event_stream import SERVICE_STREAM_PATH, STREAM_PATH
from api.openapi import contract
from domain import token as token_format
from domain.scopes import SCOPES
from infra.settings import Settings
from tests.api_support import (
    COOKIE,
    OPERATOR,
    OPERATOR_SECRET,
    ORIGIN,
    SAME_ORIGIN,
    SECRET,
    session_cookie,
)

ROOT = Path(__file__).resolve().parents[2]
VERIFY_SECRET = "verify-secret-for-the-fuzz-test"
EXAMPLES = 25
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def _routes() -> tuple[list[tuple[str, str, bool]], dict[str, Any]]:
    """(path template, method, whether it is part of the API) for every route, and the document."""
    app = create_app(Settings(database_url="memory:", auth_secrets=(SECRET,), public_url=ORIGIN))
    document = contract(app.openapi_schema.to_schema())
    routes = [
        (route.path_format, method, route.path_format in document["paths"])
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in sorted(route.methods)
    ]
    # And one path that is no route at all. Sorted: every process collects them alike (xdist).
    return sorted([*routes, ("/no/such/{thing}", "GET", True)]), document


ROUTES, DOCUMENT = _routes()
# An endless stream cannot be read whole by an in-process client: its inputs go through the same
# values against a real server in tests/e2e/test_event_stream.py.
# (Every method: the fuzzer sometimes swaps the method for another, GET included.)
STREAMS = {STREAM_PATH, SERVICE_STREAM_PATH}
ROUTES = [(p, m, a) for p, m, a in ROUTES if p not in STREAMS]


class Target:
    """The app under test, started once, with a user's credentials and a key to aim at."""

    def __init__(self, client: TestClient[Any], token: str, victim: str) -> None:
        self.client = client
        self.token = token
        self.victim = victim


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        database_url = f"{server}{'&' if '?' in server else '?'}schema={schema}"
    else:
        database_url = f"sqlite:{tmp_path_factory.mktemp('fuzz') / 'ledger.sqlite3'}"
    yield from _served(database_url)
    if request.param == "postgres":
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _served(database_url: str) -> Iterator[Target]:
    app: Litestar = create_app(
        Settings(
            database_url=database_url,
            auth_secrets=(SECRET,),
            verify_secret=VERIFY_SECRET,
            operator_secret=OPERATOR_SECRET,
            public_url=ORIGIN,
            policy_file=str(ROOT / "deploy" / "policy.toml"),
        )
    )
    signed_in = {"Cookie": f"{COOKIE}={session_cookie('alice')}"} | SAME_ORIGIN
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client:

        def mint(name: str) -> dict[str, str]:
            body = {"name": name, "scopes": list(SCOPES)}
            minted = client.post("/api/v1/keys", json=body, headers=signed_in)
            assert minted.status_code == 201, minted.text
            return dict(minted.json())

        yield Target(client, mint("fuzzer")["token"], mint("victim")["id"])


# Values that broke, or could, by the kind of value a parameter or field declares: digits Python
# calls digits, numbers past every bound, instants at the edges of time at every offset, text
# with controls, encodings and tokens, nothing at all.
NASTY_NUMBERS = [str(2**63), "²", str(2**63 - 1), str(2**64), str(-(2**63) - 1), "9" * 40, "٣"]
NASTY_NUMBERS += ["１２", "𝟘", "-1", "0", "+5", " 5", "5_0", "1e3", "1.0", "0x10", "null", ""]  # noqa: RUF001
NASTY_INSTANTS = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00+23:59",
    "9998-12-31T23:59:59-23:59",
    "2026-02-30T00:00:00Z",
    "2026-11-28T12:00:00",
    "2026-11-28",
    "2026-11-28T24:00:00Z",
    "2026-11-28T12:00:60Z",
    "2026-11-28T12:00:00.1234567890123Z",
    "20261128T120000Z",
    "2026-11-28t12:00:00z",
]
NASTY_TEXT = ["", "null", "\x00", "a\u202eb", "line\u2028break", "%00", "%ff", "../..", "x" * 5000]
NASTY_TEXT += ["ant_live_", "ant_live_" + "A" * 50, "Minted,Revoked", "books:read,x", "true"]

numbers = st.integers(min_value=-(2**70), max_value=2**70)
text = st.sampled_from(NASTY_TEXT) | st.text(max_size=40)


def _instant(moment: datetime, minutes: int, zulu: bool) -> str:
    if zulu and minutes == 0:
        return moment.isoformat() + "Z"
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{moment.isoformat()}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# Every instant Python can hold, at every offset RFC 3339 can write; most at the ends of time.
moments = st.one_of(
    st.datetimes(max_value=datetime(1, 1, 2)),
    st.datetimes(min_value=datetime(9999, 12, 30)),
    st.datetimes(),
)
instants = st.sampled_from(NASTY_INSTANTS) | st.builds(
    _instant, moments, st.integers(-(24 * 60 - 1), 24 * 60 - 1), st.booleans()
)
whole_numbers = st.sampled_from(NASTY_NUMBERS) | numbers.map(str)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def _declared(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema without its `null` alternative."""
    alternatives = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return next((a for a in alternatives if a.get("type") != "null"), schema)


def _query_values(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = _declared(schema)
    if schema.get("format") == "date-time":
        return instants | text
    if schema.get("type") == "integer":
        return whole_numbers
    if "enum" in schema:
        return st.sampled_from([str(v) for v in schema["enum"]]) | text
    if schema.get("format") == "uuid":
        return st.uuids().map(str) | text
    return text | whole_numbers


def _json_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    schema = _declared(schema)
    if schema.get("format") == "date-time":
        return instants | json_values
    if schema.get("type") == "integer":
        return numbers | st.floats() | whole_numbers | json_values
    if schema.get("type") == "array":
        return st.lists(st.sampled_from(list(SCOPES)) | text, max_size=8) | json_values
    return text | json_values


def _deep(depth: int) -> bytes:
    return b'{"token": "x", "scopes": ' + b"[" * depth + b"]" * depth + b"}"


def _bodies(operation: dict[str, Any] | None) -> st.SearchStrategy[bytes]:
    """JSON documents shaped like the operation's body, and ones shaped like nothing."""
    properties: dict[str, Any] = {"token": {}, "scopes": {"type": "array"}, "name": {}}
    body: dict[str, Any] = {}
    if operation and "requestBody" in operation:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        reference = body.get("items", body)["$ref"]
        properties = DOCUMENT["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"]
    shaped: st.SearchStrategy[Any] = st.fixed_dictionaries(
        {}, optional={name: _json_values(schema) for name, schema in properties.items()}
    )
    if body.get("type") == "array":
        # A leak report: an array of such objects.
        shaped = st.lists(shaped, max_size=3)
    return st.one_of(
        shaped.map(lambda value: json.dumps(value).encode()),
        shaped.map(lambda value: json.dumps(value).encode()),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.sampled_from(
            [
                _deep(5000),
                _deep(40),
                b'{"name": "a", "name": "b", "scopes": ["books:read"]}',
                b'{"token": "x", "\\u0074oken": "y"}',
                b'{"name": "a", "scopes": ["books:read"], "expires_in_days": "30"}',
                b'{"name": "a", "scopes": ["books:read"], "expires_in_days": 1.0}',
                b"",
                b"{",
                b"\xff\xfe",
                b"null",
                b"[" * 100_000,
            ]
        ),
        st.binary(max_size=64),
    )


CONTENT_TYPES = ["application/json", "application/json", "APPLICATION/JSON; charset=utf-8"]
CONTENT_TYPES += ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; x", ""]
CREDENTIALS = ["session", "token", "session", "token", "secret", "operator", "none", "garbage"]
CREDENTIALS += ["both"]


@st.composite
def requests(draw: st.DrawFn, path: str, method: str, target: Target) -> dict[str, Any]:
    """A request aimed at one route: its path filled in, its query, headers and body drawn."""
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    operation = DOCUMENT["paths"].get(path, {}).get(method.lower())
    url = path
    for name in [p.split("}")[0] for p in path.split("{")[1:]]:
        # Most often a key that exists, so that the request goes past the lookup.
        value = draw(
            st.just(target.victim)
            | st.sampled_from([str(uuid.uuid4()), "x", "²", str(2**64), "a" * 300])
            | text.filter(bool)
        )
        url = url.replace("{" + name + "}", quote(value, safe="/" if "path" in name else ""))
    declared = {
        p["name"]: p.get("schema", {})
        for p in (operation or {}).get("parameters", [])
        if p["in"] == "query"
    }
    params = [
        (name, draw(_query_values(schema)))
        for name, schema in declared.items()
        if draw(st.integers(0, 3)) > 0
    ]
    params += draw(st.lists(st.tuples(st.sampled_from(["cursor", "x", "as_of"]), text), max_size=2))
    headers: dict[str, str] = {}
    credential = draw(st.sampled_from(CREDENTIALS))
    if credential in ("session", "both"):
        headers["Cookie"] = f"{COOKIE}={session_cookie('alice')}"
        headers |= SAME_ORIGIN
    if credential in ("token", "both"):
        headers["Authorization"] = f"Bearer {target.token}"
    if credential == "secret":
        headers["Authorization"] = f"Bearer {VERIFY_SECRET}"
    if credential == "operator":
        headers |= OPERATOR
    if credential == "garbage":
        headers["Authorization"] = draw(
            st.sampled_from(
                ["Bearer", "Bearer a b", "Basic x", f"Bearer {token_format.generate()}"]
            )
        )
    for name in ("X-Original-URI", "X-Original-Method", "X-Forwarded-Uri", "X-Request-Id"):
        if draw(st.booleans()):
            headers[name] = draw(
                st.sampled_from(["/api/v1/books", "GET", "/a/../b", "/%ff", "x" * 3000])
                | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
            )
    content: bytes | None = None
    if method in ("POST", "PUT", "PATCH", "DELETE") and draw(st.integers(0, 4)) > 0:
        content = draw(_bodies(operation))
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type:
            headers["Content-Type"] = content_type
    return {"method": method, "url": url, "params": params, "headers": headers, "content": content}


def _is_error_body(raw: bytes) -> bool:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return False
    return (
        isinstance(body, dict)
        and set(body) <= {"error", "error_description", "field"}
        and isinstance(body.get("error"), str)
        and isinstance(body.get("error_description"), str)
        and isinstance(body.get("field", ""), str)
    )


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method", "api"), ROUTES, ids=[f"{m} {p}" for p, m, _ in ROUTES])
def test_no_input_answers_5xx_and_every_error_is_an_error_body(
    target: Target, path: str, method: str, api: bool
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        request = data.draw(requests(path, method, target))
        response = target.client.request(**request)
        described = f"{request['method']} {request['url']} {request['params']!r}"
        assert response.status_code < 500, described + "\n" + response.text[:500]
        if api and response.status_code >= 400 and request["method"] != "HEAD":
            assert _is_error_body(response.content), described + "\n" + response.text[:500]

    fuzz()


# Every declared input of every documented operation, given every value of its kind in turn, the
# rest of the request valid: the classes above, each value at least once.
OPERATIONS = sorted(
    (path, method.upper())
    for path, operations in DOCUMENT["paths"].items()
    for method in operations
    if method in ("get", "head", "post", "put", "patch", "delete", "options")
    and (path, method) not in {(STREAM_PATH, "get"), (SERVICE_STREAM_PATH, "get")}
)
EDGE_INSTANTS = [
    _instant(moment, minutes, zulu=False)
    for moment in (
        datetime(1, 1, 1),
        datetime(1969, 12, 31, 23, 59),
        datetime(9999, 12, 31, 23, 59),
    )
    for minutes in (-(24 * 60 - 1), -14 * 60, 0, 14 * 60, 24 * 60 - 1)
]
WRONG_TYPES: list[Any] = [None, True, 1.0, 2**64, -(2**63) - 1, "30", [], {}, [[[[]]]], {"a": {}}]


def _valid(schema: dict[str, Any], name: str) -> Any:
    """A value the schema accepts, to hold the rest of a request steady."""
    schema = _declared(schema)
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    if schema.get("type") == "integer":
        return schema.get("minimum", 1)
    if schema.get("type") == "array":
        return [_valid(schema.get("items", {}), name)]
    return {"X-Original-URI": "/api/v1/books", "X-Original-Method": "GET"}.get(name, "fuzz")


def _pool(schema: dict[str, Any]) -> list[Any]:
    schema = _declared(schema)
    if schema.get("format") == "date-time":
        return NASTY_INSTANTS + EDGE_INSTANTS + NASTY_TEXT
    if schema.get("type") == "integer":
        return NASTY_NUMBERS
    return NASTY_TEXT + NASTY_NUMBERS[:4]


def _baseline(path: str, method: str, target: Target) -> dict[str, Any]:
    operation = DOCUMENT["paths"][path][method.lower()]
    security = operation.get("security") or []
    headers: dict[str, str] = {}
    if {"session": []} in security:
        headers = {"Cookie": f"{COOKIE}={session_cookie('alice')}"} | SAME_ORIGIN
    if {"verifySecret": []} in security:
        headers = {"Authorization": f"Bearer {VERIFY_SECRET}"}
    if {"operatorSecret": []} in security:
        headers = dict(OPERATOR)
    elif {"bearer": []} in security and not headers:
        headers = {"Authorization": f"Bearer {target.token}"}
    url = path.replace("{key_id}", target.victim).replace("{original_path}", "api/v1/books")
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        if parameter.get("required") and parameter["in"] == "query":
            query[parameter["name"]] = _valid(parameter["schema"], parameter["name"])
        if parameter.get("required") and parameter["in"] == "header":
            headers[parameter["name"]] = _valid(parameter["schema"], parameter["name"])
    body = None
    body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "$ref" not in body_schema.get("schema", {}):
        # A body that is not an object (a leak report: an array, read raw for its signature).
        body = [] if body_schema else None
    else:
        reference = body_schema["schema"]["$ref"]
        component = DOCUMENT["components"]["schemas"][reference.rsplit("/", 1)[1]]
        body = {
            name: _valid(component["properties"][name], name)
            for name in component.get("required", [])
        }
        if "token" in body:
            body["token"] = target.token
    return {"operation": operation, "url": url, "query": query, "headers": headers, "body": body}


def _mutations(path: str, method: str, target: Target) -> Iterator[dict[str, Any]]:
    base = _baseline(path, method, target)
    plain = {"method": method, "url": base["url"], "headers": base["headers"]}
    body = base["body"]

    def request(query: dict[str, Any], headers: dict[str, str], content: Any) -> dict[str, Any]:
        sent = plain | {"params": query, "headers": headers}
        if content is not None:
            raw = content if isinstance(content, bytes) else json.dumps(content).encode()
            sent |= {"content": raw, "headers": {"Content-Type": "application/json"} | headers}
        return sent

    yield request(base["query"], base["headers"], body)
    for parameter in base["operation"].get("parameters", []):
        name, place = parameter["name"], parameter["in"]
        for value in _pool(parameter.get("schema", {})):
            if place == "query":
                yield request(base["query"] | {name: value}, base["headers"], body)
            elif place == "header" and value.isascii() and len(value) < 4000:
                yield request(base["query"], base["headers"] | {name: value}, body)
            elif place == "path":
                url = path.replace("{" + name + "}", quote(value, safe="") or "x")
                yield request(base["query"], base["headers"], body) | {"url": url}
    if not isinstance(body, dict):
        return
    reference = base["operation"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    properties = DOCUMENT["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"]
    for name, schema in properties.items():
        for value in [*_pool(schema), *WRONG_TYPES]:
            yield request(base["query"], base["headers"], body | {name: value})
    for raw in [_deep(5000), b'{"scopes": [], "scopes": []}', b"", b"{", b"\xff", b"[" * 100_000]:
        yield request(base["query"], base["headers"], raw)
    for content_type in CONTENT_TYPES:
        sent = request(base["query"], base["headers"], body)
        yield sent | {"headers": sent["headers"] | {"Content-Type": content_type}}


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_every_input_given_every_value_of_its_kind_answers_without_5xx(
    target: Target, path: str, method: str
) -> None:
    for request in _mutations(path, method, target):
        response = target.client.request(**request)
        described = f"{request['method']} {request['url']} {request.get('params')!r}"
        described += f" {request.get('content', b'')[:200]!r}"
        assert response.status_code < 500, described + "\n" + response.text[:500]
        if response.status_code >= 400 and method != "HEAD":
            assert _is_error_body(response.content), described + "\n" + response.text[:500]

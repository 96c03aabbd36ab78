"""The contract the API publishes, and the headers every answer carries, checked route by route."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from litestar.routes import HTTPRoute

from api.event_stream import STREAM_PATH
from tests.api_support import SAME_ORIGIN, api_client, mint, signed_in_as

# /metrics takes no credentials: it answers loopback clients only.
PUBLIC = {"/healthz", "/readyz", "/.well-known/oauth-protected-resource", "/metrics"}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def _document() -> dict[str, Any]:
    with api_client() as client:
        response = client.get("/schema/openapi.json")
        assert response.status_code == 200
        return dict(response.json())


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_the_schema_is_json_and_yaml_with_no_documentation_site_and_no_third_party_script() -> None:
    with api_client() as client:
        root = client.get("/schema")
        assert root.status_code == 200
        assert "json" in root.headers["content-type"]
        assert "<script" not in root.text and "cdn." not in root.text
        as_yaml = client.get("/schema/openapi.yaml")
        assert yaml.safe_load(as_yaml.text) == root.json()
        for site in ("/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc"):
            page = client.get(site)
            assert page.status_code == 404 and "<script" not in page.text


def test_the_document_is_written_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Anyone may ask for it, without a credential: a request must cost no rendering.
    import litestar.openapi.plugins

    dumps: list[object] = []
    dump = litestar.openapi.plugins.yaml.dump

    def counted(*args: Any, **kwargs: Any) -> Any:
        dumps.append(args)
        return dump(*args, **kwargs)

    monkeypatch.setattr(litestar.openapi.plugins.yaml, "dump", counted)
    with api_client() as client:
        answers = [client.get(path) for path in ("/schema/openapi.yaml", "/schema/openapi.yml") * 3]
        jsons = [client.get("/schema/openapi.json") for _ in range(3)]
    assert len(dumps) == 1
    assert len({a.content for a in answers}) == 1 and len({j.content for j in jsons}) == 1
    assert all(a.status_code == 200 for a in answers + jsons)


def test_callers_authenticate_as_the_document_says() -> None:
    document = _document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == schemes["bearer"] | {"type": "http", "scheme": "bearer"}
    assert schemes["session"] == schemes["session"] | {
        "type": "apiKey",
        "in": "cookie",
        "name": "authjs.session-token",
    }
    for path, method, operation in _operations(document):
        security = operation.get("security")
        if path in PUBLIC:
            assert not security, (method, path)
        else:
            assert security, (method, path)
            assert all(set(r) <= set(schemes) for r in security), (method, path)
    keys = document["paths"]["/api/v1/keys"]
    assert keys["post"]["security"] == [{"session": []}]
    assert {"bearer": ["account:read"]} in keys["get"]["security"]
    assert {} in document["paths"]["/v1/verify"]["post"]["security"]
    operator = document["paths"]["/v1/operator/audit/check"]["post"]["security"]
    assert operator == [{"operatorSecret": []}]


def test_every_error_an_operation_can_answer_is_documented_as_an_error_body() -> None:
    document = _document()
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert "400" in responses, (method, path)
        if operation.get("security"):
            assert {"401", "403"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status[0] in "45" and (path, status) != ("/readyz", "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == ERROR_BODY, (method, path, status)
    # The ones a rule cannot guess, declared by their handlers
    assert "403" in document["paths"]["/api/v1/keys/{key_id}"]["delete"]["responses"]
    assert "409" in document["paths"]["/api/v1/keys/{key_id}/scopes"]["put"]["responses"]
    assert "429" in document["paths"]["/v1/operator/audit/check"]["post"]["responses"]
    # A command that may be retried under an Idempotency-Key says so, and what reusing one is
    for path, method in [("/api/v1/keys", "post"), ("/api/v1/keys/{key_id}", "delete")]:
        operation = document["paths"][path][method]
        assert "422" in operation["responses"]
        assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]]
    ready = document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]
    assert ready["application/json"]["schema"] == {"$ref": "#/components/schemas/Readiness"}


def test_the_export_is_documented_as_ndjson_and_authz_with_the_headers_it_reads() -> None:
    document = _document()
    export = document["paths"]["/api/v1/audit/export"]["get"]["responses"]["200"]["content"]
    assert list(export) == ["application/x-ndjson"]
    authz = document["paths"]["/v1/authz"]["get"]["parameters"]
    required = {p["name"] for p in authz if p["in"] == "header" and p["required"]}
    assert required == {"X-Original-URI", "X-Original-Method"}
    # A query parameter is sent or absent, never null
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            assert "null" not in str(parameter["schema"]), parameter


def test_every_answer_of_every_route_is_no_store_and_options_lists_every_method() -> None:
    with api_client() as client:
        key = mint(client)
        alice = SAME_ORIGIN | signed_in_as("alice")
        # The ones that went without before (the loop below revokes the key)
        for url in [f"/api/v1/keys/{key['id']}", f"/api/v1/keys/{key['id']}/history"]:
            assert client.get(url, headers=alice).headers["cache-control"] == "no-store"
        then = client.get(
            f"/api/v1/keys/{key['id']}", params={"as_of": key["created_at"]}, headers=alice
        )
        assert then.status_code == 200 and then.headers["cache-control"] == "no-store"
        rescoped = client.put(
            f"/api/v1/keys/{key['id']}/scopes", json={"scopes": ["account:read"]}, headers=alice
        )
        assert rescoped.status_code == 200 and rescoped.headers["cache-control"] == "no-store"
        routes = [route for route in client.app.routes if isinstance(route, HTTPRoute)]
        for route in routes:
            path = route.path_format.replace("{key_id}", key["id"]).replace(
                "{original_path}", "api/v1/books"
            )
            path = path.replace("{name}", "api-keys.css").replace("{path}", "x")
            for method in sorted(route.methods):
                for headers in (alice, {}):
                    if (route.path_format, method, headers) == (STREAM_PATH, "GET", alice):
                        # An endless stream: an in-process client would wait for its end.
                        # tests/e2e/test_event_stream.py reads its headers from a real server.
                        continue
                    response = client.request(method, path, headers=headers, json={})
                    public = method == "GET" and "well-known" in path
                    expected = "max-age=300" if public else "no-store"
                    assert response.headers.get("cache-control") == expected, (method, path)
                    if method == "OPTIONS" and response.status_code == 204:
                        allowed = response.headers["allow"]
                        assert allowed == ", ".join(sorted(route.methods)), path


def _patterns(node: Any, found: set[str]) -> Any:
    """The node with every `pattern` swapped for a placeholder; the patterns into `found`."""
    if isinstance(node, dict):
        copied = {}
        for name, value in node.items():
            if name == "pattern" and isinstance(value, str):
                found.add(value)
                copied[name] = "^.*$"
            else:
                copied[name] = _patterns(value, found)
        return copied
    if isinstance(node, list):
        return [_patterns(item, found) for item in node]
    return node


def test_the_document_is_valid_openapi() -> None:
    import jsonschema_rs
    from openapi_spec_validator import validate

    # OpenAPI 3.1's patterns are ECMA-262 regular expressions, with \p{…} classes; the
    # validator checks them with Python's re, which has none. Each is compiled by a regex
    # engine that has them (jsonschema_rs's, as validators of the document's users do), and
    # the rest of the document is validated around them.
    found: set[str] = set()
    document = _patterns(_document(), found)
    assert found
    for pattern in found:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})  # raises if invalid
    validate(document)


def test_each_bearer_requirement_names_the_scopes_a_token_needs() -> None:
    document = _document()
    paths = document["paths"]
    assert paths["/api/v1/keys"]["get"]["security"] == [
        {"session": []},
        {"bearer": ["account:read"]},
    ]
    assert {"bearer": []} in paths["/api/v1/keys/{key_id}/rotate"]["post"]["security"]
    assert {"bearer": []} in paths["/api/v1/account/whoami"]["get"]["security"]
    report = paths["/v1/leaks"]["post"]
    assert report["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == 1000


def test_the_webhook_message_the_ledger_sends_is_documented() -> None:
    delivery = _document()["webhooks"]["keyEvent"]["post"]
    schema = delivery["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/WebhookMessage"}
    names = {p["name"] for p in delivery["parameters"]}
    assert names == {"webhook-id", "webhook-timestamp", "webhook-signature"}

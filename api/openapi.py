"""The OpenAPI document as the API keeps it: JSON at /schema and /schema/openapi.json, YAML at
/schema/openapi.yaml, no documentation site (no third-party script).

Litestar generates the operations from the handlers; `contract` then writes down, in one place,
what every operation shares and Litestar does not say: how callers authenticate, that every
error body is an `ErrorBody`, which error statuses each operation can answer (decided by rule:
what the middleware and the exception handlers can answer, given the operation's security, path
parameters and body), and what the forward-auth endpoint reads from its headers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.routes import HTTPRoute

from api import problems, resource_metadata, schemas
from api.forward_auth import AUTHZ_PATH
from api.problems import ErrorBody
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.idempotency import MAX_LENGTH as IDEMPOTENCY_KEY_LENGTH

T = TypeVar("T")
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# An operation's security, as handlers declare it (Litestar appends a handler's list to its
# controller's, so each handler names its own): a session, or a token with the guard's scope.
SESSION_OR_TOKEN: list[dict[str, list[str]]] = [{"session": []}, {"bearer": []}]
SESSION_ONLY: list[dict[str, list[str]]] = [{"session": []}]
OPERATOR_ONLY: list[dict[str, list[str]]] = [{"operatorSecret": []}]
VERIFY_SECRET_ONLY: list[dict[str, list[str]]] = [{"verifySecret": []}]
# Anyone, a service with the verify secret, or a session: what each learns differs.
ANYONE_SERVICE_OR_SESSION: list[dict[str, list[str]]] = [{}, {"verifySecret": []}, {"session": []}]
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ant_live_ token",
        "description": "A personal access token: its scopes apply",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "authjs.session-token",
        "description": (
            "The Auth.js session cookie (also `__Secure-authjs.session-token`, chunked `.0`, "
            "`.1`, …), sent with no Authorization header: the signed-in user, with every scope. "
            "A state-changing request must be same-origin"
        ),
    },
    "verifySecret": {
        "type": "http",
        "scheme": "bearer",
        "description": "ANTHRA_VERIFY_SECRET, for Anthra's own services",
    },
    "operatorSecret": {
        "type": "http",
        "scheme": "bearer",
        "description": "ANTHRA_OPERATOR_SECRET, for the people who run the ledger",
    },
    "leakReportSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Github-Public-Key-Signature",
        "description": "A secret-scanning partner's ECDSA P-256 signature of the raw body "
        "(base64 DER), with its key's id in Github-Public-Key-Identifier; the keys come from "
        "ANTHRA_LEAK_KEYS_FILE",
    },
}
LEAK_PARTNER: list[dict[str, list[str]]] = [{"leakReportSignature": []}]
# Why each error status can happen, by the rule that adds it.
_EVERY_OPERATION = {
    "400": "Bad input (named in `field`), a malformed Authorization header, or a token in the URL",
    "414": "The path and query are longer than the edge allows",
    "421": "A Host the service does not answer for (ANTHRA_ALLOWED_HOSTS)",
    "431": "More or larger headers than the edge allows",
}
_AUTHENTICATED = {
    "401": "No credentials, or an invalid, revoked or expired token",
    "403": "A missing scope, or a cross-site request on a session",
    "429": "Too many failed credentials from this client or for this token prefix",
    "503": "The verification index or the session store cannot vouch for itself just now",
}
_PATH_PARAMETERS = {"404": "No such key among the caller's"}
# A command a client may retry: it reads the header, and answers 422 when it is reused.
IDEMPOTENT = {
    422: ResponseSpec(
        ErrorBody,
        description=f"The {IDEMPOTENCY_HEADER} was used for another request in the last 24 hours",
    )
}
_IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "Send the same value again to retry this request safely, for 24 hours",
    "schema": {"type": "string", "pattern": f"^[!-~]{{1,{IDEMPOTENCY_KEY_LENGTH}}}$"},
}
_BODY = {"413": "The body is larger than 64 KiB", "415": "The body is not application/json"}
# What /v1/authz reads (see api/forward_auth.py) as far as a schema can state it. A path the
# gateway's upstream could read as another one (dot segments, encoded slashes, double encoding…)
# is refused; the patterns admit plain segments only, a subset of what is served.
_PLAIN_SEGMENT = (
    "[A-Za-z0-9._~!$&'()*+,=:@-]*[A-Za-z0-9_~!$&'()*+,=:@-][A-Za-z0-9._~!$&'()*+,=:@-]*"
)
_AUTHZ_HEADERS = [
    {
        "name": "X-Original-URI",
        "in": "header",
        "required": True,
        "description": "The original request target, origin-form (nginx: `$request_uri`); "
        "Traefik's X-Forwarded-Uri and X-Forwarded-Method are read the same way",
        "schema": {
            "type": "string",
            "pattern": f"^(/|(/{_PLAIN_SEGMENT})+/?)(\\?[A-Za-z0-9._~!$&'()*+,;=:@/?-]*)?$",
            "maxLength": 2048,
        },
    },
    {
        "name": "X-Original-Method",
        "in": "header",
        "required": True,
        "description": "The original request method (nginx: `$request_method`)",
        "schema": {"type": "string", "pattern": "^[A-Za-z]{1,16}$"},
    },
]
_SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }
    for name, description in (
        (
            "webhook-id",
            "The message's id, the same on every attempt (evt_<position>): dedupe on it",
        ),
        ("webhook-timestamp", "Seconds since the epoch when this attempt was signed"),
        (
            "webhook-signature",
            "v1,<base64 HMAC-SHA256 of id.timestamp.body> with the endpoint's whsec_ secret "
            "(Standard Webhooks)",
        ),
    )
]
_WEBHOOK_DELIVERY = {
    "post": {
        "summary": "A key event or an expiry notice, delivered to a registered endpoint",
        "description": "Signed per Standard Webhooks; at least once, in store order per "
        "endpoint; retried with backoff for 24 hours until a 2xx, then the endpoint is disabled.",
        "parameters": _SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/WebhookMessage"}}
            },
        },
        "responses": {"2XX": {"description": "Received; any other answer is retried"}},
    }
}
# The leak report is read raw (its signature covers the exact bytes), so Litestar cannot see it.
LEAKS_PATH = "/v1/leaks"
_LEAK_REPORT = {
    "required": True,
    "description": "What a secret-scanning partner found; at most 1,000 entries, 1 MiB",
    "content": {
        "application/json": {
            "schema": {
                "type": "array",
                "maxItems": 1000,
                "items": {"$ref": "#/components/schemas/ReportedToken"},
            }
        }
    },
}
# Envoy's form: the original path after /v1/authz/, as sent (shown here as one plain segment, short
# enough that even percent-encoded whole it stays within the edge's 8 KiB for a target).
_ORIGINAL_PATH = {"type": "string", "pattern": f"^{_PLAIN_SEGMENT}$", "maxLength": 600}


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Anthra key ledger",
        version="1.0.0",
        path="/schema",
        render_plugins=[
            ContractJson(path=["/", "/openapi.json"]),
            ContractYaml(),
        ],
    )


class ContractJson(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return rendered_once(
            request.app,
            "openapi_json",
            lambda: self.render_json(request, contract_of(request.app, openapi_schema)),
        )


class ContractYaml(YamlRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return rendered_once(
            request.app,
            "openapi_yaml",
            lambda: YamlRenderPlugin.render(
                self, request, contract_of(request.app, openapi_schema)
            ),
        )


def rendered_once(app: Litestar, name: str, render: Callable[[], T]) -> T:
    """What `render` makes, made once per app and kept in its state: the contract, and the
    document as each plugin writes it (the YAML took a quarter of a second of CPU per request,
    which anyone could ask for without a credential)."""
    made: T | None = app.state.get(name)
    if made is None:
        made = app.state[name] = render()
    return made


def contract_of(app: Litestar, generated: dict[str, Any]) -> dict[str, Any]:
    """The app's contract, made once from Litestar's document."""
    return rendered_once(app, "openapi_contract", lambda: contract(generated, scopes_needed(app)))


def scopes_needed(app: Litestar) -> dict[tuple[str, str], tuple[str, ...]]:
    """(path, method) → the scopes a token needs there, read from the handlers' guards."""
    needed: dict[tuple[str, str], tuple[str, ...]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            scopes = tuple(
                scope
                for guard in handler.resolve_guards()
                for scope in getattr(guard, "scopes", ())
            )
            for method in handler.http_methods:
                needed[(route.path_format, method.lower())] = scopes
    return needed


def contract(
    generated: dict[str, Any], scopes: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> dict[str, Any]:
    """Litestar's document with what every operation shares written down, and the scopes a
    token needs in each operation's bearer requirement (OpenAPI 3.1 allows role names there)."""
    document = copy.deepcopy(generated)
    components = document.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    components.setdefault("schemas", {}).update(_wire_schemas())
    # What the ledger POSTs to a registered webhook endpoint (OpenAPI 3.1's `webhooks`).
    document["webhooks"] = {"keyEvent": _WEBHOOK_DELIVERY}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if path == LEAKS_PATH and isinstance(operation, dict):
                operation["requestBody"] = _LEAK_REPORT
            if isinstance(operation, dict) and "responses" in operation:
                _complete(path, operation)
                needed = (scopes or {}).get((path, method), ())
                if needed and operation.get("security"):
                    operation["security"] = [
                        {"bearer": list(needed)} if "bearer" in requirement else requirement
                        for requirement in operation["security"]
                    ]
    return document


def _complete(path: str, operation: dict[str, Any]) -> None:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and _present(body["schema"]) is not body["schema"]:
        # `data: T | None = None`: the body may be left out, and is never null.
        body["schema"] = _present(body["schema"])
        operation["requestBody"]["required"] = False
    if path == AUTHZ_PATH:
        operation["parameters"] = [*operation.get("parameters", []), *_AUTHZ_HEADERS]
    if "422" in operation["responses"]:
        operation["parameters"] = [*operation.get("parameters", []), _IDEMPOTENCY_KEY]
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _present(parameter.get("schema", {}))
        if path.startswith(AUTHZ_PATH) and parameter["name"] == "original_path":
            parameter["schema"] = _ORIGINAL_PATH
    security = operation.get("security") or []
    errors = dict(_EVERY_OPERATION)
    if security:
        errors |= _AUTHENTICATED
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        errors |= _PATH_PARAMETERS
    if "requestBody" in operation:
        errors |= _BODY
    responses: dict[str, Any] = operation["responses"]
    for status, description in errors.items():
        responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if status.startswith(("4", "5")) and _is_error(response):
            response["content"] = {"application/json": {"schema": ERROR_REF}}
        for media in response.get("content", {}).values():
            media["schema"] = _any_of_models(media.get("schema", {}))


def _is_error(response: dict[str, Any]) -> bool:
    """Whether a 4xx/5xx answer carries an ErrorBody: all do, unless a handler declared a model
    of its own for it (readiness answers 503 with its report)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    return not ref or ref == ERROR_REF["$ref"]


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter is sent or absent, never null: `T | None` is just T."""
    alternatives = schema.get("oneOf")
    if not alternatives:
        return schema
    kept = [a for a in alternatives if a.get("type") != "null"]
    if len(kept) != 1:
        return schema
    siblings = {k: v for k, v in schema.items() if k != "oneOf"}
    return {**kept[0], **siblings}


def _any_of_models(schema: dict[str, Any]) -> dict[str, Any]:
    """A response that is one model or another (a key, or a key as it was): one model may hold
    every field of the other, so `oneOf` would refuse the very answers it describes."""
    alternatives = schema.get("oneOf")
    if alternatives and all("$ref" in a for a in alternatives):
        return {**{k: v for k, v in schema.items() if k != "oneOf"}, "anyOf": alternatives}
    return schema


def _wire_schemas() -> dict[str, Any]:
    """Every Struct of the wire as msgspec itself describes it: its constraints, patterns and
    enums, and `additionalProperties: false` where unknown fields are refused."""
    structs = [
        value
        for module in (schemas, problems, resource_metadata)
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
    ]
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    return components

"""The API-keys page, in process: sign-in page, the page, its assets, and their security headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.account import EXPIRY_WARNING_DAYS
from api.app import create_app
from domain.api_key import MAX_EXPIRY_DAYS, MAX_GRACE_SECONDS, MAX_NAME_LENGTH, MIN_EXPIRY_DAYS
from domain.scopes import SCOPES
from infra.settings import Settings
from tests.api_support import (
    ORIGIN,
    SAME_ORIGIN,
    SECRET,
    bearer,
    mint,
    session_cookie,
    signed_in_as,
)

PAGE = "/account/api-keys"
CONFIG = "/account/api-keys/config.json"
ASSETS = Path(str(resources.files("api").joinpath("page_assets")))
# Every script module and the style sheet, by their paths under page_assets (and /account/assets).
SCRIPTS = sorted(p.relative_to(ASSETS).as_posix() for p in ASSETS.rglob("*.js"))
STYLES = sorted(p.relative_to(ASSETS).as_posix() for p in ASSETS.rglob("*.css"))
SIGN_IN_URL = "/api/auth/signin"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}
# Hooks the browser tests rely on that are in the static document (the rest are made by the JS).
STATIC_TEST_IDS = [
    "create-form",
    "key-name",
    *(f"scope-{scope}" for scope in SCOPES),
    "expiry",
    "expiry-custom",
    "create-button",
    "token-panel",
    "token-value",
    "copy-button",
    "token-done",
    "confirm-revoke",
    "token-note",
    "expiring-soon",
    "rotate-dialog",
    "confirm-rotate",
    "cancel-rotate",
    "error-name",
    "error-scopes",
    "error-expires_in_days",
    "page-alert",
]


@contextmanager
def page_client(
    *, dev_mode: bool = False, sign_in_url: str = SIGN_IN_URL
) -> Iterator[TestClient[Any]]:
    app = create_app(Settings(database_url="memory:", auth_secrets=(SECRET,), public_url=ORIGIN))
    app.state.dev_mode = dev_mode
    app.state.sign_in_url = sign_in_url
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.text = ""


class Document(HTMLParser):
    """Every element with its attributes; the text directly inside <script>, <style>, <label>."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []
        self.text: list[str] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag in {"script", "style", "label", "legend"}:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1].tag == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for element in self.open:
            element.text += data

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def by_testid(self, testid: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("data-testid") == testid]
        return found

    @property
    def plain_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def _assert_security_headers(response: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name)


def _assert_no_inline_code(source: str) -> None:
    document = Document(source)
    for script in document.all("script"):
        assert script.attrs.get("src"), "a <script> without src"
        assert not script.text.strip(), "a <script> with inline code"
    assert not document.all("style"), "a <style> element"
    for element in document.elements:
        for name, value in element.attrs.items():
            assert name != "style", f"style= on <{element.tag}>"
            assert not name.startswith("on"), f"{name}= on <{element.tag}>"
            assert not (value or "").strip().lower().startswith("javascript:"), element.tag


def _assert_every_control_labelled(source: str) -> None:
    document = Document(source)
    labelled = {label.attrs.get("for") for label in document.all("label")}
    controls = [
        e
        for e in document.elements
        if e.tag in {"input", "select", "textarea"} and e.attrs.get("type") != "hidden"
    ]
    assert controls
    for control in controls:
        assert control.attrs.get("id") in labelled or control.attrs.get("aria-label"), (
            control.tag,
            control.attrs,
        )
    ids = [e.attrs["id"] for e in document.elements if e.attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"


# ---- signed out ------------------------------------------------------------------------------


def test_signed_out_gets_a_sign_in_page_that_comes_back_here() -> None:
    with page_client() as client:
        response = client.get(PAGE)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    document = Document(response.text)
    link = document.by_testid("sign-in-link")
    assert link.attrs["href"] == f"{SIGN_IN_URL}?callbackUrl={PAGE}"
    assert "Sign in" in document.plain_text
    assert "anthra-keys serve" not in response.text
    _assert_security_headers(response)
    _assert_no_inline_code(response.text)


def test_a_sign_in_url_with_a_query_keeps_it_and_is_escaped() -> None:
    with page_client(sign_in_url='https://studio.example/signin?x=1&y="2"') as client:
        response = client.get(PAGE)
    link = Document(response.text).by_testid("sign-in-link")
    assert link.attrs["href"] == f'https://studio.example/signin?x=1&y="2"&callbackUrl={PAGE}'
    assert '"2"' not in response.text  # the quote is escaped, not closing the attribute


def test_in_development_mode_the_sign_in_page_points_to_the_served_link() -> None:
    with page_client(dev_mode=True) as client:
        response = client.get(PAGE)
    assert response.status_code == 401
    text = Document(response.text).plain_text
    assert "follow the sign-in link" in text
    assert "anthra-keys serve" in text
    assert SIGN_IN_URL not in response.text
    _assert_security_headers(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": f"authjs.session-token={session_cookie('alice', secret='another-secret-' * 3)}"},
        {"Cookie": "authjs.session-token=garbage"},
        {"Cookie": "unrelated=1"},
    ],
    ids=["wrong-secret", "garbage", "no-session-cookie"],
)
def test_a_cookie_that_is_no_session_is_signed_out(headers: dict[str, str]) -> None:
    with page_client() as client:
        response = client.get(PAGE, headers=headers)
    assert response.status_code == 401
    assert Document(response.text).by_testid("sign-in-link")


def test_a_token_does_not_open_the_page() -> None:
    """Pages take sessions only: a bearer token gets the sign-in page, never the key manager."""
    with page_client() as client:
        key = mint(client, scopes=list(SCOPES))
        response = client.get(PAGE, headers=bearer(key["token"]))
    assert response.status_code == 401
    assert 'data-testid="create-form"' not in response.text


# ---- signed in -------------------------------------------------------------------------------


def test_signed_in_gets_the_page_with_every_scope_and_its_description() -> None:
    with page_client() as client:
        response = client.get(PAGE, headers=signed_in_as("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    document = Document(response.text)
    assert document.all("html")[0].attrs.get("lang") == "en"
    text = document.plain_text
    assert "Pick the narrowest set of scopes that does the job." in text
    for scope, description in SCOPES.items():
        box = document.by_testid(f"scope-{scope}")
        assert box.attrs["type"] == "checkbox" and box.attrs["value"] == scope
        assert "checked" not in box.attrs, f"{scope} is ticked by default"
        assert " ".join(description.split()) in text
    boxes = [e for e in document.all("input") if e.attrs.get("name") == "scopes"]
    assert [b.attrs["value"] for b in boxes] == list(SCOPES)
    # scripts and styles come from the asset routes only: one module, which imports the rest
    scripts = document.all("script")
    assert [(s.attrs["src"], s.attrs.get("type")) for s in scripts] == [
        ("/account/assets/js/main.js", "module")
    ]
    sheets = [e.attrs["href"] for e in document.all("link") if e.attrs.get("rel") == "stylesheet"]
    assert sheets == ["/account/assets/api-keys.css"]
    _assert_security_headers(response)


def test_the_expiry_choices_default_to_30_days() -> None:
    with page_client() as client:
        source = client.get(PAGE, headers=signed_in_as("alice")).text
    document = Document(source)
    options = document.all("option")
    assert [o.attrs["value"] for o in options] == ["7", "30", "60", "90", "365", "custom", "never"]
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == ["30"]
    custom = document.by_testid("expiry-custom")
    assert (custom.attrs["type"], custom.attrs["min"], custom.attrs["max"]) == (
        "number",
        "1",
        "3650",
    )
    name = document.by_testid("key-name")
    assert "required" in name.attrs and name.attrs["maxlength"] == "100"
    assert "rotating keys is safer" in document.plain_text.lower()


def test_the_page_is_the_same_static_document_for_everyone() -> None:
    with page_client() as client:
        alice = client.get(PAGE, headers=signed_in_as("alice"))
        bob = client.get(PAGE, headers=signed_in_as("bob"))
    assert alice.content == bob.content
    assert "alice" not in alice.text


def test_the_page_has_the_hooks_browser_tests_use() -> None:
    with page_client() as client:
        document = Document(client.get(PAGE, headers=signed_in_as("alice")).text)
    for testid in STATIC_TEST_IDS:
        document.by_testid(testid)
    assert document.by_testid("page-alert").attrs.get("role") == "alert"
    for field in ("name", "scopes", "expires_in_days"):
        assert document.by_testid(f"error-{field}").attrs.get("role") == "alert"
    assert "hidden" in document.by_testid("token-panel").attrs
    assert "hidden" in document.by_testid("expiring-soon").attrs, "shown only when there are any"
    assert [d.attrs["id"] for d in document.all("dialog")] == ["confirm-dialog", "rotate-dialog"]


def test_no_inline_script_or_style_anywhere() -> None:
    with page_client() as client:
        page = client.get(PAGE, headers=signed_in_as("alice")).text
        sign_in = client.get(PAGE).text
    with page_client(dev_mode=True) as client:
        dev_sign_in = client.get(PAGE).text
    for source in (page, sign_in, dev_sign_in):
        _assert_no_inline_code(source)


def test_every_control_has_a_label_and_scopes_a_fieldset() -> None:
    with page_client() as client:
        source = client.get(PAGE, headers=signed_in_as("alice")).text
    _assert_every_control_labelled(source)
    document = Document(source)
    assert "Scopes" in [e.text.strip() for e in document.all("legend")]
    headings = [e.tag for e in document.elements if e.tag in {"h1", "h2", "h3"}]
    assert headings[0] == "h1" and headings.count("h1") == 1


# ---- assets ----------------------------------------------------------------------------------


def test_the_page_is_split_into_modules() -> None:
    assert "js/main.js" in SCRIPTS and "js/api.js" in SCRIPTS
    assert [s for s in SCRIPTS if s.startswith("js/render/")], "no render modules"
    assert STYLES == ["api-keys.css"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [(name, "text/javascript; charset=utf-8") for name in SCRIPTS]
    + [(name, "text/css; charset=utf-8") for name in STYLES],
)
def test_assets_are_served_with_their_types(name: str, content_type: str) -> None:
    expected = (ASSETS / name).read_bytes()
    with page_client() as client:
        response = client.get(f"/account/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == expected
    _assert_security_headers(response)


@pytest.mark.parametrize(
    "name",
    [
        "api-keys.html",
        "page.py",
        "other.js",
        "api-keys.JS",
        "api-keys.js",
        "js/nope.js",
        "js",
        "js/render",
        "js/Main.js",
        "..%2Fpage.py",
        "js/..%2F..%2Fpage.py",
        "%2e%2e",
        "",
    ],
)
def test_any_other_asset_is_not_found(name: str) -> None:
    with page_client() as client:
        response = client.get(f"/account/assets/{name}")
    assert response.status_code == 404
    assert b"create-form" not in response.content and b"SCOPES" not in response.content
    assert response.json()["error"] == "not_found"


def test_an_unknown_asset_carries_the_security_headers() -> None:
    with page_client() as client:
        response = client.get("/account/assets/secrets.txt")
    assert response.status_code == 404
    _assert_security_headers(response)


def _script(name: str) -> str:
    return (ASSETS / name).read_text("utf-8")


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_script_keeps_the_token_out_of_storage_and_builds_no_markup(name: str) -> None:
    script = _script(name)
    for forbidden in (
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "document.cookie",
        "pushState",
        "replaceState",
        "location.hash",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "console.",
        ".style.",
    ):
        assert forbidden not in script, forbidden


def test_every_request_sends_the_session_cookie_and_says_json() -> None:
    api = _script("js/api.js")
    assert 'credentials: "same-origin"' in api
    assert '"Content-Type"' in api


def test_every_response_carries_the_security_headers() -> None:
    with page_client() as client:
        responses = [
            client.get(PAGE),
            client.get(PAGE, headers=signed_in_as("alice")),
            client.get("/account/assets/js/main.js"),
            client.get("/account/assets/api-keys.css"),
            client.get(CONFIG),
            client.get("/account/assets/nope.js"),
        ]
    with page_client(dev_mode=True) as client:
        responses.append(client.get(PAGE))
    for response in responses:
        _assert_security_headers(response)


def test_the_page_is_not_in_the_api_schema() -> None:
    with page_client() as client:
        paths = client.get("/schema/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/account")]


def test_the_page_uses_only_the_public_api() -> None:
    """One fetch in all the scripts, in api.js; it goes to /api/v1 or the page's config
    document: no private endpoints."""
    fetches = {name: _script(name).count("fetch(") for name in SCRIPTS}
    assert {name: n for name, n in fetches.items() if n} == {"js/api.js": 1}
    api = _script("js/api.js")
    assert 'const API = "/api/v1";' in api
    assert f'const CONFIG = "{CONFIG}";' in api
    assert "fetch(url, init)" in api
    # every request is made by request(), to a URL built from those two
    assert re.findall(r'request\("\w+", ([^,)]+)', api) == [
        "CONFIG",
        "`${API}/account`",
        "`${API}/keys`",
        "`${API}/keys`",
        "keyUrl(keyId",
        "keyUrl(keyId",
        "keyUrl(keyId",
        "keyUrl(keyId",
        "keyUrl(keyId",
        "keyUrl(keyId",
    ]
    assert 'const keyUrl = (id, rest = "") => `${API}/keys/' in api


@pytest.mark.parametrize("name", [s for s in SCRIPTS if s.startswith("js/render/")])
def test_the_renderers_only_turn_data_into_nodes(name: str) -> None:
    """No request, no page state, no event handlers, no looking things up in the document."""
    script = _script(name)
    imports = re.findall(r'from "([^"]+)"', script)
    assert all(i == "../dom.js" or (i.startswith("./") and "/" not in i[2:]) for i in imports), (
        imports
    )
    for forbidden in ("api.js", "state.js", "addEventListener", "getElementById", "querySelector"):
        assert forbidden not in script, forbidden


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_is_short(name: str) -> None:
    assert len(_script(name).splitlines()) < 200


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_copies_a_server_rule(name: str) -> None:
    """Limits and scopes come from the config document; actors come taken apart from the API."""
    script = _script(name)
    for copied in (*SCOPES, str(MAX_EXPIRY_DAYS), str(MAX_GRACE_SECONDS)):
        assert copied not in script, copied
    assert not re.search(r"[\"'`](user|key|operator):", script), "an actor string taken apart"
    assert not re.search(rf"\b{MAX_NAME_LENGTH}\b", script)


# ---- the config document ---------------------------------------------------------------------


def test_the_config_document_is_the_domains_own_rules() -> None:
    with page_client() as client:
        response = client.get(CONFIG)  # no session needed: it is the same for everyone
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    _assert_security_headers(response)
    config = response.json()
    assert config["scopes"] == [
        {"scope": scope, "description": description} for scope, description in SCOPES.items()
    ]
    assert config["name_max_length"] == MAX_NAME_LENGTH
    assert (config["expiry_min_days"], config["expiry_max_days"]) == (
        MIN_EXPIRY_DAYS,
        MAX_EXPIRY_DAYS,
    )
    presets = config["expiry_preset_days"]
    assert presets == sorted(set(presets))
    assert all(MIN_EXPIRY_DAYS <= days <= MAX_EXPIRY_DAYS for days in presets)
    assert config["expiry_default_days"] in presets
    # The window of the "Expiring soon" list is the API's own (the account's expiring_soon)
    assert config["expiry_warning_days"] == EXPIRY_WARNING_DAYS
    graces = config["grace_preset_seconds"]
    assert graces == sorted(set(graces)) and graces[0] == 0
    assert config["grace_max_seconds"] == MAX_GRACE_SECONDS == graces[-1]
    assert config["grace_default_seconds"] in graces


def test_the_rotate_dialog_offers_the_grace_presets() -> None:
    with page_client() as client:
        config = client.get(CONFIG).json()
        document = Document(client.get(PAGE, headers=signed_in_as("alice")).text)
    radios = [e for e in document.all("input") if e.attrs.get("name") == "grace"]
    assert [r.attrs["value"] for r in radios] == [str(s) for s in config["grace_preset_seconds"]]
    assert [r.attrs["value"] for r in radios if "checked" in r.attrs] == [
        str(config["grace_default_seconds"])
    ]
    assert [r.attrs["data-testid"] for r in radios] == [f"grace-{r.attrs['value']}" for r in radios]
    labels = {e.attrs["for"]: " ".join(e.text.split()) for e in document.all("label")}
    assert [labels[r.attrs["id"]] for r in radios] == [
        "Stop the old key now",
        "Keep it working for 1 hour",
        "Keep it working for 24 hours",
    ]
    assert "The old key" in [e.text.strip() for e in document.all("legend")]


def test_a_rotation_sends_one_idempotency_key_per_confirmation() -> None:
    api = _script("js/api.js")
    assert '"Idempotency-Key": idempotencyKey' in api
    rotate = _script("js/rotate-key.js")
    # made once, before the attempts, and retried only when no answer arrived (status 0)
    assert rotate.index("newIdempotencyKey();") < rotate.index("for (let attempt")
    assert "err.status !== 0" in rotate


def test_the_form_offers_what_the_config_document_says() -> None:
    with page_client() as client:
        config = client.get(CONFIG).json()
        document = Document(client.get(PAGE, headers=signed_in_as("alice")).text)
    options = document.all("option")
    presets = [str(days) for days in config["expiry_preset_days"]]
    assert [o.attrs["value"] for o in options] == [*presets, "custom", "never"]
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == [
        str(config["expiry_default_days"])
    ]
    custom = document.by_testid("expiry-custom")
    assert (custom.attrs["min"], custom.attrs["max"]) == (
        str(config["expiry_min_days"]),
        str(config["expiry_max_days"]),
    )
    assert document.by_testid("key-name").attrs["maxlength"] == str(config["name_max_length"])
    boxes = [e.attrs["value"] for e in document.all("input") if e.attrs.get("name") == "scopes"]
    assert boxes == [s["scope"] for s in config["scopes"]]
    text = document.plain_text
    assert f"up to {config['name_max_length']} characters" in text
    assert f"({config['expiry_min_days']}\N{EN DASH}{config['expiry_max_days']})" in text
    assert "{{" not in document.plain_text


# ---- what the page reads from the API --------------------------------------------------------


def test_the_history_says_who_acted_without_the_actor_to_take_apart() -> None:
    with page_client() as client:
        key = mint(client, scopes=["books:read"])
        path = f"/api/v1/keys/{key['id']}"
        session = SAME_ORIGIN | signed_in_as("alice")
        client.put(f"{path}/scopes", json={"scopes": ["account:read"]}, headers=session)
        client.delete(path, headers=bearer(key["token"]))  # the key revokes itself
        events = client.get(f"{path}/history", headers=signed_in_as("alice")).json()["events"]
    # Each event's actor as the page shows it: kind and id, next to the recorded string
    assert [(e["actor"], e["actor_kind"], e["actor_id"]) for e in events] == [
        ("user:alice", "user", "alice"),
        ("user:alice", "user", "alice"),
        (f"key:{key['id']}", "key", key["id"]),
    ]
    # A scope change says what it added and removed, and whether it widened the key
    scopes_set = events[1]
    assert (scopes_set["added"], scopes_set["removed"], scopes_set["widened"]) == (
        ["account:read"],
        ["books:read"],
        True,
    )


def test_a_rotation_and_a_suspension_answer_what_the_page_shows() -> None:
    with page_client() as client:
        old = mint(client, name="CI deploy", scopes=["books:read"], expires_in_days=30)
        session = SAME_ORIGIN | signed_in_as("alice")
        keys = "/api/v1/keys"
        rotated = client.post(
            f"{keys}/{old['id']}/rotate",
            json={"grace_seconds": 3600},
            headers=session | {"Idempotency-Key": "3f2b0c1e-page-test"},
        )
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()
        suspended = client.post(f"{keys}/{new['id']}/suspend", headers=session)
        resumed = client.post(f"{keys}/{new['id']}/resume", headers=session)
        old_history = client.get(f"{keys}/{old['id']}/history", headers=session).json()
        new_history = client.get(f"{keys}/{new['id']}/history", headers=session).json()
    # The successor: its token once, the old key's name and scopes, and when the old one stops
    assert set(new) >= {"id", "token", "prefix", "name", "scopes", "created_at", "expires_at"}
    assert (new["name"], new["scopes"], new["predecessor_id"]) == (
        "CI deploy",
        ["books:read"],
        old["id"],
    )
    assert new["predecessor_retires_at"]
    # Suspend and resume answer the key, which the page puts in its row (the statuses
    # themselves are the key states' tests)
    for answer in (suspended, resumed):
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == new["id"] and "status" in answer.json()
    # The lineage both ways, by id: the page looks the names up in its list
    rotated_event = old_history["events"][-1]
    assert rotated_event["type"] == "Rotated"
    assert rotated_event["successor_id"] == new["id"]
    assert rotated_event["retires_at"]
    assert new_history["events"][0]["predecessor_id"] == old["id"]
    assert [e["type"] for e in new_history["events"]] == ["Minted", "Suspended", "Resumed"]


# ---- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "signed_in", "content_type"),
    [
        (PAGE, True, "text/html; charset=utf-8"),
        (PAGE, False, "text/html; charset=utf-8"),
        (CONFIG, False, "application/json"),
        ("/account/assets/js/main.js", False, "text/javascript; charset=utf-8"),
        ("/account/assets/api-keys.css", False, "text/css; charset=utf-8"),
    ],
)
def test_every_response_names_its_charset_once(
    path: str, signed_in: bool, content_type: str
) -> None:
    with page_client() as client:
        response = client.get(path, headers=signed_in_as("alice") if signed_in else {})
    assert response.headers["content-type"] == content_type

"""The key-management page, /account/api-keys: static HTML, CSS and JS that call the public API.

The page is the same document for everyone; all data comes from `/api/v1/*` with the session
cookie, the API integrations use. A visitor who is not signed in gets a sign-in page instead.
What the create form offers and checks (the scopes, the name's length, the expiry choices) is
rendered into the page and served as `config.json` from one `PageConfig`, built from the
domain's own constants, so the script never copies a server limit.
Every response of this controller carries a strict Content-Security-Policy (no inline script or
style anywhere) and is never cached.
"""

from __future__ import annotations

import html
import logging
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from api import problems
from api.account import EXPIRY_WARNING_DAYS
from domain.api_key import MAX_EXPIRY_DAYS, MAX_GRACE_SECONDS, MAX_NAME_LENGTH, MIN_EXPIRY_DAYS
from domain.scopes import SCOPES

log = logging.getLogger("anthra.page")

PAGE_PATH = "/account/api-keys"
DEFAULT_SIGN_IN_URL = "/api/auth/signin"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# Bare types: Litestar appends "; charset=utf-8" to every text/* type itself.
HTML = "text/html"
JSON = "application/json"
ASSET_TYPES: dict[str, str] = {".js": "text/javascript", ".css": "text/css"}
EXPIRY_PRESET_DAYS = (7, 30, 60, 90, 365)
DEFAULT_EXPIRY_DAYS = 30
# How long the old key keeps working after a rotation, as the rotate dialog offers it.
GRACE_PRESET_SECONDS = (0, 3600, MAX_GRACE_SECONDS)
DEFAULT_GRACE_SECONDS = 3600


class ScopeChoice(msgspec.Struct, frozen=True):
    """A scope the form offers, with what it grants."""

    scope: str
    description: str


class PageConfig(msgspec.Struct, frozen=True):
    """What the create and edit forms offer and check: the domain's rules, in one document."""

    scopes: list[ScopeChoice]
    name_max_length: int
    expiry_min_days: int
    expiry_max_days: int
    expiry_preset_days: list[int]
    expiry_default_days: int
    # Live keys that expire this soon are listed at the top and flagged in the table.
    expiry_warning_days: int
    grace_preset_seconds: list[int]
    grace_default_seconds: int
    grace_max_seconds: int


@cache
def page_config() -> PageConfig:
    """The scopes in canonical order, the name and expiry limits, and the expiry presets."""
    return PageConfig(
        scopes=[ScopeChoice(scope, description) for scope, description in SCOPES.items()],
        name_max_length=MAX_NAME_LENGTH,
        expiry_min_days=MIN_EXPIRY_DAYS,
        expiry_max_days=MAX_EXPIRY_DAYS,
        expiry_preset_days=list(EXPIRY_PRESET_DAYS),
        expiry_default_days=DEFAULT_EXPIRY_DAYS,
        expiry_warning_days=EXPIRY_WARNING_DAYS,
        grace_preset_seconds=list(GRACE_PRESET_SECONDS),
        grace_default_seconds=DEFAULT_GRACE_SECONDS,
        grace_max_seconds=MAX_GRACE_SECONDS,
    )


def _assets_folder() -> Traversable:
    return resources.files("api").joinpath("page_assets")


def _asset_text(name: str) -> str:
    folder = _assets_folder()
    for part in name.split("/"):
        folder = folder.joinpath(part)
    return folder.read_text(encoding="utf-8")


@cache
def asset_types() -> dict[str, str]:
    """Every script and style sheet under page_assets, by its path there: all that is served."""
    found: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif (suffix := PurePosixPath(entry.name).suffix) in ASSET_TYPES:
                found[prefix + entry.name] = ASSET_TYPES[suffix]

    walk(_assets_folder(), "")
    return found


@cache
def _asset(name: str) -> bytes:
    return _asset_text(name).encode("utf-8")


def scope_checkboxes(config: PageConfig) -> str:
    """The create form's scope checkboxes, one per scope, none ticked."""
    items = []
    for choice in config.scopes:
        s = html.escape(choice.scope, quote=True)
        items.append(
            f'<li class="scope-option">'
            f'<input type="checkbox" name="scopes" value="{s}" id="scope-{s}" '
            f'data-testid="scope-{s}" aria-describedby="scope-{s}-desc">'
            f'<label for="scope-{s}"><code class="scope-name">{s}</code> '
            f'<span class="scope-desc" id="scope-{s}-desc">{html.escape(choice.description)}</span>'
            f"</label></li>"
        )
    return "\n".join(items)


def expiry_options(config: PageConfig) -> str:
    """The expiry choices: the presets (the default selected), then custom, then none."""
    options = [
        f'<option value="{days}"{" selected" if days == config.expiry_default_days else ""}>'
        f"In {days} days</option>"
        for days in config.expiry_preset_days
    ]
    options += [
        '<option value="custom">Custom…</option>',
        '<option value="never">No expiry</option>',
    ]
    return "\n".join(options)


def grace_label(seconds: int) -> str:
    """A grace period in words: "Stop the old key now", "Keep it 1 hour", "Keep it 24 hours"."""
    if seconds == 0:
        return "Stop the old key now"
    hours, rest = divmod(seconds, 3600)
    if rest == 0:
        return f"Keep it working for {hours} hour{'' if hours == 1 else 's'}"
    minutes = -(-seconds // 60)
    return f"Keep it working for {minutes} minute{'' if minutes == 1 else 's'}"


def grace_options(config: PageConfig) -> str:
    """The rotate dialog's grace choices, one radio button each, the default checked."""
    items = []
    for seconds in config.grace_preset_seconds:
        checked = " checked" if seconds == config.grace_default_seconds else ""
        items.append(
            f'<li class="grace-option">'
            f'<input type="radio" name="grace" value="{seconds}" id="grace-{seconds}" '
            f'data-testid="grace-{seconds}"{checked}>'
            f'<label for="grace-{seconds}">{html.escape(grace_label(seconds))}</label></li>'
        )
    return "\n".join(items)


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@cache
def _config_json() -> bytes:
    return msgspec.json.encode(page_config())


@cache
def page_html() -> bytes:
    """The page: the static document with the form's choices and limits from `page_config`."""
    config = page_config()
    values = {
        "scope_checkboxes": scope_checkboxes(config),
        "expiry_options": expiry_options(config),
        "grace_options": grace_options(config),
        "name_max_length": str(config.name_max_length),
        "expiry_min_days": str(config.expiry_min_days),
        "expiry_max_days": str(config.expiry_max_days),
    }
    document = _asset_text("api-keys.html")
    missing = set(values) - set(_PLACEHOLDER.findall(document))
    if missing:
        raise RuntimeError(f"api-keys.html lacks the placeholders {sorted(missing)}")

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise RuntimeError(f"api-keys.html has an unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, document).encode("utf-8")


def _document(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} · Anthra</title>\n"
        '<link rel="icon" href="data:,">\n'
        '<link rel="stylesheet" href="/account/assets/api-keys.css">\n'
        '</head>\n<body>\n<main id="main" class="narrow">\n'
        f"{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def sign_in_html(*, dev_mode: bool, sign_in_url: str) -> bytes:
    """What a visitor without a session sees: how to sign in, then come back here."""
    if dev_mode:
        how = (
            '<p class="notice" data-testid="dev-sign-in">Development mode: follow the sign-in '
            "link that <code>anthra-keys serve</code> printed in its terminal "
            "(<code>…/account/sign-in/local?code=…</code>). It signs you in as the local "
            "developer and brings you back here.</p>"
        )
    else:
        separator = "&" if "?" in sign_in_url else "?"
        href = html.escape(f"{sign_in_url}{separator}callbackUrl={PAGE_PATH}", quote=True)
        how = (
            f'<p><a class="button button-primary" href="{href}" data-testid="sign-in-link">'
            "Sign in</a></p>"
            "<p>After signing in you will come back to this page.</p>"
        )
    body = (
        "<h1>Sign in to manage your API keys</h1>\n"
        "<p>API keys (personal access tokens) are created, scoped and revoked here. "
        "You need to be signed in to Anthra to see them.</p>\n"
        f"{how}"
    )
    return _document("Sign in", body)


def _respond(body: bytes, *, status: int = 200, media_type: str = HTML) -> Response[bytes]:
    return Response(body, status_code=status, media_type=media_type, headers=dict(SECURITY_HEADERS))


def _error_page(status: int, title: str, message: str) -> Response[bytes]:
    body = _document(title, f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(message)}</p>")
    return _respond(body, status=status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return _error_page(exc.status_code, "Something is not right", str(exc.detail))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(
        500, "Something went wrong", "An internal error occurred; it has been logged."
    )


class AccountPage(Controller):
    """The API-keys page, its config document and its scripts and style sheet."""

    path = "/account"
    tags = ["page"]
    include_in_schema = False
    exception_handlers = {HTTPException: _http_error, Exception: _unexpected}

    @get("/api-keys")
    async def api_keys(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The page when signed in; otherwise a page saying how to sign in."""
        state = request.app.state
        try:
            principal = await state.authenticator.session_principal(request.scope)
        except problems.AuthProblem:
            response = _error_page(
                503,
                "Temporarily unavailable",
                "Your session could not be checked just now. Reload the page in a moment.",
            )
            response.headers["Retry-After"] = "1"
            return response
        if principal is None:
            body = sign_in_html(
                dev_mode=bool(state.get("dev_mode", False)),
                sign_in_url=str(state.get("sign_in_url") or DEFAULT_SIGN_IN_URL),
            )
            return _respond(body, status=401)
        return _respond(page_html())

    @get("/api-keys/config.json")
    async def config(self) -> Response[bytes]:
        """What the page's forms offer and check; the same for everyone, so no session needed."""
        return _respond(_config_json(), media_type=JSON)

    @get("/assets/{name:path}")
    async def asset(self, name: FromPath[str]) -> Response[bytes]:
        """A script or style sheet of the page, by its path under page_assets; else 404."""
        name = name.removeprefix("/")
        media_type = asset_types().get(name)
        if media_type is None:
            # The JSON error body every other refusal has (its security headers too).
            return _respond(
                problems.error_body("not_found", "no such asset of the keys page"),
                status=404,
                media_type=JSON,
            )
        return _respond(_asset(name), media_type=media_type)

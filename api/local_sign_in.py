"""Local sign-in for development: a genuine Auth.js session cookie for a local user, loopback only.

In development mode (no AUTH_SECRET, serving on loopback) `anthra-keys serve` makes a random
secret and a sign-in code for the run and prints a link; following it sets the same JWE the
verifier accepts from a real Auth.js app, then lands on the keys page. Anywhere else it is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import Cookie
from litestar.params import FromQuery
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_403_FORBIDDEN

from api.authjs import SessionCookieCodec
from infra.settings import is_loopback

COOKIE_NAME = "authjs.session-token"
SESSION_DAYS = 30
PAGE = "/account/api-keys"


def _refuse(reason: str) -> Response[str]:
    return Response(
        f"Local sign-in refused: {reason}\n",
        status_code=HTTP_403_FORBIDDEN,
        media_type="text/plain",
    )


def _from_loopback(request: Request[Any, Any, Any]) -> bool:
    client = request.client.host if request.client else ""
    try:
        client_is_loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        client_is_loopback = False
    # The Host header too: a page on another site rebinding its name to 127.0.0.1 sends its own.
    host = request.headers.get("host", "").rsplit(":", 1)[0]
    return client_is_loopback and is_loopback(host)


@get("/account/sign-in/local", include_in_schema=False, tags=["page"])
async def local_sign_in(
    request: Request[Any, Any, Any], code: FromQuery[str] = ""
) -> Response[Any]:
    """Sign in as the local developer with the link `anthra-keys serve` printed."""
    state = request.app.state
    if not state.dev_mode:
        return _refuse(
            "the service is not in development mode (AUTH_SECRET is set, or it "
            "does not serve on loopback only). Sign in through your Auth.js app."
        )
    if not _from_loopback(request):
        return _refuse(
            "local sign-in is only for requests from this machine to a loopback address."
        )
    if not code or not hmac.compare_digest(code.encode(), state.dev_sign_in_code.encode()):
        return _refuse("this is not the sign-in link `anthra-keys serve` printed for this run.")
    codec: SessionCookieCodec = state.session_codec
    value = codec.encode(
        {"sub": state.dev_user, "name": "Local developer"},
        COOKIE_NAME,
        max_age=SESSION_DAYS * 86_400,
    )
    return Response(
        "",
        status_code=HTTP_303_SEE_OTHER,
        headers={"Location": PAGE, "Referrer-Policy": "no-referrer"},
        cookies=[
            Cookie(
                key=COOKIE_NAME,
                value=value,
                path="/",
                max_age=SESSION_DAYS * 86_400,
                httponly=True,
                samesite="lax",
                secure=False,
            )
        ],
    )

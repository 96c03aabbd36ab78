"""The HTTP floors: a Litestar hello world and a msgspec echo, nothing else.

    .venv/bin/python -m uvicorn bench.floors:app --workers N --no-server-header

`GET /` returns a small JSON object; `POST /echo` decodes `{token, scopes}` into a msgspec
Struct and returns it. No middleware, no dependencies, no database: what any Litestar service
on the same server settings pays before it does its own work.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, get, post


class Echo(msgspec.Struct, frozen=True):
    """The shape of a verify request."""

    token: str
    scopes: list[str] = []


@get("/")
async def hello() -> dict[str, str]:
    """A small JSON body."""
    return {"hello": "world"}


@post("/echo", status_code=200)
async def echo(data: Echo) -> Echo:
    """The request body, decoded and encoded again."""
    return data


app = Litestar(route_handlers=[hello, echo])

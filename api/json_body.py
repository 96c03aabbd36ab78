"""Every JSON request body, read one way: as JSON, strictly, into the handler's own type.

Litestar would decode any body as JSON whatever its Content-Type, into plain objects first
(unbounded nesting overflowed the C stack), keep the last of two equal keys, and then coerce
`"30"` and `1.0` into the integer a field wants. Here the body must say it is JSON, is nested at
most `MAX_NESTING` deep, names each key once, and is decoded straight into the handler's Struct
with no coercion; each refusal names the field at fault.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

MAX_NESTING = 32
JSON_MEDIA_TYPE = "application/json"
# Whole string tokens (escapes included) and the structural characters between them.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:]')
# A string followed by a colon is a key: in a single flat object, those are all its keys.
_STRINGS = re.compile(rb'("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?')
_PATH = re.compile(r" - at `\$\.?([A-Za-z0-9_]*)")
# At the top level msgspec names the field in its words: "Object missing required field `name`".
_NAMED = re.compile(r"field `([^`]*)`")
# The name Litestar gives a handler's body parameter; every handler here calls it that.
BODY_PARAMETER = "data"


class JSONBodyRequest(Request[Any, Any, Any]):
    """A request whose `json()` is the strict reading of the body into the handler's data type."""

    async def json(self) -> Any:
        if self._json is Empty:
            media_type, _ = self.content_type
            if media_type.lower() != JSON_MEDIA_TYPE:
                raise HTTPException(
                    status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                    detail=f"send the body as {JSON_MEDIA_TYPE}",
                )
            data_field = self.route_handler.parsed_data_field
            target = data_field.annotation if data_field is not None else Any
            self._json = decode(await self.body(), target)
        return self._json


def decode(body: bytes, into: Any) -> Any:
    """The body as an instance of `into`; raises ValidationException naming the field at fault."""
    opened = body.count(b"{") + body.count(b"[")
    if opened > MAX_NESTING:
        # Before any decoding: a decoder would recurse once per level.
        _check_structure(body)
    try:
        value = msgspec.json.decode(body, type=into, strict=True)
    except msgspec.ValidationError as e:
        raise _invalid(str(e)) from None
    except msgspec.DecodeError:
        raise _invalid("the body is not valid JSON") from None
    if opened <= MAX_NESTING and b"{" in body:
        _check_structure(body)
    return value


def _check_structure(body: bytes) -> None:
    """Refuse nesting deeper than MAX_NESTING and an object that names a key twice."""
    if body.count(b"{") == 1 and body.count(b"[") <= MAX_NESTING:
        keys = [_key(s) for s, colon in _STRINGS.findall(body) if colon]
        if len(keys) != len(set(keys)):
            raise _invalid("a key appears twice in one object")
        return
    open_objects: list[set[str] | None] = []
    last = b""
    for token in _TOKENS.findall(body):
        first = token[:1]
        if first == b'"':
            last = token
        elif first == b":":
            keys_seen = open_objects[-1] if open_objects else None
            if keys_seen is not None:
                key = _key(last)
                if key in keys_seen:
                    raise _invalid("a key appears twice in one object")
                keys_seen.add(key)
        elif first in (b"{", b"["):
            open_objects.append(set() if first == b"{" else None)
            if len(open_objects) > MAX_NESTING:
                raise _invalid(f"the body is nested more than {MAX_NESTING} levels deep")
        elif open_objects:
            open_objects.pop()


def _key(token: bytes) -> str:
    """A key as its object holds it: "\u0061" and "a" are the same key."""
    if b"\\" in token:
        try:
            return str(msgspec.json.decode(token))
        except msgspec.DecodeError:
            pass
    return token[1:-1].decode("utf-8", "replace")


def _invalid(message: str) -> ValidationException:
    """msgspec says `Expected int, got str - at $.expires_in_days`: the field is its first step."""
    found = _PATH.search(message)
    field = found[1] if found and found[1] else None
    text = message[: found.start()] if found else message
    if field is None and (named := _NAMED.search(text)) is not None:
        field = named[1]
    return ValidationException(detail=text, extra=[{"key": field, "message": text}])

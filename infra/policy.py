"""The gateway's route policy: which scope each method and path needs, loaded from TOML.

```toml
[[route]]
method = "GET"                 # or "*", or a list such as ["GET", "POST"]; GET also covers HEAD
path = "/api/v1/books/*"       # `*` is one path segment; a final `**` is any number, even none
scope = "books:read"           # or a list: every one is needed

[[route]]
method = "GET"
path = "/public/**"
public = true                  # no token needed
```

The most specific rule wins: a pattern without `**` before one with it, then fewer `*`, then
more segments, then the later first wildcard, then an exact method before `*`, then file order.
A route no rule matches is denied (`match` answers None), and so is a path that cannot be
normalised unambiguously.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from domain.scopes import ALL_SCOPES, SCOPES, in_order

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ANY_METHOD = "*"
_ROUTE_KEYS = frozenset({"method", "path", "scope", "public"})
_DOT_SEGMENTS = frozenset({".", ".."})
# Printable ASCII without space: anything else in a request target is refused, not guessed at.
_URI = re.compile("[\x21-\x7e]+")


Fail = Callable[[str, str], "PolicyError"]


class PolicyError(ValueError):
    """The policy file is unreadable or wrong; the message names the route and field at fault."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One route of the policy: methods, a path pattern, and the scopes it needs or public."""

    index: int
    methods: frozenset[str] | None  # None: any method
    pattern: str
    segments: tuple[str, ...]
    scopes: tuple[str, ...]
    public: bool

    def matches(self, method: str, segments: tuple[str, ...]) -> bool:
        """Whether this rule covers the method and the normalised path's segments."""
        if self.methods is not None and method not in self.methods:
            return False
        pattern = self.segments
        if pattern and pattern[-1] == "**":
            fixed = pattern[:-1]
            if len(segments) < len(fixed):
                return False
        elif len(segments) != len(pattern):
            return False
        else:
            fixed = pattern
        return all(p in ("*", s) for p, s in zip(fixed, segments, strict=False))

    def specificity(self) -> tuple[int, int, int, int, int, int]:
        """A sort key: the smallest is the most specific rule."""
        segments = self.segments
        wildcards = [i for i, s in enumerate(segments) if s in ("*", "**")]
        first_wildcard = wildcards[0] if wildcards else len(segments)
        return (
            # A trailing `**` can swallow anything, so it loses to any bounded pattern.
            int(bool(segments) and segments[-1] == "**"),
            len(wildcards),
            -len(segments),
            -first_wildcard,
            int(self.methods is None),
            self.index,
        )


class Policy:
    """Rules sorted most specific first; `match` answers the rule for a request, or None.

    The rules are compiled once into lookups that give the same answer as trying every rule in
    order: a pattern without wildcards by (method, segments) in one dict look-up (it outranks any
    pattern with one), then the patterns of the path's segment count, then those ending in `**`.
    """

    def __init__(self, rules: Iterable[Rule], source: str = "<policy>") -> None:
        self.rules = sorted(rules, key=Rule.specificity)
        self.source = source
        self._exact: dict[tuple[str, tuple[str, ...]], Rule] = {}
        self._bounded: dict[int, list[Rule]] = {}
        self._open: list[Rule] = []
        for rule in self.rules:
            segments = rule.segments
            if segments and segments[-1] == "**":
                self._open.append(rule)
            elif "*" in segments:
                self._bounded.setdefault(len(segments), []).append(rule)
            else:
                # Sorted order puts an exact method before "*": the first one in keeps the key.
                for method in rule.methods if rule.methods is not None else (ANY_METHOD,):
                    self._exact.setdefault((method, segments), rule)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """The policy in a TOML file; raises PolicyError naming the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"cannot read the policy file {path}: {e}") from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "<policy>") -> Policy:
        """The policy in TOML text; raises PolicyError naming the route index and field."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"{source}: not valid TOML: {e}") from None
        unknown = sorted(set(document) - {"route"})
        if unknown:
            raise PolicyError(f"{source}: unknown top-level key {unknown[0]!r}; use [[route]]")
        routes = document.get("route", [])
        if not isinstance(routes, list):
            raise PolicyError(f"{source}: 'route' must be an array of tables: [[route]]")
        rules = [_rule(source, i, route) for i, route in enumerate(routes, start=1)]
        _refuse_duplicates(source, rules)
        return cls(rules, source)

    def match(self, method: str, path: str) -> Rule | None:
        """The most specific rule for this request target, or None: deny."""
        normalised = normalise_path(path)
        if normalised is None:
            return None
        return self.match_normalised(method, normalised)

    def match_normalised(self, method: str, path: str) -> Rule | None:
        """As `match`, for a path `normalise_path` already answered."""
        method = method.upper()
        segments = _segments(path)
        exact = self._exact
        rule = exact.get((method, segments)) or exact.get((ANY_METHOD, segments))
        if rule is not None:
            return rule
        for rule in self._bounded.get(len(segments), ()):
            if rule.matches(method, segments):
                return rule
        for rule in self._open:
            if rule.matches(method, segments):
                return rule
        return None


class AmbiguousPath(ValueError):
    """A request target that servers could read as different paths; the message says why."""


def normalise_path(target: str) -> str | None:
    """The path of a request target as the policy sees it, or None if it must be denied."""
    try:
        return path_of(target)
    except AmbiguousPath:
        return None


def path_of(target: str) -> str:
    """The path of a request target as the policy sees it: the query stripped, each segment
    percent-decoded once. Raises AmbiguousPath for anything an upstream could read as another
    path: empty segments (`//`), dot segments (`..`, `%2e%2e`, `..;x`, fullwidth dots), encoded
    or raw backslashes, encoded slashes, percent-encoding applied twice, control characters,
    invalid UTF-8, and a target that is not origin-form or an http(s) absolute URI.

    One trailing slash is allowed and ignored (`/books/` is judged as `/books`).
    """
    if not _URI.fullmatch(target):
        raise AmbiguousPath("spaces, control characters and raw non-ASCII are not allowed")
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        # Absolute form, `GET http://host/path`, which nginx passes on in $request_uri.
        parts = urlsplit(path)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise AmbiguousPath("the target is neither a path nor an http(s) URL")
        path = parts.path or "/"
    if "\\" in path:
        raise AmbiguousPath("backslashes are not allowed")
    raw_segments = path[1:].split("/")
    if len(raw_segments) > 1 and raw_segments[-1] == "":
        raw_segments.pop()
    if raw_segments == [""]:
        return "/"
    return "/" + "/".join(_segment(raw) for raw in raw_segments)


def _segment(raw: str) -> str:
    if not raw:
        raise AmbiguousPath("empty segments (//) are not allowed")
    if "%" not in raw:
        # Nothing to decode: printable ASCII with no slash or backslash, so only dots to check.
        if "." in raw:
            _refuse_dots(raw)
        return raw
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise AmbiguousPath("the percent-encoding is not UTF-8") from None
    if "%" in decoded and unquote(decoded) != decoded:
        raise AmbiguousPath("percent-encoding applied twice is not allowed")
    if "/" in decoded or "\\" in decoded:
        raise AmbiguousPath("encoded slashes and backslashes are not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise AmbiguousPath("control characters are not allowed")
    _refuse_dots(decoded)
    if not decoded.isascii():
        # Some servers fold compatibility characters (fullwidth dots and slashes) first.
        folded = unicodedata.normalize("NFKC", decoded)
        if "/" in folded or "\\" in folded:
            raise AmbiguousPath("characters that some servers read as slashes are not allowed")
        _refuse_dots(folded)
    return decoded


def _refuse_dots(segment: str) -> None:
    # `..;x` is `..` to servlet containers; `.. ` and `...` are `..` to some Windows servers.
    name = segment.split(";", 1)[0]
    if "." in name and not name.strip(". "):
        raise AmbiguousPath("dot segments (. and ..), encoded or not, are not allowed")


def _segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/") if s)


def _rule(source: str, index: int, route: Any) -> Rule:
    def fail(field: str, message: str) -> PolicyError:
        return PolicyError(f"{source}: route {index}: {field}: {message}")

    if not isinstance(route, Mapping):
        raise fail("route", "each [[route]] must be a table")
    unknown = sorted(set(route) - _ROUTE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown field; a route has {', '.join(sorted(_ROUTE_KEYS))}")
    methods = _methods(route.get("method"), fail)
    pattern = _pattern(route.get("path"), fail)
    public = route.get("public", False)
    if not isinstance(public, bool):
        raise fail("public", "must be true or false")
    scopes = _scopes(route.get("scope"), fail)
    if public and scopes:
        raise fail("scope", "a public route needs no scope; give one or the other")
    if not public and not scopes:
        raise fail("scope", "give the scope the route needs, or public = true; found neither")
    return Rule(
        index=index,
        methods=methods,
        pattern=pattern,
        segments=_segments(pattern),
        scopes=scopes,
        public=public,
    )


def _methods(value: Any, fail: Fail) -> frozenset[str] | None:
    if value is None:
        raise fail("method", 'missing; give a method such as "GET", a list, or "*"')
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, list) or not given or not all(isinstance(m, str) for m in given):
        raise fail("method", 'must be a method such as "GET", a list of methods, or "*"')
    upper = {m.strip().upper() for m in given}
    if ANY_METHOD in upper:
        if len(upper) > 1:
            raise fail("method", '"*" already means every method; list nothing else with it')
        return None
    unknown = sorted(upper - METHODS)
    if unknown:
        raise fail("method", f"unknown method {unknown[0]!r}; use {', '.join(sorted(METHODS))}")
    if "GET" in upper:
        upper.add("HEAD")  # HEAD is GET without the body: it reads what GET reads.
    return frozenset(upper)


def _pattern(value: Any, fail: Fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail("path", 'missing; give a pattern such as "/api/v1/books/*"')
    if not value.startswith("/"):
        raise fail("path", f"{value!r} must start with /")
    for char in ("?", "#", "%", "\\"):
        if char in value:
            raise fail("path", f"{value!r} holds {char!r}; give the decoded path, no query")
    if "//" in value:
        raise fail("path", f"{value!r} holds an empty segment (//)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise fail("path", f"{value!r} holds a space or control character")
    segments = _segments(value)
    for position, segment in enumerate(segments):
        if segment in _DOT_SEGMENTS:
            raise fail("path", f"{value!r} holds a dot segment ({segment})")
        if segment == "**" and position != len(segments) - 1:
            raise fail("path", f"{value!r}: ** is allowed only as the last segment")
        if "*" in segment and segment not in ("*", "**"):
            raise fail("path", f"{value!r}: a wildcard must be a whole segment, * or **")
    return "/" + "/".join(segments)


def _scopes(value: Any, fail: Fail) -> tuple[str, ...]:
    if value is None:
        return ()
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, list) or not given or not all(isinstance(s, str) for s in given):
        raise fail("scope", 'must be a scope such as "books:read" or a list of scopes')
    unknown = [s for s in given if s not in ALL_SCOPES]
    if unknown:
        raise fail("scope", f"unknown scope {unknown[0]!r}; known scopes are {', '.join(SCOPES)}")
    return in_order(given)


def _refuse_duplicates(source: str, rules: list[Rule]) -> None:
    # Two rules with the same pattern and an overlapping method would be decided by file order
    # alone: a silent shadowing that is almost always a mistake.
    seen: dict[tuple[str, str], Rule] = {}
    for rule in rules:
        for method in sorted(rule.methods) if rule.methods is not None else [ANY_METHOD]:
            earlier = seen.setdefault((method, rule.pattern), rule)
            if earlier is not rule:
                raise PolicyError(
                    f"{source}: route {rule.index}: path: {method} {rule.pattern} is already "
                    f"covered by route {earlier.index}"
                )

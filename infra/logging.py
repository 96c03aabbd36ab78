"""Redacting log setup: no token beyond its display prefix, no session cookie, no Bearer secret."""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
import threading
import types
from datetime import UTC, datetime
from typing import Any, Final

import uvicorn.logging

from domain.token import (
    CHECKSUM_CHARS,
    DISPLAY_PREFIX_LENGTH,
    ENTROPY_CHARS,
    PREFIX,
    is_well_formed,
)

ELLIPSIS = "…"
REDACTED = "[redacted]"

_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX = frozenset("0123456789abcdefABCDEF")
# Escapes whose hex digits are themselves escaped nest by recursion; real double and triple
# encodings stay far below this, and the cap keeps hostile input from recursing without end.
_MAX_ESCAPE_DEPTH = 12
# Cheap substring tests that every redactable text passes; the regexes only run after one hits.
_NEEDLES = ("live", "%", "token", "bearer", "eyj", "whsec_")
# One C-level search instead of lowering the text and testing each needle in Python: most log
# lines (every access log line) hold none, and this runs several times per line.
_ANY_NEEDLE = re.compile("|".join(re.escape(n) for n in _NEEDLES), re.IGNORECASE)

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_MAX_DECODE_ROUNDS = 8
_PLAIN_TOKEN = re.compile(r"(?i:ant_live_)[A-Za-z0-9_-]*")
# Where an encoded token may begin: an escape, or an "a" followed by "n" or by an escape.
_TOKEN_START = re.compile(r"%|[aA](?=[nN%])")
_COOKIE = re.compile(
    r"(?P<name>authjs\.session-token(?:\.\d+)?)"
    r"(?P<sep>['\"]?\s*(?:=|:|%(?:25)*3[dD])\s*(?:(?-i:b)?['\"])?|['\"]\s*,\s*(?-i:b)?['\"])"
    r"(?P<value>[^\s;,'\"\\&]+)",
    re.IGNORECASE,
)
# Auth.js session cookies are JWEs; one logged without its cookie name is still caught here.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_.-]*")
# A webhook signing secret (Standard Webhooks' whsec_ and base64): none of it is kept.
_WEBHOOK_SECRET = re.compile(r"(?i:whsec_)[A-Za-z0-9+/=_-]+")
# A "+" or "%20" stands for the space only straight after the scheme, as in a form or URL;
# after a real space a "+" is the credential's own first character.
_BEARER = re.compile(
    r"(?<![A-Za-z0-9])(?P<head>bearer(?:[ \t]+|(?:\+|%(?:25)*20)+))(?P<secret>[^\s'\"\\]+)",
    re.IGNORECASE,
)
_PARAM = re.compile(
    r"(?<![A-Za-z0-9_])(?P<head>(?:[A-Za-z0-9]+[_.-])*token"
    r"(?:=|%(?:25)*3[dD]|['\"]\s*:\s*(?-i:b)?['\"]))"
    r"(?P<secret>[^\s&;'\"\\#]+)",
    re.IGNORECASE,
)


# A token pasted without its prefix (the domain refuses such text as a token too): its 50
# characters, checksum and all, alone or glued to a few characters of its alphabet. A longer run
# is checked at its two ends only: a hostile line costs a few checks per run, not one per place.
_BARE_WIDTH: Final = ENTROPY_CHARS + CHECKSUM_CHARS
_BARE_RUN = re.compile(f"[A-Za-z0-9_-]{{{_BARE_WIDTH},}}")
_BARE_SLACK: Final = 4
# The checksum is 32 bits in six base64 characters: the last one's low four bits are zero.
_CHECKSUM_ENDS: Final = frozenset("AQgw")


def _cut_bare(match: re.Match[str]) -> str:
    run = match[0]
    extra = len(run) - _BARE_WIDTH
    for start in range(extra + 1) if extra <= _BARE_SLACK else (0, extra):
        end = start + _BARE_WIDTH
        if run[end - 1] in _CHECKSUM_ENDS and is_well_formed(PREFIX + run[start:end]):
            return run[: start + DISPLAY_PREFIX_LENGTH - len(PREFIX)] + ELLIPSIS
    return run


def redact(text: str) -> str:
    """The text with every token cut to its 12-character display prefix and every session cookie value, webhook secret and Bearer credential removed."""  # noqa: E501
    if _ANY_NEEDLE.search(text) is None:
        return _BARE_RUN.sub(_cut_bare, text) if len(text) >= _BARE_WIDTH else text
    # Tokens go first: the other rules only ever remove text, so none of them can break up
    # an encoded token and leave its tail unrecognisable.
    text = _cut_tokens(text)
    text = _COOKIE.sub(lambda m: m["name"] + m["sep"] + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _WEBHOOK_SECRET.sub("whsec_" + REDACTED, text)
    text = _BEARER.sub(_keep_prefix, text)
    return _BARE_RUN.sub(_cut_bare, _PARAM.sub(_keep_prefix, text))


def _keep_prefix(match: re.Match[str]) -> str:
    secret = match["secret"]
    if len(secret) <= DISPLAY_PREFIX_LENGTH:
        return match[0]
    return match["head"] + secret[:DISPLAY_PREFIX_LENGTH] + ELLIPSIS


def _cut_plain(match: re.Match[str]) -> str:
    token = match[0]
    if len(token) <= DISPLAY_PREFIX_LENGTH:
        return token
    return token[:DISPLAY_PREFIX_LENGTH] + ELLIPSIS


def _cut_tokens(text: str) -> str:
    if "%" not in text:
        return _PLAIN_TOKEN.sub(_cut_plain, text)
    if not _may_hide_token(text):
        return text
    pieces: list[str] = []
    done = 0
    # Every place a token could start is tried on its own, so an escape just before a token
    # that swallows its first character (as "%2" + "ant_live_…" decodes to "*nt_live_…")
    # cannot hide it.
    for candidate in _TOKEN_START.finditer(text):
        start = candidate.start()
        if start < done:
            continue
        found = _match_token(text, start)
        if found is None:
            continue
        decoded, end = found
        if text[start:end] == decoded and len(decoded) <= DISPLAY_PREFIX_LENGTH:
            continue
        pieces.append(text[done:start])
        pieces.append(decoded[:DISPLAY_PREFIX_LENGTH] + ELLIPSIS)
        done = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _may_hide_token(text: str) -> bool:
    # Decoding level by level is quick, and "live" survives every level intact: only a token's
    # first character can be swallowed by an escape in front of it. Text that never shows
    # "live" spares the character-by-character scan.
    for _ in range(_MAX_DECODE_ROUNDS):
        if "live" in text.lower():
            return True
        decoded = _ESCAPE.sub(lambda m: chr(int(m[1], 16)), text)
        if decoded == text:
            return False
        text = decoded
    return True


def _match_token(text: str, start: int) -> tuple[str, int] | None:
    chars: list[str] = []
    end = start
    for expected in PREFIX:
        char, after = _decoded_char(text, end, 0)
        if char.lower() != expected:
            return None
        chars.append(char)
        end = after
    while True:
        char, after = _decoded_char(text, end, 0)
        if char not in _TOKEN_ALPHABET:
            return "".join(chars), end
        chars.append(char)
        end = after


def _decoded_char(text: str, pos: int, depth: int) -> tuple[str, int]:
    """The character at pos with all percent-encoding undone, and where its encoding ends."""
    if pos >= len(text):
        return "", pos
    char = text[pos]
    if char != "%" or depth > _MAX_ESCAPE_DEPTH:
        return char, pos + 1
    end = pos + 1
    # A decoded "%" opens a further escape: that is how "%255F" means "_".
    while True:
        high, after_high = _decoded_char(text, end, depth + 1)
        if high not in _HEX:
            return char, end
        low, after_low = _decoded_char(text, after_high, depth + 1)
        if low not in _HEX:
            return char, end
        char, end = chr(int(high + low, 16)), after_low
        if char != "%":
            return char, end


# Attributes every LogRecord has; anything else came in through extra= and may hold a secret.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, args and exception text so nothing secret reaches any handler."""  # noqa: E501

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place and let it through."""
        try:
            _redact_record(record)
        except Exception:
            # Logging must never raise into the caller, and an unredacted record must never
            # reach a handler: keep only what cannot hold a secret.
            record.msg = f"log record from {record.name} dropped: redaction failed"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def _redact_record(record: logging.LogRecord) -> None:
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and record.name.startswith("uvicorn.access"):
        # uvicorn's AccessFormatter unpacks these five args, so they stay, each redacted.
        redacted = tuple(_redact_access_arg(arg) for arg in args)
        msg = redact(str(record.msg))
        try:
            message = msg % redacted
        except (TypeError, ValueError):
            message = None
        if message is not None and redact(message) == message:
            record.msg, record.args = msg, redacted
        else:
            record.msg, record.args = redact(_message(record)), None
    else:
        _redact_color_message(record)
        record.msg, record.args = redact(_message(record)), None
    if record.exc_info:
        # Formatted once here and cleared, so no handler formats the live exception again.
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(record.__dict__.items()):
        if isinstance(value, str) and name not in _RECORD_ATTRIBUTES:
            setattr(record, name, redact(value))


def _redact_color_message(record: logging.LogRecord) -> None:
    # uvicorn's coloured formatter swaps in this second format string and applies record.args
    # to it; once args are gone it must already be formatted.
    color_message = record.__dict__.get("color_message")
    if not isinstance(color_message, str):
        return
    try:
        formatted = color_message % record.args if record.args else color_message
    except (TypeError, ValueError, KeyError):
        del record.__dict__["color_message"]
        return
    record.__dict__["color_message"] = redact(formatted)


def _redact_access_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, int | float):
        return arg
    return redact(str(arg))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # A broken format string would send msg and args, unredacted, to handleError's
        # stderr report; render them here instead so they are redacted like the rest.
        return f"{record.msg!s} (unformattable args: {record.args!r})"


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, traceback included, passes through redact()."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        return redact(super().format(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802  (overrides the stdlib name)
        """The traceback, redacted before Formatter.format caches it on the record."""
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802  (overrides the stdlib name)
        """The stack, redacted."""
        return redact(super().formatStack(stack_info))


class _UvicornFormatter(RedactingFormatter, uvicorn.logging.DefaultFormatter):
    """uvicorn's formatter, redacted; it takes the use_colors that uvicorn.run may add."""


class _JsonFormatter(RedactingFormatter):
    """One JSON object per line, redacted like any other output."""

    def __init__(self, use_colors: bool | None = None) -> None:
        # use_colors is what uvicorn.run may add to its formatters; JSON has no colours.
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        # Redacting after encoding too: the rules never cut through a quote or backslash,
        # so the line stays valid JSON.
        return redact(jsonlib.dumps(entry, ensure_ascii=False, default=str))


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_UVICORN_FORMAT = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
_ROUTED_LOGGERS = ("litestar", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Route the root, litestar and uvicorn loggers through one redacting handler on stderr."""
    handler = _redacting_handler(_JsonFormatter() if json else RedactingFormatter(_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    # Records from a logger with no handler anywhere up its chain go to lastResort, which
    # would print them as they are.
    last_resort = _redacting_handler(RedactingFormatter("%(message)s"))
    last_resort.setLevel(logging.WARNING)
    logging.lastResort = last_resort
    # Uncaught exceptions print their traceback straight to stderr; send them through the
    # redacting handler instead.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _redacting_handler(formatter: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(formatter)
    return handler


def _log_uncaught(
    exc_type: type[BaseException],
    exc: BaseException,
    traceback: types.TracebackType | None,
) -> None:
    logging.getLogger("anthra").critical("uncaught exception", exc_info=(exc_type, exc, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "unknown"
    logging.getLogger("anthra").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def uvicorn_log_config(level: str = "INFO", json: bool = False) -> dict[str, Any]:
    """A logging.config dict for uvicorn.run(log_config=...) in which every handler redacts, the access log included."""  # noqa: E501
    level = level.upper()
    # uvicorn.run writes use_colors into the formatters named "default" and "access", so
    # those names must exist and accept it.
    if json:
        default: dict[str, Any] = {"()": _JsonFormatter}
        access: dict[str, Any] = {"()": _JsonFormatter}
    else:
        default = {"()": _UvicornFormatter, "fmt": _UVICORN_FORMAT}
        access = {"()": _UvicornFormatter, "fmt": _UVICORN_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"default": default, "access": access},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "filters": ["redact"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            # The app's loggers run in uvicorn's worker processes, where only this config
            # applies; they reach the same redacting handler through the root.
            "litestar": {"handlers": [], "level": level, "propagate": True},
        },
        "root": {"handlers": ["default"], "level": level},
    }

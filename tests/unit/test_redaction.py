"""Redaction: no log line holds more than a token's 12-character prefix, a session cookie or a Bearer secret."""  # noqa: E501

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import threading
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
import uvicorn.logging
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import token as token_format
from infra.logging import (
    RedactingFilter,
    RedactingFormatter,
    configure_logging,
    redact,
    uvicorn_log_config,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PREFIX = token_format.PREFIX
KEEP = token_format.DISPLAY_PREFIX_LENGTH
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The checksum plays no part in redaction, so any 50 characters of the alphabet will do.
tokens = st.text(alphabet=ALPHABET, min_size=50, max_size=50).map(PREFIX.__add__)


def leaks(text: str, secret: str, run: int = KEEP + 1) -> list[str]:
    """Every run of the secret, of the given length, that the text still holds."""
    return [
        secret[i : i + run] for i in range(len(secret) - run + 1) if secret[i : i + run] in text
    ]


def _hex(char: str, upper: bool) -> str:
    return format(ord(char), "02X" if upper else "02x")


ENCODERS: dict[str, Callable[[str], str]] = {
    "plain": lambda c: c,
    "lower": lambda c: "%" + _hex(c, upper=False),
    "upper": lambda c: "%" + _hex(c, upper=True),
    "double": lambda c: "%25" + _hex(c, upper=True),
    "double_lower": lambda c: "%25" + _hex(c, upper=False),
    "triple": lambda c: "%2525" + _hex(c, upper=True),
    # "%61" encoded once more character by character: "%25%36%31".
    "double_every_char": lambda c: "%25" + "".join("%" + _hex(d, True) for d in _hex(c, True)),
}


@st.composite
def encoded_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """(token, the token as it may appear in text: plain, wholly or partly percent-encoded)."""
    token = draw(tokens)
    form = draw(st.sampled_from([*ENCODERS, "mixed"]))
    if form == "mixed":
        names = draw(st.lists(st.sampled_from(list(ENCODERS)), min_size=59, max_size=59))
        return token, "".join(ENCODERS[name](c) for name, c in zip(names, token, strict=True))
    return token, "".join(ENCODERS[form](c) for c in token)


# Surrounding text: arbitrary, plus text rich in the characters that meet escapes and prefixes.
surroundings = st.text(max_size=30) | st.text(alphabet="%25aAnNt_live6F1 ?&=:'\"", max_size=20)
# Text that can neither join a token nor start one, so the outcome is exact.
neutral = st.text(alphabet=" /?&#:,()[]<>'\"", max_size=10)


# --- Tokens: at most the 12-character prefix survives, in any encoding --------------------


@PROPERTY
@given(encoded_tokens(), surroundings, surroundings)
def test_no_thirteen_characters_of_a_token_survive_anywhere(
    pair: tuple[str, str], before: str, after: str
) -> None:
    token, shown = pair
    assert leaks(redact(before + shown + after), token) == []


@PROPERTY
@given(encoded_tokens(), neutral, neutral)
def test_a_token_in_any_encoding_becomes_its_decoded_prefix_and_an_ellipsis(
    pair: tuple[str, str], before: str, after: str
) -> None:
    token, shown = pair
    assert redact(before + shown + after) == before + token[:KEEP] + "…" + after


def looks_harmless(text: str) -> bool:
    """No word redaction reacts to: the fast path returns such text untouched."""
    lowered = text.lower()
    return not any(word in lowered for word in ("%", "live", "token", "bearer", "eyj"))


# Words around the token that are harmless themselves, so nothing starts a match early
# (as "ant_live_" or "Bearer x" just before the token would, cutting it sooner still).
harmless = st.text(max_size=30).filter(looks_harmless)


@PROPERTY
@given(tokens, harmless, harmless)
def test_a_plain_token_keeps_its_display_prefix(token: str, before: str, after: str) -> None:
    out = redact(f"{before} {token} {after}")
    assert out == f"{before} {token[:KEEP]}… {after}"


def test_a_generated_token_in_a_sentence() -> None:
    token = token_format.generate()
    assert redact(f"minted {token} for alice") == f"minted {token[:KEEP]}… for alice"


def test_percent_encoding_of_every_kind_is_seen_through() -> None:
    token = PREFIX + "aB3" + "x" * 47
    for shown in (
        "ant%5Flive%5FaB3" + "x" * 47,
        "%61nt_live_aB3" + "x" * 47,
        "ant%5flive%5FaB3" + "%78" * 47,
        "ant%255Flive%255FaB3" + "x" * 47,
        "%2561%256E%2574%255F%256C%2569%2576%2565%255FaB3" + "x" * 47,
    ):
        assert redact(f"/keys?q={shown}&x=1") == "/keys?q=ant_live_aB3…&x=1", shown
    assert leaks(redact("%2" + token), token) == []  # "%2a" would swallow the "a" of "ant_"


# A token pasted without its prefix is still a token (the domain refuses it in a name or a
# reason): its 50 characters, checksum and all, are cut to the three a display prefix shows.
BARE_PLACES = {
    "alone": "{bare}",
    "a query value": "/api/v1/keys/k?reason={bare}&x=1",
    "a path segment": "/x/{bare}/y",
    "glued to a few characters": "reason=xy{bare}z",
    "at the end of a long run": "q=" + "a" * 300 + "{bare}",
    "at the start of a long run": "q={bare}" + "a" * 300,
    "quoted in JSON": '{{"reason": "{bare}"}}',
    "two of them": "{bare} and {bare}",
}


@pytest.mark.parametrize("place", BARE_PLACES.values(), ids=BARE_PLACES.keys())
def test_a_token_without_its_prefix_keeps_no_more_than_a_display_prefix_shows(place: str) -> None:
    token = token_format.generate()
    bare = token[len(PREFIX) :]
    out = redact(place.format(bare=bare))
    assert leaks(out, token) == []
    assert bare[: KEEP - len(PREFIX)] + "…" in out


@pytest.mark.parametrize(
    "line",
    [
        "sha256 " + "ab12" * 16,
        "/api/v1/keys/3fc2c97d-1234-4a5b-9c8d-0123456789ab/history",
        "test_a_token_without_its_prefix_keeps_no_more_than_a_display_prefix_shows",
        "x" * 49 + "A",
        "q=" + "a" * 300,
    ],
)
def test_long_runs_of_the_token_alphabet_without_a_checksum_are_unchanged(line: str) -> None:
    assert redact(line) == line


def test_the_display_prefix_alone_is_left_as_it_is() -> None:
    assert redact("key ant_live_aB3 revoked") == "key ant_live_aB3 revoked"
    assert redact("key ant_live_aB3… revoked") == "key ant_live_aB3… revoked"


# --- Session cookies: the value goes entirely ---------------------------------------------

cookie_names = st.sampled_from(["authjs.session-token", "__Secure-authjs.session-token"]).flatmap(
    lambda name: st.sampled_from([name, name + ".0", name + ".1", name + ".12"])
)
cookie_values = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1
)


@PROPERTY
@given(cookie_names, cookie_values)
def test_a_session_cookie_value_is_removed_wherever_it_is_written(name: str, value: str) -> None:
    assert redact(f"Cookie: theme=dark; {name}={value}; lang=en") == (
        f"Cookie: theme=dark; {name}=[redacted]; lang=en"
    )
    assert redact(f"Set-Cookie: {name}={value}; Path=/; HttpOnly; Secure") == (
        f"Set-Cookie: {name}=[redacted]; Path=/; HttpOnly; Secure"
    )
    assert redact(f"{{'{name}': '{value}'}}") == f"{{'{name}': '[redacted]'}}"
    assert redact(f'{{"{name}":"{value}"}}') == f'{{"{name}":"[redacted]"}}'
    assert redact(f"[(b'{name}', b'{value}')]") == f"[(b'{name}', b'[redacted]')]"


def test_a_session_jwe_without_its_cookie_name_is_removed_too() -> None:
    jwe = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0..iv_part.cipher-text.tag"
    assert redact(f"Cookie(key='authjs.session-token', value='{jwe}')") == (
        "Cookie(key='authjs.session-token', value='[redacted]')"
    )


def test_an_expired_session_cookie_with_no_value_is_left_alone() -> None:
    line = "Set-Cookie: authjs.session-token=; Max-Age=0; Path=/"
    assert redact(line) == line


# --- Bearer credentials and token parameters: 12 characters at most -----------------------


@PROPERTY
@given(
    st.sampled_from(["Bearer", "bearer", "BEARER"]),
    st.text(alphabet=ALPHABET + ".~+/=", min_size=1, max_size=80),
)
def test_a_bearer_credential_keeps_no_more_than_twelve_characters(
    scheme: str, credential: str
) -> None:
    head = f"Authorization: {scheme} "
    out = redact(head + credential)
    assert out.startswith(head)
    assert leaks(out[len(head) :], credential) == []


def test_bearer_credentials_in_headers_reprs_and_urls() -> None:
    assert redact("Authorization: Bearer abc") == "Authorization: Bearer abc"
    assert redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == (
        "Authorization: Bearer abcdefghijkl…"
    )
    assert redact("{'authorization': 'bearer abcdefghijklmnopqrstuvwxyz'}") == (
        "{'authorization': 'bearer abcdefghijkl…'}"
    )
    assert redact("/cb?auth=Bearer%20abcdefghijklmnopqrstuvwxyz") == (
        "/cb?auth=Bearer%20abcdefghijkl…"
    )
    token = token_format.generate()
    assert redact(f"Authorization: Bearer {token}") == f"Authorization: Bearer {token[:KEEP]}…"


def test_token_parameters_keep_no_more_than_twelve_characters() -> None:
    assert redact("/cb?access_token=abcdefghijklmnopqrstuvwxyz&state=1") == (
        "/cb?access_token=abcdefghijkl…&state=1"
    )
    assert redact("POST body: token=abcdefghijklmnopq") == "POST body: token=abcdefghijkl…"
    assert redact("/cb?token%3Dabcdefghijklmnopqrstu") == "/cb?token%3Dabcdefghijkl…"
    assert redact('{"access_token": "abcdefghijklmnopq", "token_type": "bearer"}') == (
        '{"access_token": "abcdefghijkl…", "token_type": "bearer"}'
    )
    assert redact("/cb?token=short&tokens=2") == "/cb?token=short&tokens=2"


# --- Ordinary text passes unchanged ----------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "GET /healthz 200",
        '127.0.0.1:50000 - "GET /api/v1/keys?owner=alice&page=2 HTTP/1.1" 200',
        '127.0.0.1:50000 - "GET /search?q=caf%C3%A9%20au%20lait HTTP/1.1" 200',
        "disk 93% full; 100%",
        "/search?q=is%20it%20still%20live%3F%20an%20ant_life&lang=en",
        'Traceback (most recent call last):\n  File "/srv/app.py", line 3, in <module>\n',
        "the key is no longer live",
        "tokenizer ready",
    ],
)
def test_ordinary_text_is_unchanged(line: str) -> None:
    assert redact(line) == line


@PROPERTY
@given(harmless)
def test_text_with_nothing_secret_looking_is_unchanged(text: str) -> None:
    assert redact(text) == text
    # Percent-encoded, it takes the slower decoding path and must still come out the same.
    assert redact(quote(text)) == quote(text)
    assert redact(quote(quote(text))) == quote(quote(text))


@PROPERTY
@given(encoded_tokens(), surroundings, surroundings)
def test_redacting_twice_changes_nothing_more(
    pair: tuple[str, str], before: str, after: str
) -> None:
    once = redact(before + pair[1] + after)
    assert redact(once) == once


# --- Log records through a handler with RedactingFilter -----------------------------------


@pytest.fixture
def filtered_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    # A plain formatter on purpose: the filter alone must make the output safe.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(path)s"))
    logger = logging.getLogger("anthra.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def check_token(token: str, presented: str) -> None:
    # A function whose argument is the token, so tracebacks and reprs carry it.
    raise ValueError(f"token {token!r} rejected", {"token": token, "presented": presented})


def test_percent_args_holding_a_token_are_redacted(
    filtered_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = filtered_logger
    token = token_format.generate()
    logger.info(
        "minted %s, header %r",
        token,
        {"authorization": f"Bearer {token}"},
        extra={"path": f"/keys?token={token}"},
    )
    out = stream.getvalue()
    assert leaks(out, token) == []
    assert f"minted {token[:KEEP]}…" in out


def test_an_exception_holding_a_token_is_redacted_in_message_and_traceback(
    filtered_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = filtered_logger
    token = token_format.generate()
    try:
        try:
            check_token(token, f"ant%5Flive%5F{token[9:]}")
        except ValueError as exc:
            exc.add_note(f"while verifying {token}")
            raise RuntimeError(f"verify failed for {token}") from exc
    except RuntimeError:
        logger.exception("verification of %s failed", token, stack_info=True, extra={"path": ""})
    out = stream.getvalue()
    assert "Traceback (most recent call last)" in out
    assert "check_token" in out
    assert "RuntimeError: verify failed for" in out
    assert leaks(out, token) == []


def test_the_filter_leaves_no_live_exception_for_a_later_formatter() -> None:
    token = token_format.generate()
    try:
        check_token(token, token)
    except ValueError:
        record = logging.getLogger("anthra.test").makeRecord(
            "anthra.test", logging.ERROR, __file__, 1, "failed: %s", (token,), sys.exc_info()
        )
    RedactingFilter().filter(record)
    assert record.exc_info is None
    assert record.args is None
    assert leaks(str(record.exc_text), token) == []
    assert leaks(logging.Formatter().format(record), token) == []


def test_a_record_whose_args_do_not_fit_its_format_is_still_redacted(
    filtered_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    # Left alone, logging's error report would print msg and args to stderr as they are.
    logger, stream = filtered_logger
    token = token_format.generate()
    logger.info("count %d", token, extra={"path": ""})
    out = stream.getvalue()
    assert "count %d" in out
    assert leaks(out, token) == []


def test_the_formatter_alone_redacts_message_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logger = logging.getLogger("anthra.test.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    token = token_format.generate()
    try:
        check_token(token, token)
    except ValueError:
        logger.exception("failed for %s", token)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = stream.getvalue()
    assert "Traceback" in out
    assert leaks(out, token) == []


# --- uvicorn's loggers under uvicorn_log_config() and configure_logging() -----------------

LOGGER_NAMES = ("", "litestar", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    # Both set-ups change process-wide logging state; put it back for the other tests.
    saved = {}
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    hooks = (logging.lastResort, sys.excepthook, threading.excepthook)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
    logging.lastResort, sys.excepthook, threading.excepthook = hooks


def capture(logger_name: str) -> io.StringIO:
    """Point the handler that serves the named logger at a fresh buffer."""
    stream = io.StringIO()
    handlers = logging.getLogger(logger_name).handlers
    assert len(handlers) == 1
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def log_access(path: str, status: int = 400) -> None:
    # Exactly the call uvicorn's HTTP protocols make.
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", path, "1.1", status
    )


@pytest.mark.usefixtures("restored_logging")
def test_the_uvicorn_access_log_redacts_the_query_string() -> None:
    logging.config.dictConfig(uvicorn_log_config())
    stream = capture("uvicorn.access")
    token = token_format.generate()
    log_access(f"/api/v1/keys?token={token}")
    log_access(f"/api/v1/keys?access_token=ant%5Flive%5F{token[9:]}&x=1")
    log_access(f"/api/v1/keys/{token}", 404)
    out = stream.getvalue()
    assert f'127.0.0.1:50000 - "GET /api/v1/keys?token={token[:KEEP]}… HTTP/1.1" 400' in out
    assert f"access_token={token[:KEEP]}…&x=1" in out
    assert leaks(out, token) == []


@pytest.mark.usefixtures("restored_logging")
def test_the_uvicorn_error_log_redacts_exceptions() -> None:
    logging.config.dictConfig(uvicorn_log_config())
    stream = capture("uvicorn")  # uvicorn.error hands its records up to "uvicorn"
    token = token_format.generate()
    try:
        check_token(token, f"Bearer {token}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    out = stream.getvalue()
    assert "Exception in ASGI application" in out
    assert "ValueError" in out
    assert leaks(out, token) == []


@pytest.mark.usefixtures("restored_logging")
def test_the_uvicorn_config_takes_the_colours_uvicorn_run_adds() -> None:
    config = uvicorn_log_config("DEBUG")
    for formatter in ("default", "access"):
        config["formatters"][formatter]["use_colors"] = False  # what uvicorn.run does
    logging.config.dictConfig(config)
    stream = capture("uvicorn.access")
    log_access("/api/v1/keys?token=ant_live_aB3xyzxyzxyzxyzxyz", 200)
    assert '"GET /api/v1/keys?token=ant_live_aB3… HTTP/1.1" 200' in stream.getvalue()


@pytest.mark.usefixtures("restored_logging")
def test_the_uvicorn_config_can_log_json() -> None:
    logging.config.dictConfig(uvicorn_log_config(json=True))
    stream = capture("uvicorn.access")
    token = token_format.generate()
    log_access(f"/api/v1/keys?token={token}")
    entry = json.loads(stream.getvalue())
    assert entry["logger"] == "uvicorn.access"
    assert entry["message"].endswith(f'?token={token[:KEEP]}… HTTP/1.1" 400')


def test_uvicorns_own_access_formatter_still_gets_its_five_args() -> None:
    # The args stay a tuple, each redacted, for anyone running uvicorn's stock formatter.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        uvicorn.logging.AccessFormatter(
            '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
        )
    )
    logger = logging.getLogger("uvicorn.access.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = token_format.generate()
    try:
        logger.info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:1", "GET", f"/k?token={token}", "1.1", 401)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert stream.getvalue() == (
        f'10.0.0.1:1 - "GET /k?token={token[:KEEP]}… HTTP/1.1" 401 Unauthorized\n'
    )


@pytest.mark.usefixtures("restored_logging")
def test_configure_logging_routes_every_logger_through_one_redacting_handler() -> None:
    configure_logging("DEBUG")
    stream = capture("")
    token = token_format.generate()
    log_access(f"/api/v1/keys?token={token}")
    logging.getLogger("litestar").warning("bad cookie authjs.session-token=%s", token)
    logging.getLogger("anthra.api").info("Authorization: Bearer %s", token)
    out = stream.getvalue()
    assert "uvicorn.access" in out
    assert "authjs.session-token=[redacted]" in out
    assert leaks(out, token) == []


@pytest.mark.usefixtures("restored_logging")
def test_configure_logging_json_lines_are_redacted() -> None:
    configure_logging("INFO", json=True)
    stream = capture("")
    token = token_format.generate()
    try:
        check_token(token, token)
    except ValueError:
        logging.getLogger("anthra.api").exception("unhandled error on GET /keys/%s", token)
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "ERROR"
    assert entry["message"] == f"unhandled error on GET /keys/{token[:KEEP]}…"
    assert "Traceback" in entry["exception"]
    assert leaks(stream.getvalue(), token) == []


@pytest.mark.usefixtures("restored_logging")
def test_uncaught_exceptions_and_handlerless_loggers_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")  # binds to the sys.stderr that capsys put in place
    token = token_format.generate()

    def worker() -> None:
        check_token(token, token)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    try:
        check_token(token, token)
    except ValueError:
        sys.excepthook(*sys.exc_info())
    orphan = logging.getLogger("anthra.test.orphan")
    orphan.propagate = False
    try:
        orphan.warning("no handler for %s", token)
    finally:
        orphan.propagate = True
    err = capsys.readouterr().err
    assert "uncaught exception in thread" in err
    assert "uncaught exception" in err
    assert f"no handler for {token[:KEEP]}…" in err
    assert leaks(err, token) == []

"""The access log: one redacted line per request, written by a thread, dropped (and counted)
rather than ever holding a request up."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable

import pytest

from domain import token as token_format
from infra.access_log import AccessLog, access_log_enabled
from tests.api_support import SAME_ORIGIN, api_client, bearer, mint, signed_in_as

KEEP = 12


def test_a_plain_line_has_the_time_client_request_status_and_request_id() -> None:
    stream = io.StringIO()
    log = AccessLog(stream=stream)
    log.line("203.0.113.7:4242", "GET", "/api/v1/keys?limit=5", "1.1", 200, "req-1")
    log.flush()
    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO anthra\.access: "
        r'203\.0\.113\.7:4242 - "GET /api/v1/keys\?limit=5 HTTP/1\.1" 200 req-1\n',
        line,
    ), line


def test_a_json_line_carries_the_same_fields_as_keys() -> None:
    stream = io.StringIO()
    log = AccessLog(json=True, stream=stream)
    log.line("203.0.113.7:4242", "POST", "/v1/verify", "1.1", 401, "req-2")
    log.flush()
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "INFO"
    assert entry["logger"] == "anthra.access"
    assert entry["message"] == '203.0.113.7:4242 - "POST /v1/verify HTTP/1.1" 401 req-2'
    assert (entry["client"], entry["method"], entry["target"]) == (
        "203.0.113.7:4242",
        "POST",
        "/v1/verify",
    )
    assert (entry["status"], entry["request_id"], entry["http_version"]) == (401, "req-2", "1.1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_token_in_the_target_never_reaches_the_line_beyond_its_prefix(json_lines: bool) -> None:
    stream = io.StringIO()
    log = AccessLog(json=json_lines, stream=stream)
    token = token_format.generate()
    for target in (
        f"/api/v1/keys/{token}",
        f"/x?access_token={token}",
        f"/x?t=ant%5Flive%5F{token[9:]}",
    ):
        log.line("127.0.0.1:1", "GET", target, "1.1", 400, "r")
    log.flush()
    out = stream.getvalue()
    assert out.count("\n") == 3
    assert token[: KEEP + 1] not in out
    assert token[9 : 9 + KEEP + 1] not in out


# A token in a URL that no longer looks like one after its first characters: the request is
# refused (or served, when nothing of a prefix is left), and its line keeps no more of it.
BROKEN_UP: dict[str, Callable[[str], str]] = {
    "split across two parameters": lambda t: f"/healthz?a={t[:30]}&b={t[30:]}",
    "split across path segments": lambda t: f"/x/{t[:20]}/{t[20:]}",
    "broken by a dot": lambda t: f"/healthz?t={t[:20]}.{t[20:]}",
    "broken by an encoded space": lambda t: f"/healthz?t={t[:20]}%20{t[20:]}",
    "broken by a plus": lambda t: f"/healthz?t={t[:20]}+{t[20:]}",
    "the tail first": lambda t: f"/healthz?b={t[30:]}&a={t[:30]}",
    "without its prefix, in the query": lambda t: f"/api/v1/keys?cursor={t[9:]}",
    "without its prefix, glued to a value": lambda t: f"/healthz?reason=x{t[9:]}",
    "without its prefix, in the path": lambda t: f"/api/v1/keys/{t[9:]}",
}


@pytest.mark.parametrize("target", BROKEN_UP.values(), ids=BROKEN_UP.keys())
def test_a_token_broken_up_in_the_url_never_reaches_the_line_beyond_its_prefix(
    target: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    token = token_format.generate()
    with api_client() as client:
        answer = client.get(target(token), headers=signed_in_as("alice"))
    assert answer.status_code < 500
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "anthra.access" in line]
    shown = [token[i : i + KEEP + 1] for i in range(len(token) - KEEP)]
    assert [run for run in shown if run in out] == []


def test_when_the_buffer_is_full_lines_are_dropped_counted_and_reported() -> None:
    stream = io.StringIO()
    log = AccessLog(stream=stream, max_buffered=3)
    # No writer thread: the buffer fills, and the fourth and fifth lines go nowhere at once
    for i in range(5):
        log.line("127.0.0.1:1", "GET", f"/{i}", "1.1", 200, str(i))
    assert log.dropped == 2
    # The three kept are written, and the drops are reported as a warning
    reports: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reports.append(record)

    handler = Keep()
    logger = logging.getLogger("anthra.access_log")
    logger.addHandler(handler)
    try:
        log.flush()
    finally:
        logger.removeHandler(handler)
    assert [line.split('"')[1] for line in stream.getvalue().splitlines()] == [
        "GET /0 HTTP/1.1",
        "GET /1 HTTP/1.1",
        "GET /2 HTTP/1.1",
    ]
    assert [r.levelno for r in reports] == [logging.WARNING]
    assert "2 lines dropped" in reports[0].getMessage()


def test_the_writer_thread_writes_what_was_queued_by_the_time_it_stops() -> None:
    stream = io.StringIO()
    log = AccessLog(stream=stream, flush_interval=10.0)
    log.start()
    for i in range(100):
        log.line("127.0.0.1:1", "GET", f"/{i}", "1.1", 200, str(i))
    log.stop()
    assert len(stream.getvalue().splitlines()) == 100


def test_it_is_on_by_default_and_off_when_asked_or_above_info() -> None:
    assert access_log_enabled("INFO", True)
    assert access_log_enabled("DEBUG", True)
    assert not access_log_enabled("WARNING", True)
    assert not access_log_enabled("INFO", False)


def test_every_request_gets_one_line_with_its_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with api_client() as client:
        key = mint(client, "alice", scopes=["account:read"])
        whoami = client.get(
            "/api/v1/account/whoami", headers=bearer(key["token"]) | {"X-Request-Id": "trace-7"}
        )
        missing = client.get("/healthz?token=" + key["token"])
    out = capsys.readouterr().out
    assert whoami.headers["x-request-id"] == "trace-7"
    lines = [line for line in out.splitlines() if "anthra.access" in line]
    assert any('"GET /api/v1/account/whoami HTTP/1.1" 200 trace-7' in line for line in lines)
    assert any(
        f'"GET /healthz?token={key["token"][:KEEP]}… HTTP/1.1" 400 '
        f"{missing.headers['x-request-id']}" in line
        for line in lines
    )
    assert key["token"][: KEEP + 1] not in out


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/verify", {}),
        ("/api/v1/keys", signed_in_as("alice") | SAME_ORIGIN),
        ("/api/v1/webhooks", signed_in_as("alice") | SAME_ORIGIN),
        ("/v1/leaks", {}),
    ],
)
def test_a_client_that_leaves_before_its_body_arrives_is_499_never_a_500(
    path: str, headers: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[dict[str, object]] = []

    async def body_then_gone() -> dict[str, object]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b'{"na', "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        pass

    with api_client() as client:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver.local"), (b"content-type", b"application/json")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        with client.portal() as portal:
            portal.call(client.app, scope, body_then_gone, send)
    lines = [line for line in capsys.readouterr().out.splitlines() if "anthra.access" in line]
    assert any(f'"POST {path} HTTP/1.1" 499 ' in line for line in lines), lines
    assert not any('" 500 ' in line for line in lines)

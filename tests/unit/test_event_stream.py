"""The event stream's limits, in process: where a stream starts, and a client that stops reading
dropped rather than buffered for."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from api import event_stream
from api.event_stream import StreamLimits, stream_start
from domain.errors import InvalidInput


def test_a_stream_resumes_after_last_event_id_else_after_the_query_else_now() -> None:
    assert stream_start("42", "7") == 42
    assert stream_start(" 42 ", None) == 42
    assert stream_start(None, "7") == 7
    assert stream_start(None, None) is None
    for bad in ("x", "-1", "²", "1e3", "99999999999999999999"):
        with pytest.raises(InvalidInput) as refused:
            stream_start(bad, None)
        assert refused.value.field == "Last-Event-ID"


def test_a_client_that_stops_reading_is_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(event_stream, "SEND_TIMEOUT", 0.05)
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for n in range(1000):
            await send({"type": "http.response.body", "body": b"x", "more_body": True, "n": n})

    async def stalled_send(message: Any) -> None:
        if len(sent) == 3:
            await anyio.sleep_forever()  # the client's window is full: it stopped reading
        sent.append(message)

    async def run() -> None:
        await StreamLimits(app)({"type": "http"}, None, stalled_send)

    with caplog.at_level(logging.INFO, "anthra.events"):
        anyio.run(run)
    assert len(sent) == 3
    assert "dropped an event-stream client" in caplog.text

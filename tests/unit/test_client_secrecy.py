"""The client never shows more of a token than its 12-character display prefix: not in a repr,
an exception, a traceback, a log line, or the CLI's own messages."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from anthra_keys_client import BadRequest, Client, MissingCredential, RotatedKey, Unavailable
from anthra_keys_client.asgi import Identity, TokenVerifier
from anthra_keys_client.cli import main
from anthra_keys_client.errors import AnthraError
from anthra_keys_client.redaction import redact
from anthra_keys_client.schemas import VerifyRequest

from domain import token as token_format
from tests.e2e.server import free_port, windows

CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "client"


def holds(text: str, token: str) -> bool:
    """Whether the text holds more than the token's display prefix (13 characters in a row)."""
    return any(run in text for run in windows(token, 13))


def nowhere() -> str:
    """A local address nobody listens on: a connection there is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def test_a_clients_repr_shows_the_display_prefix_at_most() -> None:
    token = token_format.generate()
    client = Client("http://127.0.0.1:8000", token)
    assert repr(client) == f"Client('http://127.0.0.1:8000', token='{token[:12]}…')"


def test_the_token_comes_from_anthra_token(monkeypatch: pytest.MonkeyPatch) -> None:
    token = token_format.generate()
    monkeypatch.setenv("ANTHRA_TOKEN", token + "\n")
    assert token[:12] in repr(Client("http://127.0.0.1:8000"))


def test_without_a_token_a_holders_call_says_to_set_anthra_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHRA_TOKEN", raising=False)
    with pytest.raises(MissingCredential, match="set ANTHRA_TOKEN"):
        Client(nowhere()).whoami()


def test_a_token_given_as_a_key_id_is_refused_before_it_is_sent() -> None:
    token = token_format.generate()
    client = Client(nowhere(), token_format.generate())
    with pytest.raises(BadRequest) as refused:
        client.key(token)
    assert refused.value.field == "key_id"
    assert not holds(str(refused.value), token)


def test_a_rotated_keys_repr_and_str_cut_its_token() -> None:
    token = token_format.generate()
    rotated = RotatedKey(
        id="k2",
        token=token,
        prefix=token[:12],
        name="CI deploy",
        scopes=("books:read",),
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
        expires_at=None,
        predecessor_id="k1",
    )
    assert not holds(repr(rotated), token)
    assert not holds(str(rotated), token)
    assert f"{token[:12]}…" in repr(rotated)
    assert not holds(repr(VerifyRequest(token=token)), token)


def test_an_error_description_holding_a_token_is_cut() -> None:
    token = token_format.generate()
    error = AnthraError(502, "http_502", f"upstream said: Bearer {token}")
    assert not holds(str(error), token)
    assert not holds(redact(f"a={token}&b={token.upper()}"), token)
    assert redact(token) == f"{token[:12]}…"


def test_a_failed_call_leaves_the_token_out_of_its_traceback_and_the_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = token_format.generate()
    client = Client(nowhere(), token, retries=1, retry_within=5)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unavailable) as failed:
        client.whoami()
    trace = "".join(traceback.format_exception(failed.value))
    assert "ConnectError" in trace
    assert not holds(trace, token)
    assert "retry 1 of 1" in caplog.text
    assert not holds(caplog.text, token)


# The embedded verifier (anthra_keys_client.asgi)


def test_a_verifiers_repr_hides_the_verify_secret() -> None:
    secret = "verify-secret-0123456789abcdef0123456789"

    async def app(scope: object, receive: object, send: object) -> None: ...

    verifier = TokenVerifier(app, ledger_url="http://ledger.internal", verify_secret=secret)
    assert (
        repr(verifier)
        == "TokenVerifier(ledger_url='http://ledger.internal', verify_secret=<hidden>)"
    )
    assert not holds(repr(verifier), secret)
    assert not holds(repr(vars(verifier)), secret)
    assert not holds(str(vars(verifier)), secret)


def test_a_verifiers_refusals_never_echo_the_token() -> None:
    token = token_format.generate()
    answers: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None: ...

    async def send(message: dict[str, object]) -> None:
        answers.append(message)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused: {request.content!r}", request=request)

    async def run() -> None:
        verifier = TokenVerifier(
            app,
            ledger_url="http://ledger.internal",
            verify_secret="s" * 32,
            transport=httpx.MockTransport(unreachable),
        )
        for header in (f"Bearer {token}", f"Bearer {token} {token}", f"Basic {token}"):
            scope = {"type": "http", "path": "/", "headers": [(b"authorization", header.encode())]}
            await verifier(scope, None, send)
        await verifier.stop()

    anyio.run(run)
    statuses = [a["status"] for a in answers if a["type"] == "http.response.start"]
    assert statuses == [503, 400, 400]
    assert not holds(repr(answers), token)


def test_an_identity_holds_no_token() -> None:
    assert set(Identity.__struct_fields__) == {"key_id", "owner_id", "scopes", "expires_at"}


# The CLI


def test_a_token_pasted_as_an_argument_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    token = token_format.generate()
    with pytest.raises(SystemExit) as exited:
        main(["whoami", token])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "unrecognized arguments" in captured.err
    assert not holds(captured.out + captured.err, token)


def test_the_cli_without_a_token_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHRA_TOKEN", raising=False)
    assert main(["--url", nowhere(), "whoami"]) == 2
    assert "set ANTHRA_TOKEN" in capsys.readouterr().err


def test_the_cli_without_a_token_to_verify_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["--url", nowhere(), "verify"]) == 2
    assert "give the token to verify on standard input" in capsys.readouterr().err


def test_the_cli_exits_3_when_no_ledger_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = token_format.generate()
    monkeypatch.setenv("ANTHRA_TOKEN", token)
    assert main(["--url", nowhere(), "--retries", "0", "whoami"]) == 3
    err = capsys.readouterr().err
    assert "unreachable" in err
    assert not holds(err, token)


def test_the_cli_refuses_a_url_it_cannot_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "ftp://keys.example", "whoami"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_the_client_imports_nothing_of_the_servers(tmp_path: Path) -> None:
    server_side = "api domain infra ledger projections litestar eventsourcing psycopg cryptography"
    script = (
        "import sys, anthra_keys_client, anthra_keys_client.cli, anthra_keys_client.asgi\n"
        f"found = {{m.partition('.')[0] for m in sys.modules}} & set({server_side.split()!r})\n"
        "assert not found, found\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(CLIENT_SOURCE)},
        check=True,
        timeout=60,
    )

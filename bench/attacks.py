"""Attacks, replayed: what a hostile client gets from a ledger served as shipped on PostgreSQL.

    .venv/bin/python -m bench.attacks [--requests 2000] [--json]

Each row is an attack an outside security run made, sent to a real `anthra-keys serve`
(PostgreSQL, JWT session cookies, default limits), with what came back counted: statuses, how
many log lines the server wrote meanwhile, and whether anything of it was stored. The tests
prove each behaviour; this prints the figures for the README's Reliability table.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    command_line,
    emit_summary,
    fresh_schema,
    ledger_server,
    machine_lines,
    mint_over_http,
    session_headers,
    summary_row,
)
from bench.verify import table
from domain import token as token_format

Row = tuple[str, str, str]


def statuses(responses: list[int]) -> str:
    return ", ".join(f"{n:,} x {s}" for s, n in sorted(Counter(responses).items()))


def log_lines(path: Path) -> int:
    return len(path.read_text(errors="replace").splitlines())


def raw_request(port: int, head: bytes) -> int:
    """Send a hand-made request head; the status the server answered, or 0 for none."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            answer = sock.recv(64)
        except OSError:
            return 0
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def run(requests: int, workdir: Path) -> list[Row]:
    auth_secret = secrets.token_urlsafe(32)
    with fresh_schema("attacks") as (_server, _schema, url):
        server = ledger_server("attacks", url, auth_secret, workdir)
        server.wait_ready()
        try:
            return _attacks(server.url, server.port, server.log_path, auth_secret, requests)
        finally:
            server.stop()


def _attacks(base: str, port: int, log: Path, auth_secret: str, requests: int) -> list[Row]:
    rows: list[Row] = []
    session = session_headers("victim", auth_secret)
    with httpx.Client(base_url=base, timeout=10) as client:
        _, token = mint_over_http(client, base, session, "kept", ["account:read"])

        def measure(what: str, send: Callable[[], int], count: int) -> list[int]:
            before, started = log_lines(log), time.perf_counter()
            answers = [send() for _ in range(count)]
            took = time.perf_counter() - started
            lines = log_lines(log) - before
            rows.append(
                (what, statuses(answers), f"{lines:,} log lines, {count / took:,.0f} req/s")
            )
            return answers

        # Garbage session cookies: no database lookup, no 503, no traceback
        measure(
            "garbage session cookie (authjs.session-token=x)",
            lambda: (
                client.get(
                    "/api/v1/account/whoami", headers={"Cookie": "authjs.session-token=x"}
                ).status_code
            ),
            requests,
        )
        # A flood of invalid tokens from one client, with a valid token among them
        valid_during: list[int] = []

        def invalid_then_valid() -> int:
            status = client.get(
                "/api/v1/account/whoami",
                headers={"Authorization": f"Bearer {token_format.generate()}"},
            ).status_code
            valid_during.append(
                client.get(
                    "/api/v1/account/whoami", headers={"Authorization": f"Bearer {token}"}
                ).status_code
            )
            return status

        measure("invalid Bearer tokens from one client", invalid_then_valid, requests)
        rows.append(
            (
                "  … a valid token from that client meanwhile",
                statuses(valid_during),
                "never limited",
            )
        )
        measure(
            "open POST /v1/verify with invalid tokens",
            lambda: client.post("/v1/verify", json={"token": token_format.generate()}).status_code,
            requests // 4,
        )
        # Oversized and numerous headers
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n"
        rows.append(("one 1 MB header", str(raw_request(port, big)), "-"))
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
        rows.append(("1,000 headers", str(raw_request(port, head)), "-"))
        # A forged client address, then what the audit trail recorded
        forged = client.post(
            "/api/v1/keys",
            json={"name": "forged", "scopes": ["books:read"]},
            headers=session | {"X-Forwarded-For": "6.6.6.6"},
        )
        trail = client.get("/api/v1/audit", params={"limit": 1}, headers=session).json()
        rows.append(
            (
                "X-Forwarded-For: 6.6.6.6 from a client that is no proxy",
                str(forged.status_code),
                f"audit records client_ip {trail['events'][0]['context'].get('client_ip')}",
            )
        )
        # Inputs that once answered 500
        hostile: list[tuple[str, Callable[[], httpx.Response]]] = [
            (
                "since=0001-01-01T00:00:00+14:00",
                lambda: client.get(
                    "/api/v1/audit", params={"since": "0001-01-01T00:00:00+14:00"}, headers=session
                ),
            ),
            (
                "cursor=9223372036854775808",
                lambda: client.get(
                    "/api/v1/audit", params={"cursor": "9223372036854775808"}, headers=session
                ),
            ),
            (
                "export after=²",
                lambda: client.get("/api/v1/audit/export", params={"after": "²"}, headers=session),
            ),
            (
                "POST /v1/verify nested 5,000 deep",
                lambda: client.post(
                    "/v1/verify",
                    content=b'{"token":' + b"[" * 5000 + b"]" * 5000 + b"}",
                    headers={"Content-Type": "application/json"},
                ),
            ),
            (
                "a token as a key name",
                lambda: client.post(
                    "/api/v1/keys",
                    json={"name": f"deploy {token_format.generate()}", "scopes": ["books:read"]},
                    headers=session,
                ),
            ),
        ]
        for what, send in hostile:
            answer = send()
            body: Any = answer.json() if answer.content else {}
            rows.append((what, str(answer.status_code), f"field {body.get('field') or '-'}"))
        tracebacks = sum("Traceback" in line for line in log.read_text().splitlines())
        rows.append(("tracebacks in the server's log, whole run", str(tracebacks), "-"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="end with a bench-summary line")
    args = parser.parse_args(argv)
    for line in machine_lines():
        print(line)
    print(command_line("bench.attacks", sys.argv[1:] if argv is None else argv))
    with tempfile.TemporaryDirectory(prefix="anthra-attacks-") as workdir:
        rows = run(args.requests, Path(workdir))
    print(table(["attack", "answered", "besides"], [list(r) for r in rows]))
    if args.json:
        emit_summary([summary_row(f"attack: {w}", f"{a} ({b})") for w, a, b in rows])
    print(json.dumps({"rows": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

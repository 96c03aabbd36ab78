"""Shared pieces of the HTTP and PostgreSQL benchmarks: servers, sessions, percentiles, summaries.

The summary contract, which `bench.run_all` reads: a benchmark run with `--json` prints, as the
last line of its standard output, `bench-summary: ` followed by a JSON list of rows, each an
object with the string fields `what`, `measured`, `floor`, `ratio`, `budget` and `verdict`
(`meets`, `misses` or `-` when no budget applies), and optionally the numbers behind them in
`value`, `floor_value` and `unit`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from api.authjs import SessionCookieCodec

REPO = Path(__file__).resolve().parents[1]
SUMMARY_PREFIX = "bench-summary: "
COOKIE = "authjs.session-token"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def bench_postgres_url() -> str:
    """The PostgreSQL the benchmarks use; the same variable bench/audit.py reads."""
    return os.environ.get("ANTHRA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# Summaries


def summary_row(
    what: str,
    measured: str,
    floor: str = "-",
    ratio: str = "-",
    budget: str = "-",
    verdict: str = "-",
    **numbers: float | str | None,
) -> dict[str, Any]:
    """One row of the summary contract described in this module's docstring."""
    row: dict[str, Any] = {
        "what": what,
        "measured": measured,
        "floor": floor,
        "ratio": ratio,
        "budget": budget,
        "verdict": verdict,
    }
    row.update(numbers)
    return row


def emit_summary(rows: Sequence[dict[str, Any]]) -> None:
    """Print the machine-readable summary as the last line of standard output."""
    print(SUMMARY_PREFIX + json.dumps(list(rows), ensure_ascii=False), flush=True)


def at_least(value: float, budget: float) -> str:
    return "meets" if value >= budget else "misses"


def at_most(value: float, budget: float) -> str:
    return "meets" if value <= budget else "misses"


# Statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q% of samples at or below it."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def command_line(module: str, argv: Sequence[str]) -> str:
    """The exact command that reproduces this run, from the repository root."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(str(REPO)) else None
    words = [python or sys.executable, "-m", module, *argv]
    return f"cd {shlex.quote(str(REPO))} && {shlex.join(words)}"


# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server in a child process of its own session, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        workdir: Path,
        ready_path: str,
        port: int,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        # Its own session, so that stopping it reaches uvicorn's worker processes too.
        self.process = subprocess.Popen(
            list(argv),
            env=os.environ | env | {"PYTHONPATH": str(REPO)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# For benches that check thousands of revoked tokens from one address on purpose.
NO_FAILED_ATTEMPT_LIMIT = {
    "ANTHRA_AUTH_FAILURES_PER_IP": "0",
    "ANTHRA_AUTH_FAILURES_PER_PREFIX": "0",
}


def ledger_server(
    name: str, database_url: str, auth_secret: str, workdir: Path, workers: int = 1, **env: str
) -> Server:
    """`anthra-keys serve` as an operator would run it, on its own port."""
    port = free_port()
    argv = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    server_env = {
        "ANTHRA_DATABASE_URL": database_url,
        "AUTH_SECRET": auth_secret,
        # Outside development mode the ledger needs its public URL: where it listens.
        "ANTHRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **env,
    }
    return Server(name, argv, server_env, workdir, "/readyz", port)


def floor_server(
    name: str, workdir: Path, workers: int = 1, log_level: str = "info", *, access_log: bool = True
) -> Server:
    """bench/floors.py on uvicorn with the settings `anthra-keys serve` uses."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.floors:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers), "--no-server-header"]
    argv += ["--log-level", log_level]
    argv += [] if access_log else ["--no-access-log"]
    return Server(name, argv, {}, workdir, "/", port)


# Sessions and keys


def session_headers(user_id: str, auth_secret: str) -> dict[str, str]:
    """A browser signed in through Auth.js as this user, making a same-origin request."""
    cookie = SessionCookieCodec([auth_secret]).encode({"sub": user_id}, COOKIE, 3600)
    return {"Cookie": f"{COOKIE}={cookie}", **SAME_ORIGIN}


def mint_body(name: str, scopes: Sequence[str]) -> dict[str, Any]:
    return {"name": name, "scopes": list(scopes), "expires_in_days": None}


def mint_over_http(
    client: httpx.Client, base: str, headers: dict[str, str], name: str, scopes: Sequence[str]
) -> tuple[str, str]:
    """Mint a key through the API; returns (key id, token). The token is never printed."""
    response = client.post(f"{base}/api/v1/keys", json=mint_body(name, scopes), headers=headers)
    if response.status_code != 201:
        raise RuntimeError(f"minting answered {response.status_code}: {response.text[:200]}")
    body = response.json()
    return body["id"], body["token"]


# PostgreSQL


@contextlib.contextmanager
def fresh_schema(prefix: str) -> Iterator[tuple[str, str, str]]:
    """A new schema on the bench PostgreSQL, dropped on the way out: (server, schema, url)."""
    server = bench_postgres_url()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in server else "?"
    try:
        yield server, schema, f"{server}{separator}schema={schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def postgres_version(server: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


# Reporting


def machine_lines() -> list[str]:
    """bench.verify's machine lines, plus the RAM."""
    from bench.verify import machine

    lines = machine()
    total = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                total = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    lines.append(f"memory:  {total} RAM")
    return lines

"""Mint and revoke throughput on PostgreSQL, in process and over HTTP, against commit floors.

    .venv/bin/python -m bench.ledger_ops [--keys N] [--http-keys M] [--clients C] [--json]

On a fresh schema of the PostgreSQL at ANTHRA_BENCH_POSTGRES_URL (dropped at the end):
- in process, one `KeyLedger` mints N keys one after another, then revokes them one after
  another; each call is timed (event append, commit, the index's read-your-writes catch-up);
- over HTTP, one `anthra-keys serve` (1 worker, access log on) on the same schema; C clients at
  once (keep-alive connections on one asyncio loop, bench/async_clients.py, a signed-in session
  each) mint M keys through `POST /api/v1/keys`, then revoke them through
  `DELETE /api/v1/keys/{id}`; each request is timed at the client, and the server's CPU time
  (user + system, from /proc) is divided by the requests it answered.

The ratios are to floors measured in the same run on the same server: one row INSERTed and
COMMITted per op with psycopg, on one connection for the in-process rows and on C connections at
once for the HTTP rows. The HTTP rows have a budget: at least 0.2x of that floor with p99 at most
50 ms; the in-process ones have none. The HTTP harness is measured too (the same C clients
against bench/floors.py's echo), to show that the client is not what limits the HTTP rows.
Every phase runs in `--rounds` slices, floors and operations interleaved, so that a noisy
neighbour on the machine hits them alike; a round mints its slice of keys and then revokes that
slice. Exit status 1 when a budget is missed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql

from bench.async_clients import Client, run_clients
from bench.common import (
    at_most,
    command_line,
    emit_summary,
    floor_server,
    fresh_schema,
    ledger_server,
    machine_lines,
    mint_body,
    percentile,
    postgres_version,
    session_headers,
    summary_row,
)
from bench.verify import table
from infra.backends import backend_for
from infra.settings import Settings
from ledger.key_ledger import KeyLedger

SCOPES = ("books:read", "account:read")
# The budget of the HTTP rows: this share of the floor, and this p99.
HTTP_RATIO = 0.2
HTTP_P99_MS = 50.0
# About the size of a Minted event's stored state, so the floor writes as many bytes.
_FLOOR_PAYLOAD = os.urandom(400)


@dataclass
class Measured:
    """One row: ops done, wall time, each op's latency in ms and the CPU seconds the measured
    process spent (None: not measured), summed over rounds."""

    name: str
    floor: Measured | None = None
    budgeted: bool = False
    ops: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_seconds: float | None = None

    def add(self, seconds: float, latencies_ms: list[float], cpu: float | None = None) -> None:
        self.ops += len(latencies_ms)
        self.seconds += seconds
        self.latencies_ms += latencies_ms
        if cpu is not None:
            self.cpu_seconds = (self.cpu_seconds or 0.0) + cpu

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


def slices(total: int, rounds: int) -> list[range]:
    """range(total) cut into `rounds` nearly equal consecutive slices."""
    bounds = [total * r // rounds for r in range(rounds + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


def in_threads(
    count: int, ops: int, op: Callable[[C, int], None], resource: Callable[[], C]
) -> tuple[float, list[float]]:
    """op(resource, i) for i in range(ops) on `count` threads at once; wall seconds, latencies."""
    # Each thread opens its own resource (a connection or client) before the clock starts.
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(ops))
    barrier = threading.Barrier(count + 1)
    failures: list[BaseException] = []

    def worker() -> None:
        mine: list[float] = []
        held = resource()
        try:
            barrier.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                started = time.perf_counter()
                op(held, i)
                mine.append((time.perf_counter() - started) * 1000)
        except Exception as e:
            failures.append(e)
        finally:
            held.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    return seconds, latencies


def cpu_seconds(group: int | None = None) -> float:
    """User + system CPU seconds so far of this process, or of every process in process group
    `group` (a server and its workers; Linux's /proc)."""
    if group is None:
        return time.process_time()
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


Op = Callable[[Client, int], Awaitable[None]]


# Floor


class InsertFloor:
    """Single-row INSERT + COMMITs into a table of the bench schema."""

    def __init__(self, server: str, schema: str) -> None:
        self.server = server
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.bench_floor (id bigserial PRIMARY KEY, payload bytea NOT NULL)"
                ).format(sql.Identifier(schema))
            )
        self.statement = sql.SQL("INSERT INTO {}.bench_floor (payload) VALUES (%s)").format(
            sql.Identifier(schema)
        )

    def run(self, ops: int, connections: int) -> tuple[float, list[float]]:
        def insert(conn: psycopg.Connection[object], _: int) -> None:
            conn.execute(self.statement, (_FLOOR_PAYLOAD,))

        return in_threads(
            connections, ops, insert, lambda: psycopg.connect(self.server, autocommit=True)
        )


# In process


def in_process(url: str, floor: InsertFloor, keys: int, rounds: int) -> list[Measured]:
    base = Measured("FLOOR: INSERT + COMMIT, 1 connection")
    mint = Measured("in process: KeyLedger.mint", base)
    revoke = Measured("in process: KeyLedger.revoke", base)
    ledger = KeyLedger(backend_for(Settings(database_url=url)).store_env())
    try:
        ledger.catch_up()
        for part in slices(keys, rounds):
            base.add(*floor.run(len(part), 1))
            ids: list[UUID] = []
            latencies = []
            cpu = cpu_seconds()
            started = time.perf_counter()
            for i in part:
                t = time.perf_counter()
                minted = ledger.mint(
                    owner_id=f"bench-ops-{i % 16}",
                    name=f"bench key {i}",
                    scopes=SCOPES,
                    expires_in_days=None,
                    actor="operator:bench",
                )
                latencies.append((time.perf_counter() - t) * 1000)
                ids.append(minted.record.key_id)
            mint.add(time.perf_counter() - started, latencies, cpu_seconds() - cpu)
            base.add(*floor.run(len(part), 1))
            latencies = []
            cpu = cpu_seconds()
            started = time.perf_counter()
            for key_id in ids:
                t = time.perf_counter()
                ledger.revoke(key_id, actor="operator:bench", reason="bench")
                latencies.append((time.perf_counter() - t) * 1000)
            revoke.add(time.perf_counter() - started, latencies, cpu_seconds() - cpu)
            records = [ledger.index.key(k) for k in ids]
            assert all(r is not None and r.revoked for r in records)
    finally:
        ledger.close()
    return [base, mint, revoke]


# Over HTTP


def over_http(
    url: str,
    floor: InsertFloor,
    keys: int,
    clients: int,
    rounds: int,
    workdir: Path,
    workers: int = 1,
) -> list[Measured]:
    """Mint then revoke through a real server, beside the commit floor and the client's own."""
    plural = f"{clients} connection{'s' if clients > 1 else ''}"
    base = Measured(f"FLOOR: INSERT + COMMIT, {plural}")
    on = f"{clients} clients, {workers} worker{'s' if workers > 1 else ''}"
    mint = Measured(f"HTTP: POST /api/v1/keys, {on}", base, budgeted=True)
    revoke = Measured(f"HTTP: DELETE /api/v1/keys/{{id}}, {on}", base, budgeted=True)
    harness = Measured(f"harness: asyncio, {clients} clients -> echo floor")
    secret = secrets.token_urlsafe(32)
    server = ledger_server(f"ledger-{workers}", url, secret, workdir, workers=workers)
    echo = floor_server("floor", workdir)
    try:
        server.wait_ready()
        echo.wait_ready()
        sessions = [session_headers(f"bench-http-{c}", secret) for c in range(clients)]
        minted: dict[int, tuple[str, dict[str, str]]] = {}
        body = {"token": "x" * 59, "scopes": list(SCOPES)}

        async def mint_one(client: Client, i: int) -> None:
            headers = sessions[i % clients]
            answer = await client.request(
                "POST", "/api/v1/keys", headers, mint_body(f"bench key {i}", SCOPES)
            )
            if answer.status != 201:
                raise RuntimeError(f"mint answered {answer.status}: {answer.body[:200]!r}")
            minted[i] = (answer.json()["id"], headers)

        async def revoke_one(client: Client, i: int) -> None:
            key_id, headers = minted.pop(i)
            answer = await client.request("DELETE", f"/api/v1/keys/{key_id}", headers)
            if answer.status != 200 or answer.json()["status"] != "revoked":
                raise RuntimeError(f"revoke answered {answer.status}: {answer.body[:200]!r}")

        async def round_trip(client: Client, _: int) -> None:
            answer = await client.request("POST", "/echo", None, body)
            if answer.status != 200:
                raise RuntimeError(f"echo answered {answer.status}")

        def timed(op: Op, start: int, n: int) -> tuple[float, list[float], float]:
            """Ops start..start+n on the ledger server, and the server's CPU seconds."""
            before = cpu_seconds(server.process.pid)
            seconds, latencies = run_clients(server.url, clients, n, lambda c, i: op(c, start + i))
            return seconds, latencies, cpu_seconds(server.process.pid) - before

        run_clients(echo.url, clients, clients * 4, round_trip)  # warm-up, not counted
        for part in slices(keys, rounds):
            n = len(part)
            base.add(*floor.run(n, clients))
            # Key numbers continue across rounds so that every key has its own name.
            mint.add(*timed(mint_one, part.start, n))
            harness.add(*run_clients(echo.url, clients, n, round_trip))
            revoke.add(*timed(revoke_one, part.start, n))
    finally:
        server.stop()
        echo.stop()
    return [base, mint, revoke, harness]


# Reporting


def verdict(row: Measured, ratio: float | None, p99: float) -> str:
    if not row.budgeted or ratio is None:
        return "-"
    return "meets" if ratio >= HTTP_RATIO and at_most(p99, HTTP_P99_MS) == "meets" else "misses"


def render(rows: list[Measured]) -> tuple[str, list[dict[str, object]]]:
    body, summary = [], []
    budget = f"≥ {HTTP_RATIO}x, p99 ≤ {HTTP_P99_MS:g} ms"
    for row in rows:
        floor = row.floor
        ratio = row.rate / floor.rate if floor else None
        p50, p99 = percentile(row.latencies_ms, 50), percentile(row.latencies_ms, 99)
        cpu = f"{row.cpu_seconds / row.ops * 1000:.2f}" if row.cpu_seconds is not None else "-"
        judged = verdict(row, ratio, p99)
        body.append(
            [
                row.name,
                f"{row.ops:,}",
                f"{row.rate:,.0f}",
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{max(row.latencies_ms):.1f}",
                cpu,
                f"{ratio:.2f}x" if ratio is not None else "-",
                (budget if row.budgeted else "none set") if floor else "-",
                judged,
            ]
        )
        if floor and ratio is not None:
            summary.append(
                summary_row(
                    f"ledger ops: {row.name}",
                    f"{row.rate:,.0f} ops/s (p50 {p50:.1f} / p99 {p99:.1f} ms, CPU {cpu} ms/op)",
                    f"{floor.rate:,.0f} ops/s ({floor.name.removeprefix('FLOOR: ')})",
                    f"{ratio:.2f}x",
                    budget if row.budgeted else "none set",
                    judged,
                    value=row.rate,
                    floor_value=floor.rate,
                    unit="ops/s",
                )
            )
    header = ["operation", "ops", "ops/s", "p50 ms", "p99 ms", "max ms", "CPU ms/op"]
    return table([*header, "ratio to floor", "budget", "verdict"], body), summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_ops", description=__doc__)
    parser.add_argument("--keys", type=int, default=2_000, help="keys minted in process")
    parser.add_argument("--http-keys", type=int, default=2_000, help="keys minted over HTTP")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices per phase")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="server worker counts to measure"
    )
    parser.add_argument("--json", action="store_true", help="end with a bench-summary line")
    args = parser.parse_args(argv)

    shown = ["--keys", str(args.keys), "--http-keys", str(args.http_keys)]
    shown += ["--clients", str(args.clients), "--rounds", str(args.rounds)]
    shown += ["--workers", *map(str, args.workers)]
    with fresh_schema("bench_ops") as (server, schema, url):
        print("\n".join(machine_lines()))
        print(
            f"postgres: {postgres_version(server)} at {server.split('@')[-1]}, "
            f"schema {schema} (dropped at end)"
        )
        print(f"command: {command_line('bench.ledger_ops', shown)}")
        print(flush=True)
        floor = InsertFloor(server, schema)
        rows = in_process(url, floor, args.keys, args.rounds)
        print(f"in process: {args.keys:,} minted and revoked", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp:
            for workers in args.workers:
                rows += over_http(
                    url, floor, args.http_keys, args.clients, args.rounds, Path(tmp), workers
                )
        print(f"over HTTP: {args.http_keys:,} minted and revoked", flush=True)
    rendered, summary = render(rows)
    print()
    print(rendered)
    print()
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("notes: latencies are per call (in process) or per request at the client (HTTP); the")
    print("  1-connection floor ran twice per round (before the mints and before the revokes);")
    print("  every key's owner is one of 16 users; the event store takes a table lock per append;")
    print("  CPU ms/op: this process's (in process) or the server's (HTTP) CPU time per op")
    if args.json:
        emit_summary(summary)
    return 1 if any(row["verdict"] == "misses" for row in summary) else 0


if __name__ == "__main__":
    sys.exit(main())

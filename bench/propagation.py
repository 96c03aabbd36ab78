"""Revocation propagation: revoke on server A, time until server B refuses the token.

    .venv/bin/python -m bench.propagation [--keys N] [--sqlite-keys M] [--json]

Two `anthra-keys serve` processes, A and B (1 worker each, access log on), on one event store:
a fresh schema of the PostgreSQL at ANTHRA_BENCH_POSTGRES_URL (dropped at the end), then, unless
`--sqlite-keys 0`, one SQLite file in a temp dir. N keys (default 1,000; M = 200 on SQLite) are
minted through A's API with an Auth.js session cookie, and the clock starts only once B accepts
every one of them. Then, one key at a time: `DELETE /api/v1/keys/{id}` on A; from the moment A's
response arrives, `POST /v1/verify` on B over a kept-alive connection, in a tight loop, until B
answers `valid: false`. The time recorded is from A's response to the arrival of B's first
refusal: an upper bound, a round trip to B (well under a millisecond) above the true delay.

Budgets (docs/design.md): p99 <= 100 ms on PostgreSQL (aim 25 ms), <= 1 s on SQLite; and no token
accepted by B more than 1 s after its revoke returned (counted per key, must be 0). A `503` from
B (its index cannot vouch for itself) is not an acceptance, and is counted apart.

The floor on PostgreSQL is the least this measurement could show, taken in the same run: a
`NOTIFY` committed on one connection until a second connection that `LISTEN`s receives it (what
the subscription is built on), plus one verify round trip to B. On SQLite, B polls the store
every ANTHRA_POLL_INTERVAL (0.1 s by default): no floor is measured. Before each revoke comes a
random pause (up to 100 ms on SQLite, 10 ms on PostgreSQL), so that revokes do not fall in step
with B's polling.

Last, A's own read-your-writes: for a further set of keys, revoke on A and ask A at once; it
must refuse every one (docs/design.md: the revoking process sees the revoke before it answers).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from bench.common import (
    NO_FAILED_ATTEMPT_LIMIT,
    Server,
    at_most,
    command_line,
    emit_summary,
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

POSTGRES_P99_MS = 100.0
POSTGRES_AIM_MS = 25.0
SQLITE_P99_MS = 1000.0
STALE_AFTER_S = 1.0
GIVE_UP_S = 5.0
POLL_INTERVAL_S = 0.1  # the servers' default ANTHRA_POLL_INTERVAL, which this bench leaves alone
POSTGRES_JITTER_S = 0.01
MINTING_CLIENTS = 8
_USERS = 10


@dataclass
class Key:
    key_id: str
    token: str
    headers: dict[str, str]


@dataclass
class Propagation:
    """What B did after each revoke on A."""

    backend: str
    delays_ms: list[float] = field(default_factory=list)
    probes: int = 0
    unavailable: int = 0  # 503 answers from B
    stale_keys: int = 0  # keys B accepted more than STALE_AFTER_S after the revoke returned
    never_refused: int = 0
    own_checked: int = 0
    own_accepted: int = 0  # keys A accepted after its own revoke returned


# Keys


def mint_keys(base: str, secret: str, count: int) -> list[Key]:
    """count keys minted through the API by a few signed-in users, several requests at once."""
    sessions = [session_headers(f"bench-propagation-{u}", secret) for u in range(_USERS)]
    keys: list[Key | None] = [None] * count
    counter = iter(range(count))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                headers = sessions[i % _USERS]
                try:
                    response = client.post(
                        f"{base}/api/v1/keys",
                        json=mint_body(f"propagation {i}", ["books:read"]),
                        headers=headers,
                    )
                    if response.status_code != 201:
                        raise RuntimeError(f"minting answered {response.status_code}")
                except Exception as e:
                    failures.append(e)
                    return
                body = response.json()
                keys[i] = Key(body["id"], body["token"], headers)

    threads = [threading.Thread(target=worker) for _ in range(MINTING_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return [k for k in keys if k is not None]


def valid_on(client: httpx.Client, base: str, token: str) -> bool | None:
    """B's answer for a token: True, False, or None for a 503 (index not current)."""
    response = client.post(f"{base}/v1/verify", json={"token": token})
    if response.status_code == 503:
        return None
    if response.status_code != 200:
        raise RuntimeError(f"verify answered {response.status_code}")
    return bool(response.json()["valid"])


def wait_accepted(base: str, keys: list[Key], timeout: float = 60.0) -> float:
    """Seconds until the server accepts every token."""
    started = time.monotonic()
    pending = list(keys)
    with httpx.Client(timeout=10) as client:
        while pending:
            pending = [k for k in pending if valid_on(client, base, k.token) is not True]
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"B still refuses {len(pending)} fresh tokens after {timeout} s")
            if pending:
                time.sleep(0.05)
    return time.monotonic() - started


# Measuring


def measure(
    a: Server, b: Server, keys: list[Key], own: list[Key], backend: str, jitter: float
) -> Propagation:
    """Revoke each key on A and probe B until it refuses; then A's own read-your-writes."""
    result = Propagation(backend)
    rng = random.Random(20_251_130)
    with httpx.Client(timeout=10) as on_a, httpx.Client(timeout=10) as on_b:
        for key in keys:
            # A random pause, so that revokes do not fall in step with B's polling: each
            # revoke would otherwise come just after the poll that ended the previous wait.
            time.sleep(rng.uniform(0, jitter))
            revoke(on_a, a.url, key)
            revoked_at = time.perf_counter()
            stale = False
            while True:
                sent = time.perf_counter()
                answer = valid_on(on_b, b.url, key.token)
                arrived = time.perf_counter()
                result.probes += 1
                if answer is False:
                    result.delays_ms.append((arrived - revoked_at) * 1000)
                    break
                if answer is None:
                    result.unavailable += 1
                elif sent - revoked_at > STALE_AFTER_S:
                    stale = True
                if arrived - revoked_at > GIVE_UP_S:
                    result.never_refused += 1
                    break
            result.stale_keys += stale
        for key in own:
            revoke(on_a, a.url, key)
            result.own_checked += 1
            result.own_accepted += valid_on(on_a, a.url, key.token) is not False
    return result


def revoke(client: httpx.Client, base: str, key: Key) -> None:
    response = client.delete(f"{base}/api/v1/keys/{key.key_id}", headers=key.headers)
    if response.status_code != 200:
        raise RuntimeError(f"revoke answered {response.status_code}")


def notify_floor(server: str, b: Server, token: str, count: int) -> list[float]:
    """ms from a committed NOTIFY to its arrival on a listening connection, plus one probe of B."""
    # The least any follower could show here: the store's notification reaching another
    # connection, then one verify round trip to B to see the answer.
    delays = []
    with (
        psycopg.connect(server, autocommit=True) as listener,
        psycopg.connect(server, autocommit=True) as sender,
        httpx.Client(timeout=10) as on_b,
    ):
        listener.execute("LISTEN bench_propagation")
        for i in range(count):
            sender.execute("SELECT pg_notify('bench_propagation', %s)", (str(i),))
            committed = time.perf_counter()
            for _ in listener.notifies(timeout=5, stop_after=1):
                pass
            if valid_on(on_b, b.url, token) is not True:
                raise RuntimeError("B refused a live token during the floor")
            delays.append((time.perf_counter() - committed) * 1000)
    return delays


def run_backend(
    backend: str, url: str, count: int, own: int, workdir: Path, floor_server: str | None
) -> tuple[Propagation, list[float]]:
    """Start A, then B, on the store at url; mint, wait for B, floor, measure; stop both."""
    secret = secrets.token_urlsafe(32)
    a = ledger_server(f"{backend}-A", url, secret, workdir, **NO_FAILED_ATTEMPT_LIMIT)
    servers = [a]
    try:
        # A first: it creates the tables, and two processes racing to create them would fail.
        a.wait_ready()
        b = ledger_server(f"{backend}-B", url, secret, workdir, **NO_FAILED_ATTEMPT_LIMIT)
        servers.append(b)
        b.wait_ready()
        keys = mint_keys(a.url, secret, count + own)
        caught_up = wait_accepted(b.url, keys)
        print(f"{backend}: {len(keys):,} keys minted on A; B accepted all in {caught_up:.2f} s")
        floor = notify_floor(floor_server, b, keys[0].token, count) if floor_server else []
        jitter = POLL_INTERVAL_S if backend == "sqlite" else POSTGRES_JITTER_S
        result = measure(a, b, keys[:count], keys[count:], backend, jitter)
        print(f"{backend}: {count:,} revoked on A and refused by B", flush=True)
        return result, floor
    finally:
        for server in servers:
            server.stop()


# Reporting


def _stats(samples: Sequence[float]) -> tuple[float, float, float]:
    return percentile(samples, 50), percentile(samples, 99), max(samples, default=float("nan"))


def report(
    results: list[Propagation], floor_ms: list[float]
) -> tuple[str, list[dict[str, object]]]:
    body: list[list[str]] = []
    summary: list[dict[str, object]] = []
    f50, f99, fmax = _stats(floor_ms) if floor_ms else (float("nan"),) * 3
    if floor_ms:
        body.append(
            [
                "FLOOR: NOTIFY -> LISTEN + 1 probe of B",
                f"{len(floor_ms):,}",
                f"{f50:.2f}",
                f"{f99:.2f}",
                f"{fmax:.2f}",
                "1.00x",
                "-",
                "-",
            ]
        )
    for r in results:
        p50, p99, worst = _stats(r.delays_ms)
        postgres = r.backend == "postgres"
        budget = POSTGRES_P99_MS if postgres else SQLITE_P99_MS
        ratio = p99 / f99 if postgres and floor_ms else None
        verdict = at_most(p99, budget) if not r.never_refused else "misses"
        name = f"{r.backend}: revoke on A -> refused by B"
        budget_text = f"p99 ≤ {budget:,.0f} ms" + (
            f" (aim {POSTGRES_AIM_MS:.0f})" if postgres else ""
        )
        body.append(
            [
                name,
                f"{len(r.delays_ms):,}",
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{worst:.2f}",
                f"{ratio:.1f}x" if ratio is not None else "-",
                budget_text,
                verdict,
            ]
        )
        summary.append(
            summary_row(
                f"propagation: {name}, p99",
                f"{p99:.1f} ms (p50 {p50:.1f}, max {worst:.1f}; {len(r.delays_ms):,} keys)",
                f"{f99:.1f} ms (NOTIFY -> LISTEN + probe, p99)" if ratio is not None else "-",
                f"{ratio:.1f}x" if ratio is not None else "-",
                budget_text,
                verdict,
                value=p99,
                floor_value=f99 if ratio is not None else None,
                unit="ms",
            )
        )
        stale_verdict = "meets" if r.stale_keys == 0 and r.never_refused == 0 else "misses"
        summary.append(
            summary_row(
                f"propagation: {r.backend}: keys B accepted > 1 s after revoke",
                f"{r.stale_keys + r.never_refused} of {len(r.delays_ms) + r.never_refused:,}",
                budget="= 0",
                verdict=stale_verdict,
                value=r.stale_keys + r.never_refused,
                unit="keys",
            )
        )
        own_verdict = "meets" if r.own_accepted == 0 else "misses"
        summary.append(
            summary_row(
                f"propagation: {r.backend}: A accepted its own revoked key",
                f"{r.own_accepted} of {r.own_checked:,}",
                budget="= 0",
                verdict=own_verdict,
                value=r.own_accepted,
                unit="keys",
            )
        )
    header = ["measurement (ms)", "keys", "p50", "p99", "max", "p99 vs floor", "budget"]
    counts = [
        [
            r.backend,
            f"{r.probes:,}",
            f"{r.unavailable:,}",
            f"{r.stale_keys:,}",
            f"{r.never_refused:,}",
            f"{r.own_accepted} of {r.own_checked}",
        ]
        for r in results
    ]
    count_header = ["backend", "probes of B", "503 from B", "stale > 1 s", "never refused"]
    rendered = (
        table([*header, "verdict"], body)
        + "\n\n"
        + table([*count_header, "A accepted own revoked"], counts)
    )
    return rendered, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.propagation", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000, help="keys revoked on PostgreSQL")
    parser.add_argument(
        "--sqlite-keys", type=int, default=200, help="keys revoked on SQLite (0: skip SQLite)"
    )
    parser.add_argument("--own", type=int, default=100, help="keys for A's read-your-writes check")
    parser.add_argument("--json", action="store_true", help="end with a bench-summary line")
    args = parser.parse_args(argv)

    shown = ["--keys", str(args.keys), "--sqlite-keys", str(args.sqlite_keys)]
    shown += ["--own", str(args.own)]
    results: list[Propagation] = []
    with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
        workdir = Path(tmp)
        with fresh_schema("bench_propagation") as (server, schema, url):
            print("\n".join(machine_lines()))
            print(
                f"postgres: {postgres_version(server)} at {server.split('@')[-1]}, "
                f"schema {schema} (dropped at end)"
            )
            print(f"command: {command_line('bench.propagation', shown)}")
            print(flush=True)
            result, floor_ms = run_backend("postgres", url, args.keys, args.own, workdir, server)
            results.append(result)
        if args.sqlite_keys:
            sqlite_url = f"sqlite:{workdir / 'ledger.sqlite3'}"
            results.append(
                run_backend("sqlite", sqlite_url, args.sqlite_keys, args.own, workdir, None)[0]
            )
    rendered, summary = report(results, floor_ms)
    print()
    print(rendered)
    print()
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("notes: a delay runs from the arrival of A's revoke response to the arrival of B's")
    print("  first `valid: false`; B is probed over one kept-alive connection; the floor runs")
    print("  from a NOTIFY's commit to its arrival on a second connection plus one verify on B;")
    pauses = (
        f"{POLL_INTERVAL_S * 1000:.0f} ms (SQLite), {POSTGRES_JITTER_S * 1000:.0f} ms (PostgreSQL)"
    )
    print(f"  a random pause of up to {pauses} comes before each revoke")
    if args.json:
        emit_summary(summary)
    return 0 if all(r["verdict"] != "misses" for r in summary) else 1


if __name__ == "__main__":
    sys.exit(main())

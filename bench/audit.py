"""Audit trail benchmark on PostgreSQL: fill, project, query one owner's pages, verify the chain.

    .venv/bin/python -m bench.audit [--events N] [--owners O] [--queries Q]

Fills a fresh schema (dropped at the end) of the PostgreSQL at ANTHRA_BENCH_POSTGRES_URL with
N events through the ledger's own event store: keys of O owners, three events each (Minted,
ScopesSet, then Revoked or Expired), made by the ApiKey aggregate and saved a few thousand at
a time, a key's later events in later saves, the way they arrive in life. The projector then
builds the audit trail with its real hash chain, and ANALYZE runs once (as autovacuum would
soon after a bulk load). Each query kind runs Q times for random owners, after a warm-up,
through `AuditView.query` (SQL, network and decoding of the page included); the budget is
p95 <= 50 ms for a page of 100. Chain verification is timed over the whole trail, the chain
alone and with every row derived again from its event.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shlex
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from bench.verify import machine, table
from domain.actors import operator, user
from domain.api_key import ApiKey
from infra.backends import Backend, backend_for
from infra.settings import Settings
from ledger.key_ledger import KeyLedger
from projections.audit_trail.check import check_chain
from projections.audit_trail.projection import AuditProjector
from projections.audit_trail.view import AuditQuery, AuditView

QUERY_BUDGET_MS = 50.0
PAGE = 100
_KEYS_PER_SAVE = 1_000
_START = datetime(2025, 1, 1, tzinfo=UTC)
_SCOPE_SETS = (["books:read"], ["books:read", "books:write"], ["account:read", "books:read"])


def bench_url() -> str:
    return os.environ.get("ANTHRA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# Filling


def key_lives(keys: int, owners: int, seconds: float, rng: random.Random) -> Iterator[list[Any]]:
    """Each key's three events, made by the aggregate, with its owner and times spread out."""
    for i in range(keys):
        owner = f"owner_{rng.randrange(owners):04d}"
        minted_at = _START + timedelta(seconds=seconds * i / keys)
        expiring = i % 3 == 2
        key = ApiKey.mint(
            key_id=uuid.uuid4(),
            owner_id=owner,
            name=f"key {i}",
            token_sha256=rng.randbytes(32).hex(),
            prefix=f"ant_live_{i % 1000:03d}",
            scopes=_SCOPE_SETS[i % len(_SCOPE_SETS)],
            expires_in_days=1 if expiring else None,
            actor=user(owner),
            at=minted_at,
            context={"request_id": f"req-{i}", "ip": "203.0.113.7"},
        )
        key.set_scopes(
            ["books:read", "generation:run"], user(owner), minted_at + timedelta(hours=1)
        )
        if expiring:
            key.expire(minted_at + timedelta(days=1))
        else:
            key.revoke(operator("bench"), "rotated", minted_at + timedelta(days=2))
        yield list(key.collect_events())


def fill(ledger: KeyLedger, events: int, owners: int, rng: random.Random) -> list[tuple[str, UUID]]:
    """Save about `events` events; returns every key as (owner, key id)."""
    # A year of history, so that time windows select a part of each owner's rows.
    lives = key_lives(max(1, events // 3), owners, 365 * 86_400.0, rng)
    made: list[tuple[str, UUID]] = []
    # Save i holds the Minted events of chunk i, the ScopesSet of chunk i-1 and the last
    # events of chunk i-2: a key's history is spread over the log, as it is in life.
    scopes_set: list[Any] = []
    last: deque[list[Any]] = deque()
    while chunk := list(itertools.islice(lives, _KEYS_PER_SAVE)):
        batch = [life[0] for life in chunk] + scopes_set
        if len(last) == 2:
            batch += last.popleft()
        ledger.save(*batch)
        made += [(life[0].owner_id, life[0].originator_id) for life in chunk]
        scopes_set = [life[1] for life in chunk]
        last.append([life[2] for life in chunk])
    ledger.save(*scopes_set, *(last.popleft() if last else []))
    if last:
        ledger.save(*last.popleft())
    return made


# Timing


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def time_queries(
    view: AuditView, make: Callable[[], AuditQuery], runs: int
) -> tuple[list[float], float]:
    """Milliseconds per query, and the mean page length."""
    for _ in range(min(20, runs)):
        view.query(make())
    samples, lengths = [], 0
    for _ in range(runs):
        q = make()
        started = time.perf_counter()
        page = view.query(q)
        samples.append((time.perf_counter() - started) * 1000)
        lengths += len(page)
    return samples, lengths / runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store")
    parser.add_argument("--owners", type=int, default=1_000, help="owners of the keys")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per kind")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    server = bench_url()
    schema = f"bench_audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    separator = "&" if "?" in server else "?"
    backend = backend_for(Settings(database_url=f"{server}{separator}schema={schema}"))
    ledger = KeyLedger(backend.store_env())
    try:
        return run(args, rng, backend, ledger, server, schema, pg_version)
    finally:
        ledger.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(
    args: argparse.Namespace,
    rng: random.Random,
    backend: Backend,
    ledger: KeyLedger,
    server: str,
    schema: str,
    pg_version: str,
) -> int:
    print("\n".join(machine()))
    print(f"postgres: {pg_version} at {server.split('@')[-1]}, schema {schema} (dropped at end)")
    print(f"command: cd {shlex.quote(os.getcwd())} && {command_line(args)}")
    print(flush=True)

    started = time.perf_counter()
    keys = fill(ledger, args.events, args.owners, rng)
    fill_s = time.perf_counter() - started
    events = ledger.recorder.max_notification_id() or 0
    print(f"filled {events:,} events ({len(keys):,} keys) in {fill_s:.1f} s", flush=True)

    view = backend.audit_view(ledger)
    projector = AuditProjector(ledger.recorder, ledger.mapper, ledger.name, view)
    started = time.perf_counter()
    projected = projector.catch_up()
    project_s = time.perf_counter() - started
    print(f"projected {projected:,} rows in {project_s:.1f} s", flush=True)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".audit_events')
        size = conn.execute(
            "SELECT pg_total_relation_size(%s)", (f'"{schema}".audit_events',)
        ).fetchone()[0]  # type: ignore[index]

    by_owner: dict[str, list[UUID]] = {}
    for owner_id, key_id in keys:
        by_owner.setdefault(owner_id, []).append(key_id)
    owners = sorted(by_owner)
    span = timedelta(days=365)

    def owner() -> str:
        return rng.choice(owners)

    def window(o: str) -> AuditQuery:
        since = _START + span * rng.random() * 0.9
        return AuditQuery(owner_id=o, since=since, until=since + span / 10, limit=PAGE)

    def by_key() -> AuditQuery:
        o = owner()
        return AuditQuery(owner_id=o, key_id=rng.choice(by_owner[o]), limit=PAGE)

    def next_page() -> AuditQuery:
        o = owner()
        first = view.query(AuditQuery(owner_id=o, limit=PAGE))
        return AuditQuery(owner_id=o, cursor=first[-1].position if first else None, limit=PAGE)

    kinds: list[tuple[str, Callable[[], AuditQuery]]] = [
        ("owner, newest first", lambda: AuditQuery(owner_id=owner(), limit=PAGE)),
        ("owner, oldest first", lambda: AuditQuery(owner_id=owner(), newest_first=False)),
        ("owner, next page (cursor)", next_page),
        ("owner + key", by_key),
        ("owner + type Revoked", lambda: AuditQuery(owner_id=owner(), types=("Revoked",))),
        ("owner + since/until (36 days)", lambda: window(owner())),
    ]
    body = []
    for name, make in kinds:
        samples, rows = time_queries(view, make, args.queries)
        p50, p95, worst = percentiles(samples)
        verdict = "meets" if p95 <= QUERY_BUDGET_MS else "misses"
        body.append(
            [name, f"{rows:.0f}", f"{p50:.2f}", f"{p95:.2f}", f"{worst:.2f}", "50", verdict]
        )
    header = ["query (page of 100)", "rows", "p50 ms", "p95 ms", "max ms", "budget p95", "verdict"]

    started = time.perf_counter()
    chain = check_chain(ledger.recorder, view)
    chain_s = time.perf_counter() - started
    started = time.perf_counter()
    full = check_chain(ledger.recorder, view, mapper=ledger.mapper)
    full_s = time.perf_counter() - started

    print()
    print(f"events: {events:,} in {len(keys):,} keys of {len(owners):,} owners")
    print(f"queries: {args.queries} per kind after 20 warm-up, random owners")
    print()
    print(table(header, body))
    print()
    rate = [
        [
            "fill (aggregates + store.save)",
            f"{events:,}",
            f"{fill_s:.1f}",
            f"{events / fill_s:,.0f}",
        ],
        [
            "project (AuditProjector.catch_up)",
            f"{projected:,}",
            f"{project_s:.1f}",
            f"{projected / project_s:,.0f}",
        ],
        [
            f"verify chain (ok={chain.ok})",
            f"{chain.checked:,}",
            f"{chain_s:.1f}",
            f"{chain.checked / chain_s:,.0f}",
        ],
        [
            f"verify chain + rows from events (ok={full.ok})",
            f"{full.checked:,}",
            f"{full_s:.1f}",
            f"{full.checked / full_s:,.0f}",
        ],
    ]
    print(table(["stage", "events", "seconds", "events/s"], rate))
    print()
    print(
        f"audit_events with indexes: {size / 2**20:,.0f} MiB ({size / max(1, events):,.0f} B/row)"
    )
    ok = chain.ok and full.ok and all(r[-1] == "meets" for r in body)
    return 0 if ok else 1


def command_line(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else None
    argv = [python or sys.executable, "-m", "bench.audit", "--events", str(args.events)]
    argv += ["--owners", str(args.owners), "--queries", str(args.queries)]
    return shlex.join(argv)


if __name__ == "__main__":
    raise SystemExit(main())

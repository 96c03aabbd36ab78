"""Cold start benchmark on PostgreSQL: a fresh process's index by full replay, and by warm start.

    .venv/bin/python -m bench.cold_start [--keys N] [--tail T] [--runs R] [--no-loaders]

Fills a fresh schema (dropped at the end) of the PostgreSQL at ANTHRA_BENCH_POSTGRES_URL with
N Minted events through the ledger's own event store (keys of N/4 owners, real token digests
and prefixes, three scope sets, every other key expiring), 1,000 aggregates a save; projects
the key states once; then, before each warm start, appends T more events (revocations,
scope changes and new keys: what a fleet appends while a process is down).

Every start is a fresh process (`python -m bench.cold_start --child MODE`), timed from the
parent's spawn to the instant the child's index is ready, so interpreter start, imports and
connecting are in the figure; the budget is docs/design.md's "cold start to ready with 1M keys
≤ 4 s". The modes:

- replay: `KeyLedger.catch_up()` from position 0, what `IndexFollower.start` does today;
- replay, collector paused: the same with cyclic GC off, to show what of it is the collector;
- warm start: `infra.warm_start.warm_start` (key states catch-up, load, replay of the rest).

RSS per key is the child's RSS growth from before the catch-up to after it (after a full
collection), over the keys in its index. With loaders on, the table also compares ways of
reading the key states table into the index, each in a fresh process: the server-side cursor
`PostgresKeyStatesView.load` uses, and binary and text COPY with the same loop.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from bench.verify import machine, table
from domain import token as token_format
from domain.actors import operator, user
from domain.api_key import ApiKey
from infra.backends import Backend, backend_for
from infra.settings import Settings
from infra.warm_start import warm_start
from ledger.key_ledger import KeyLedger
from ledger.key_states import KeyStates
from projections.key_states.projection import collector_paused
from projections.key_states.view import FLAGS, LOADED, TABLE, load_rows

READY_BUDGET_S = 4.0
_KEYS_PER_SAVE = 1_000
_KEYS_PER_OWNER = 4
# Keys kept in memory to change in the tails: enough for every tail of a default run.
_KEPT_EVERY = 20
_START = datetime(2025, 1, 1, tzinfo=UTC)
_SCOPE_SETS = (["books:read"], ["books:read", "books:write"], ["account:read", "books:read"])
_MODES = ("replay", "replay-nogc", "warm")
_LOADERS = ("cursor", "copy-binary", "copy-text")


def bench_url() -> str:
    return os.environ.get("ANTHRA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def ledger_for(url: str) -> tuple[Backend, KeyLedger]:
    backend = backend_for(Settings(database_url=url))
    return backend, KeyLedger(backend.store_env())


def key_states(backend: Backend, ledger: KeyLedger) -> KeyStates:
    """The key states beside the ledger's events, tables created if missing."""
    view = backend.key_states_view(ledger)
    assert view is not None
    return ledger.read_states_from(view)


# Filling


def minted(i: int) -> ApiKey:
    """Key number i, minted as the ledger mints: a real token's digest and display prefix."""
    token = token_format.generate()
    owner = f"user_{i // _KEYS_PER_OWNER:08d}"
    return ApiKey.mint(
        key_id=uuid.uuid4(),
        owner_id=owner,
        name=f"integration {i}",
        token_sha256=token_format.digest(token).hex(),
        prefix=token_format.display_prefix(token),
        scopes=_SCOPE_SETS[i % len(_SCOPE_SETS)],
        expires_in_days=3650 if i % 2 else None,
        actor=user(owner),
        at=_START,
    )


def fill(ledger: KeyLedger, keys: int) -> list[ApiKey]:
    """Save `keys` Minted events; returns every _KEPT_EVERY-th key, to change later."""
    kept: list[ApiKey] = []
    made = (minted(i) for i in range(keys))
    while chunk := list(itertools.islice(made, _KEYS_PER_SAVE)):
        ledger.save(*chunk)
        kept += chunk[::_KEPT_EVERY]
    return kept


def append_tail(ledger: KeyLedger, kept: list[ApiKey], events: int, rng: random.Random) -> int:
    """Revoke, re-scope and mint `events` times, as a live fleet does; returns the keys minted."""
    changed: list[Any] = []
    mints = 0
    at = datetime.now(UTC)
    for i in range(events):
        roll = rng.random()
        if roll < 0.6 and kept:
            key = kept.pop(rng.randrange(len(kept)))
            if roll < 0.3:
                key.revoke(operator("bench"), "rotated", at)
            else:
                key.set_scopes(["books:read", "generation:run"], user(key.owner_id), at)
            changed.append(key)
        else:
            changed.append(minted(1_000_000_000 + rng.randrange(10**9) + i))
            mints += 1
        if len(changed) == _KEYS_PER_SAVE:
            ledger.save(*changed)
            changed.clear()
    if changed:
        ledger.save(*changed)
    return mints


# The child: one fresh process, one start


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(mode: str, url: str) -> None:
    imported = time.time()
    backend, ledger = ledger_for(url)
    ledger.recorder.max_notification_id()  # connect before the baseline
    gc.collect()
    before = _rss()
    started = time.time()
    detail: dict[str, Any] = {}
    if mode == "replay":
        ledger.catch_up()
    elif mode == "replay-nogc":
        with collector_paused():
            ledger.catch_up()
    elif mode == "warm":
        # Opening the key states (their tables created if missing) is part of the timed start.
        w = warm_start(ledger, key_states(backend, ledger))
        detail = {
            "states_catch_up_s": w.states_catch_up_s,
            "load_s": w.load_s,
            "replay_s": w.replay_s,
            "projected": w.projected,
            "replayed": w.replayed,
        }
    elif mode == "cursor":
        key_states(backend, ledger).view.load(ledger.index)
    else:
        load_with(mode, ledger)
    ready = time.time()
    gc_started = time.perf_counter()
    gc.collect()
    full_gc_s = time.perf_counter() - gc_started
    after = _rss()
    print(
        json.dumps(
            {
                "imported": imported,
                "started": started,
                "ready": ready,
                "keys": len(ledger.index),
                "position": ledger.index.position,
                "rss_before": before,
                "rss_after": after,
                "full_gc_s": full_gc_s,
                **detail,
            }
        ),
        flush=True,
    )
    ledger.close()


def load_with(loader: str, ledger: KeyLedger) -> None:
    """The key states table into the index by COPY, binary or text, through the index's load."""
    schema = ledger.factory.datastore.schema  # type: ignore[attr-defined]
    select = SQL("SELECT uuid_send(key_id), {} FROM {}").format(
        SQL(", ").join(SQL(c) if c == FLAGS else Identifier(c) for c in LOADED),
        Identifier(schema, TABLE),
    )
    types = ["bytea", "text", "bytea", "text", "float8", "float8", "int4", "float8", "int8"]
    fmt = SQL("BINARY" if loader == "copy-binary" else "TEXT")
    statement = SQL("COPY ({}) TO STDOUT (FORMAT {})").format(select, fmt)
    with (
        collector_paused(),
        psycopg.connect(bench_url(), autocommit=True) as conn,
        conn.transaction(),
    ):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with conn.cursor() as curs, curs.copy(statement) as copy:
            copy.set_types(types)
            rows = copy.rows()
            pages = iter(lambda: list(itertools.islice(rows, 5_000)), [])
            load_rows(ledger.index, pages, lambda raw: int.from_bytes(raw, "big"))


def start_in_child(mode: str, url: str) -> dict[str, Any]:
    """Run one start in a fresh process; its timings, with the spawn instant."""
    command = [sys.executable, "-m", "bench.cold_start", "--child", mode, "--url", url]
    spawned = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["spawned"] = spawned
    result["ready_s"] = result["ready"] - spawned
    result["rss_per_key"] = (result["rss_after"] - result["rss_before"]) / max(1, result["keys"])
    return result


# Reporting


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="Minted events in the store")
    parser.add_argument("--tail", type=int, default=10_000, help="events after the snapshot")
    parser.add_argument("--runs", type=int, default=3, help="starts per mode")
    parser.add_argument("--no-loaders", action="store_true", help="skip the loader comparison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=_MODES + _LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url)
        return 0

    server = bench_url()
    schema = f"bench_cold_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    separator = "&" if "?" in server else "?"
    url = f"{server}{separator}schema={schema}"
    backend, ledger = ledger_for(url)
    try:
        return run(args, backend, ledger, url, server, schema, pg_version)
    finally:
        ledger.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(
    args: argparse.Namespace,
    backend: Backend,
    ledger: KeyLedger,
    url: str,
    server: str,
    schema: str,
    pg_version: str,
) -> int:
    rng = random.Random(args.seed)
    print("\n".join(machine()))
    print(f"postgres: {pg_version} at {server.split('@')[-1]}, schema {schema} (dropped at end)")
    print(f"command: cd {shlex.quote(os.getcwd())} && {command_line(args)}")
    print(flush=True)

    started = time.perf_counter()
    kept = fill(ledger, args.keys)
    fill_s = time.perf_counter() - started
    print(f"filled {args.keys:,} Minted events in {fill_s:.1f} s", flush=True)
    states = key_states(backend, ledger)
    started = time.perf_counter()
    projected = states.catch_up()
    project_s = time.perf_counter() - started
    print(f"projected the snapshot: {projected:,} events in {project_s:.1f} s", flush=True)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{schema}".{TABLE}')
        size = conn.execute(
            "SELECT pg_total_relation_size(%s)", (f'"{schema}".{TABLE}',)
        ).fetchone()[0]  # type: ignore[index]

    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in _MODES}
    loaders: dict[str, list[dict[str, Any]]] = {loader: [] for loader in _LOADERS}
    keys, tails = args.keys, 0
    for run_number in range(args.runs):
        # Interleaved, so that a noisy neighbour hits every mode alike.
        for mode in _MODES:
            if mode == "warm" and args.tail:
                keys += append_tail(ledger, kept, args.tail, rng)
                tails += args.tail
            results[mode].append(start_in_child(mode, url))
            if mode == "warm":
                # What the running processes' followers do meanwhile: the next start finds the
                # key states current, less the next tail (and the loaders read them whole).
                states.catch_up()
            r = results[mode][-1]
            print(f"run {run_number + 1} {mode}: ready in {r['ready_s']:.2f} s", flush=True)
            # Each start must hold every key the store has, or its time means nothing.
            assert r["keys"] == keys, f"{mode} built {r['keys']:,} keys, the store has {keys:,}"
            assert r["position"] == ledger.recorder.max_notification_id()
        if not args.no_loaders:
            # The key states were just caught up: every loader reads the same table.
            for loader in _LOADERS:
                loaders[loader].append(start_in_child(loader, url))
                assert loaders[loader][-1]["keys"] == keys

    events = ledger.recorder.max_notification_id() or 0

    def cells(rs: list[dict[str, Any]]) -> list[str]:
        ready = [r["ready_s"] for r in rs]
        median = statistics.median(ready)
        return [
            f"{median:.2f}",
            f"{min(ready):.2f} / {max(ready):.2f}",
            f"≤ {READY_BUDGET_S:.0f}",
            "meets" if median <= READY_BUDGET_S else "misses",
            f"{statistics.median(r['rss_per_key'] for r in rs):.0f}",
            f"{statistics.median(r['full_gc_s'] for r in rs):.2f}",
        ]

    names = {
        "replay": "full replay (KeyLedger.catch_up from 0)",
        "replay-nogc": "full replay, collector paused",
        "warm": "warm_start (snapshot + replay of the rest)",
    }
    body = [[names[mode], *cells(results[mode])] for mode in _MODES]
    header = ["start to ready index", "median s", "min / max s", "budget s", "verdict"]
    header += ["RSS B/key", "1st full gc s"]
    print()
    print(f"store at the end: {events:,} events, {keys:,} keys; runs: {args.runs} per mode")
    print()
    print(table(header, body))

    print()
    parts = []
    for mode in _MODES:
        for r in results[mode]:
            parts.append(
                [
                    names[mode],
                    f"{r['imported'] - r['spawned']:.2f}",
                    f"{r['started'] - r['imported']:.2f}",
                    f"{r.get('states_catch_up_s', 0.0):.2f} ({r.get('projected', 0):,})",
                    f"{r.get('load_s', 0.0):.2f}",
                    f"{r.get('replay_s', r['ready'] - r['started']):.2f} "
                    f"({r.get('replayed', r['position']):,})",
                    f"{r['ready_s']:.2f}",
                ]
            )
    print(
        table(
            [
                "each start",
                "python+imports s",
                "connect s",
                "snapshot catch-up s (events)",
                "load s",
                "replay s (events)",
                "ready s",
            ],
            parts,
        )
    )

    if not args.no_loaders:
        print()
        rows = []
        for loader in _LOADERS:
            load_s = [r["ready"] - r["started"] for r in loaders[loader]]
            rows.append(
                [
                    {
                        "cursor": "server-side cursor, binary (PostgresKeyStatesView.load)",
                        "copy-binary": "COPY … TO STDOUT (FORMAT BINARY)",
                        "copy-text": "COPY … TO STDOUT (FORMAT TEXT)",
                    }[loader],
                    f"{statistics.median(load_s):.2f}",
                    f"{min(load_s):.2f} / {max(load_s):.2f}",
                    f"{statistics.median(r['rss_per_key'] for r in loaders[loader]):.0f}",
                ]
            )
        print(table(["reading the snapshot table", "median s", "min / max s", "RSS B/key"], rows))

    print()
    print(
        f"fill: {fill_s:.1f} s ({args.keys / fill_s:,.0f} events/s); snapshot projection: "
        f"{project_s:.1f} s ({projected / project_s:,.0f} events/s); tails: {tails:,} events; "
        f"key states table and indexes: {size / 2**20:,.0f} MiB ({size / args.keys:,.0f} B/key)"
    )
    return 0 if statistics.median(r["ready_s"] for r in results["warm"]) <= READY_BUDGET_S else 1


def command_line(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else None
    argv = [python or sys.executable, "-m", "bench.cold_start", "--keys", str(args.keys)]
    argv += ["--tail", str(args.tail), "--runs", str(args.runs)]
    if args.no_loaders:
        argv.append("--no-loaders")
    return shlex.join(argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""In-process verification benchmark: `VerificationIndex.verify` against its floor, same run.

    .venv/bin/python -m bench.verify [--keys N] [--runs R] [--sample S] [--no-memory]

The floor (docs/design.md, "Budgets") is what no verifier can avoid: sha256 of the token plus one
`dict.get` on a plain dict of 32-byte digests as large as the index. Every timed row is a loop
over a sample of S tokens (default 10,000, spread at random over the index so that lookups are
not all in L1), after a warm-up pass, with the garbage collector off; a run is one pass, and
the table gives the median and the min/max of R runs (default 7), interleaved so that a noisy
neighbour hits every row alike. The per-call time includes the `for` loop (the "empty loop"
row), for the floor and for verify alike.

Memory is RSS growth per key while building the index, measured in a fresh subprocess, against
the RSS growth of building the bare dict of digests in another fresh subprocess.

The index is built the fast way: `KeyRecord`s constructed directly and `index.add`ed, with
fields made as the projection makes them from decoded events (from a fresh UUID, datetimes and
an owner string per key; scope sets, owner ids and lifetimes shared as the index shares them;
half the keys with an expiry). Going through the event store would take minutes for a million
keys and measure the store, not the index.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import shlex
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from domain import token as token_format
from projections.verification_index.index import KeyRecord, VerificationIndex

VERIFY_BUDGET_US = 1.5
MEMORY_BUDGET_B = 400.0
REQUIRED = ("books:read",)
# Scope sets a key may hold; every one includes books:read so that sampled keys are valid.
_SCOPE_SETS = (
    ("books:read",),
    ("books:read", "books:write"),
    ("account:read", "books:read", "generation:run"),
)
_KEYS_PER_OWNER = 4
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


# Building


def _fresh(text: str) -> str:
    """A new str object equal to `text`: each decoded event gives the projection its own."""
    return text.encode().decode()


def make_record(i: int, index: VerificationIndex) -> KeyRecord:
    """Key number i, as the projection records it from its Minted event."""
    created_at = datetime.fromtimestamp(_EPOCH + i, UTC)
    expires_at = created_at + timedelta(days=3650) if i % 2 else None
    return KeyRecord(
        id_int=uuid4().int,
        owner_id=f"user_{i // _KEYS_PER_OWNER:08d}",
        scopes=index.shared_scopes(_fresh(s) for s in _SCOPE_SETS[i % len(_SCOPE_SETS)]),
        expires_ts=None if expires_at is None else expires_at.timestamp(),
        lifetime=None if expires_at is None else (expires_at - created_at).total_seconds(),
    )


def build_index(
    n: int, keep: frozenset[int] = frozenset(), floor: dict[bytes, object] | None = None
) -> tuple[VerificationIndex, list[str]]:
    """An index of n keys; returns it and the tokens of keys numbered in `keep`, in that order.

    With `floor`, also fills it with digest -> record for the same keys (same digest objects).
    """
    index = VerificationIndex()
    kept: dict[int, str] = {}
    for i in range(n):
        token = token_format.generate()
        digest = token_format.digest(token)
        record = make_record(i, index)
        index.add(digest, record)
        if floor is not None:
            floor[digest] = record
        if i in keep:
            kept[i] = token
    return index, [kept[i] for i in sorted(keep)]


def build_floor(n: int) -> dict[bytes, None]:
    """The bare floor: a dict of n sha256 digests, nothing else."""
    sha256 = hashlib.sha256
    generate = token_format.generate
    return {sha256(generate().encode()).digest(): None for _ in range(n)}


def unknown_tokens(count: int) -> list[str]:
    """Well-formed tokens (right checksum) that no key has."""
    return [token_format.generate() for _ in range(count)]


def malformed_tokens(count: int, rng: random.Random) -> dict[str, list[str]]:
    """Strings a verifier must reject, by how far its checks get before rejecting them."""
    cheap: list[str] = []  # wrong length, wrong prefix or a character outside the alphabet
    bad_checksum: list[str] = []  # right length, prefix and alphabet; checksum wrong
    at = token_format.TOKEN_LENGTH - token_format.CHECKSUM_CHARS
    for i in range(count):
        token = token_format.generate()
        kind = i % 4
        if kind == 0:
            cheap.append(token[:-1])
        elif kind == 1:
            cheap.append("ant_test_" + token[len(token_format.PREFIX) :])
        else:
            cheap.append(token[:20] + "!" + token[21:])
        wrong = "B" if token[at] == "A" else "A"
        bad_checksum.append(token[:at] + wrong + token[at + 1 :])
    rng.shuffle(cheap)
    return {"cheap": cheap, "bad_checksum": bad_checksum}


# Timed loops: one function per row, so that nothing but the measured call sits in the loop.


def _loop_empty(sample: list[str]) -> int:
    start = time.perf_counter_ns()
    for _ in sample:
        pass
    return time.perf_counter_ns() - start


def _loop_floor(sample: list[str], table: dict[bytes, object]) -> int:
    get = table.get
    sha256 = hashlib.sha256
    start = time.perf_counter_ns()
    for t in sample:
        get(sha256(t.encode()).digest())
    return time.perf_counter_ns() - start


def _loop_verify(sample: list[str], index: VerificationIndex, now: float) -> int:
    verify = index.verify
    required = REQUIRED
    start = time.perf_counter_ns()
    for t in sample:
        verify(t, required, now)
    return time.perf_counter_ns() - start


def _loop_well_formed(sample: list[str]) -> int:
    is_well_formed = token_format.is_well_formed
    start = time.perf_counter_ns()
    for t in sample:
        is_well_formed(t)
    return time.perf_counter_ns() - start


def _loop_sha256(sample: list[str]) -> int:
    sha256 = hashlib.sha256
    start = time.perf_counter_ns()
    for t in sample:
        sha256(t.encode()).digest()
    return time.perf_counter_ns() - start


def _loop_get(digests: list[bytes], table: dict[bytes, object]) -> int:
    get = table.get
    start = time.perf_counter_ns()
    for d in digests:
        get(d)
    return time.perf_counter_ns() - start


@dataclass
class Row:
    name: str
    loop: Callable[[], int]
    calls: int
    budget: float | None = None  # µs
    samples: list[float] | None = None  # µs per call, one per run

    @property
    def median(self) -> float:
        assert self.samples
        return statistics.median(self.samples)


def time_rows(rows: Sequence[Row], runs: int) -> None:
    """Warm every row up once, then time R interleaved rounds with the collector off."""
    for row in rows:
        row.loop()
        row.samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            for row in rows:
                ns = row.loop()
                assert row.samples is not None
                row.samples.append(ns / row.calls / 1000.0)
    finally:
        gc.enable()


# Memory, each side in a fresh process


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _memory_child(kind: str, n: int) -> None:
    gc.collect()
    before = _rss_bytes()
    start = time.perf_counter()
    built: object = build_index(n)[0] if kind == "index" else build_floor(n)
    seconds = time.perf_counter() - start
    gc.collect()
    after = _rss_bytes()
    print(json.dumps({"kind": kind, "n": n, "before": before, "after": after, "s": seconds}))
    del built


def measure_memory(kind: str, n: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.verify", "--keys", str(n), "--memory-child", kind]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# Reporting


def machine() -> list[str]:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {model}, {os.cpu_count()} cores ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"python:  {platform.python_implementation()} {platform.python_version()} "
        f"({ssl.OPENSSL_VERSION}); load average at start {load}",
    ]


def command_line(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else None
    argv = [python or sys.executable, "-m", "bench.verify", "--keys", str(args.keys)]
    argv += ["--runs", str(args.runs), "--sample", str(args.sample)]
    if args.no_memory:
        argv.append("--no-memory")
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join(argv)}"


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    lines = []
    for j, r in enumerate([header, *body]):
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, len(r))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(value: float, budget: float | None) -> str:
    if budget is None:
        return "-"
    return "meets" if value <= budget else "misses"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the index")
    parser.add_argument("--runs", type=int, default=7, help="timed passes per row")
    parser.add_argument("--sample", type=int, default=10_000, help="tokens per pass")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS measurement")
    parser.add_argument("--memory-child", choices=("index", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child, args.keys)
        return 0
    if args.keys < args.sample:
        parser.error("--keys must be at least --sample")

    print("\n".join(machine()))
    print(f"command: {command_line(args)}")
    print(f"keys: {args.keys:,}  sample: {args.sample:,} tokens per pass  runs: {args.runs}")

    memory: dict[str, dict[str, float]] = {}
    if not args.no_memory:
        for kind in ("floor", "index"):
            memory[kind] = measure_memory(kind, args.keys)

    rng = random.Random(20_251_128)
    keep = frozenset(rng.sample(range(args.keys), args.sample))
    floor: dict[bytes, object] = {}
    started = time.perf_counter()
    index, known = build_index(args.keys, keep, floor)
    build_s = time.perf_counter() - started
    rng.shuffle(known)  # look keys up in an order unrelated to where they were allocated
    unknown = unknown_tokens(args.sample)
    malformed = malformed_tokens(args.sample, rng)
    digests = [hashlib.sha256(t.encode()).digest() for t in known]
    now = time.time()

    # The sample must be what each row says it is, or the numbers mean nothing.
    assert len(index) == len(floor) == args.keys
    assert all(index.verify(t, REQUIRED, now).valid for t in known)
    assert all(floor.get(d) is not None for d in digests)
    assert not any(index.verify(t, REQUIRED, now).valid for t in unknown)
    assert all(token_format.is_well_formed(t) for t in unknown)
    assert not any(token_format.is_well_formed(t) for v in malformed.values() for t in v)

    s = args.sample
    budget = VERIFY_BUDGET_US
    rows = [
        Row("FLOOR: sha256 + dict.get (known)", lambda: _loop_floor(known, floor), s),
        Row("verify, known valid token", lambda: _loop_verify(known, index, now), s, budget),
        Row("verify, unknown well-formed", lambda: _loop_verify(unknown, index, now), s, budget),
        Row(
            "verify, malformed: bad checksum",
            lambda: _loop_verify(malformed["bad_checksum"], index, now),
            s,
            budget,
        ),
        Row(
            "verify, malformed: len/prefix/char",
            lambda: _loop_verify(malformed["cheap"], index, now),
            s,
            budget,
        ),
        Row("piece: is_well_formed (valid)", lambda: _loop_well_formed(known), s),
        Row("piece: sha256(t.encode()).digest()", lambda: _loop_sha256(known), s),
        Row("piece: dict.get of a digest", lambda: _loop_get(digests, floor), s),
        Row("piece: empty for loop", lambda: _loop_empty(known), s),
    ]
    time_rows(rows, args.runs)

    floor_us = rows[0].median
    body = []
    for row in rows:
        assert row.samples
        body.append(
            [
                row.name,
                f"{row.median:.3f} µs",
                f"{min(row.samples):.3f} / {max(row.samples):.3f}",
                f"{row.median / floor_us:.2f}x",
                f"≤ {row.budget:.1f} µs" if row.budget is not None else "-",
                _verdict(row.median, row.budget),
            ]
        )
    if memory:
        per_key = {k: (m["after"] - m["before"]) / m["n"] for k, m in memory.items()}
        floor_row = ["FLOOR: RSS, bare dict of digests", f"{per_key['floor']:.0f} B/key"]
        body.append([*floor_row, "-", "1.00x", "-", "-"])
        body.append(
            [
                "RSS growth building the index",
                f"{per_key['index']:.0f} B/key",
                "-",
                f"{per_key['index'] / per_key['floor']:.2f}x",
                f"≤ {MEMORY_BUDGET_B:.0f} B/key",
                _verdict(per_key["index"], MEMORY_BUDGET_B),
            ]
        )
    print()
    header = ["measurement (per call)", "median", "min / max", "ratio to floor"]
    print(table([*header, "budget", "verdict"], body))
    print()
    print(f"main-process index build: {build_s:.1f} s ({args.keys / build_s:,.0f} keys/s)", end="")
    if memory:
        print(
            f"; memory children: floor {memory['floor']['s']:.1f} s, "
            f"index {memory['index']['s']:.1f} s"
        )
    else:
        print()
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("notes: times are per call and include the for loop (the empty-loop row); the floor")
    print("  looks up the same digest objects the index holds; memory is VmRSS growth / keys, each")
    print("  side built in a fresh process (floor: {digest: None}; index: KeyRecords made as the")
    print("  projection makes them from decoded events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

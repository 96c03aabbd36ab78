"""Usage counting benchmark: verify throughput with usage counting off and on, same run.

    .venv/bin/python -m bench.usage [--keys N] [--runs R] [--sample S] [--drains D] [--interval I]

One `VerificationIndex` of N keys (default 100,000), built as bench/verify.py builds it, and a
sample of S of its tokens (default 10,000) in random order. Every row is a loop over the sample
calling `index.verify(token, ("books:read",), now)`; the "on" rows then call `counter.used(...)`
for each valid answer. Rows are interleaved over R runs (default 15) with the collector off;
the table gives the median per call, and each row's ratio to "off" as the median of its
per-round ratios (a noisy neighbour slows both rows of a round alike).

`used` only appends; the counting happens in `drain`, on the flusher's thread, and costs the
process the same GIL time. So the usage cost of a row is its time over the "off" row plus the
drain time per use. A drain's cost per use falls as each key is used more often between two
flushes, so it is timed at the real cadence: a counter filled as `--interval` seconds
(default 10) of verifying at the "off" rate would fill it, spread evenly over the sample's
keys, median of D drains (default 5). The worst case, every key used once per flush, is
printed below the table as a share of one core.

Two floors explain the numbers: handing `record.key_id` to a function that does nothing costs
a cache miss on the UUID object, which verify never touches (the API's auth middleware touches
it anyway, to build the principal); handing it the record, which verify has just read, does not.
The last row is the design not taken: a dict of counts per key under a lock.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.verify import REQUIRED, Row, build_index, machine, table, time_rows
from projections.usage.counter import UsageCounter
from projections.verification_index.index import VerificationIndex

BUDGET = 0.05
_MAX_USES = 5_000_000  # uses held by one timed drain's counter (8 bytes each)


class LockedDictCounter:
    """The design not taken, for comparison: per-key counts in a dict, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._last: dict[int, float] = {}

    def used(self, key_id: Any, now: float) -> None:
        key = key_id.int  # UUID.__hash__ is Python code; its int hashes in C
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._last[key] = now


def _nothing(key: object, now: float) -> None:
    pass


# Timed loops: one function per row, so that nothing but the measured calls sit in the loop.


def _loop_off(sample: list[str], index: VerificationIndex, now: float) -> int:
    verify = index.verify
    required = REQUIRED
    start = time.perf_counter_ns()
    for t in sample:
        answer = verify(t, required, now)
        if answer.code == "valid":
            pass
    return time.perf_counter_ns() - start


def _loop_key_id(sample: list[str], index: VerificationIndex, used: Any, now: float) -> int:
    verify = index.verify
    required = REQUIRED
    start = time.perf_counter_ns()
    for t in sample:
        answer = verify(t, required, now)
        if answer.code == "valid":
            used(answer.record.key_id, now)  # type: ignore[union-attr]
    return time.perf_counter_ns() - start


def _loop_record(sample: list[str], index: VerificationIndex, used: Any, now: float) -> int:
    verify = index.verify
    required = REQUIRED
    start = time.perf_counter_ns()
    for t in sample:
        answer = verify(t, required, now)
        if answer.code == "valid":
            used(answer.record, now)
    return time.perf_counter_ns() - start


def drain_ns_per_use(
    keys: Sequence[object], uses_per_key: int, drains: int, now: float, interval: float
) -> list[float]:
    """Drain time per use of counters each holding `interval` seconds of uses of every key.

    The uses are stamped across the interval, so they fill one slot per second as in service.
    """
    samples = []
    uses = len(keys) * uses_per_key
    for _ in range(drains):
        counter = UsageCounter()
        used = counter.used
        step = interval / uses
        at = now - interval
        for _ in range(uses_per_key):
            for key in keys:
                used(key, at)  # type: ignore[arg-type]
                at += step
        start = time.perf_counter_ns()
        batch = counter.drain()
        samples.append((time.perf_counter_ns() - start) / uses)
        assert batch.requests == uses
    return samples


def command_line(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else None
    argv = [python or sys.executable, "-m", "bench.usage", "--keys", str(args.keys)]
    argv += ["--runs", str(args.runs), "--sample", str(args.sample)]
    argv += ["--drains", str(args.drains), "--interval", str(args.interval)]
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join(argv)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.usage", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the index")
    parser.add_argument("--runs", type=int, default=15, help="timed passes per row")
    parser.add_argument("--sample", type=int, default=10_000, help="tokens per pass")
    parser.add_argument("--drains", type=int, default=5, help="drains timed")
    parser.add_argument("--interval", type=float, default=10.0, help="flush interval, seconds")
    args = parser.parse_args(argv)
    if args.keys < args.sample:
        parser.error("--keys must be at least --sample")

    print("\n".join(machine()))
    print(f"command: {command_line(args)}")
    print(f"keys: {args.keys:,}  sample: {args.sample:,} tokens per pass  runs: {args.runs}")

    rng = random.Random(20_251_129)
    keep = frozenset(rng.sample(range(args.keys), args.sample))
    index, known = build_index(args.keys, keep)
    rng.shuffle(known)  # look keys up in an order unrelated to where they were allocated
    now = time.time()
    records = [index.verify(t, REQUIRED, now).record for t in known]
    assert all(r is not None for r in records)

    by_key_id, by_record, locked = UsageCounter(), UsageCounter(), LockedDictCounter()
    s = args.sample
    rows = [
        Row("usage off: verify", lambda: _loop_off(known, index, now), s),
        Row(
            "on: + used(record.key_id, now)",
            lambda: _loop_key_id(known, index, by_key_id.used, now),
            s,
        ),
        Row("on: + used(record, now)", lambda: _loop_record(known, index, by_record.used, now), s),
        Row(
            "floor: + nothing(record.key_id)",
            lambda: _loop_key_id(known, index, _nothing, now),
            s,
        ),
        Row("floor: + nothing(record)", lambda: _loop_record(known, index, _nothing, now), s),
        Row(
            "not taken: dict under a lock",
            lambda: _loop_key_id(known, index, locked.used, now),
            s,
        ),
    ]
    time_rows(rows, args.runs)
    # The counters hold (runs + 1) x sample uses each; drain them so the check below is exact.
    assert by_key_id.drain().requests == by_record.drain().requests == (args.runs + 1) * s

    off = rows[0].median
    # Uses per key in one flush interval at the "off" rate, capped to keep the lists in memory.
    per_key = max(1, min(round(args.interval / (off * 1e-6) / s), _MAX_USES // s))
    key_ids = [r.key_id for r in records if r is not None]
    drain_key_id = drain_ns_per_use(key_ids, per_key, args.drains, now, args.interval)
    drain_record = drain_ns_per_use(records, per_key, args.drains, now, args.interval)
    drains = {1: statistics.median(drain_key_id) / 1000, 2: statistics.median(drain_record) / 1000}
    worst = statistics.median(drain_ns_per_use(records, 1, args.drains, now, args.interval))

    assert rows[0].samples
    body = []
    for i, row in enumerate(rows):
        assert row.samples
        # Each run is paired with the "off" run of the same round: a noisy neighbour slows both.
        ratio = statistics.median(a / b for a, b in zip(row.samples, rows[0].samples, strict=True))
        drain = drains.get(i, 0.0)
        cost = ratio - 1 + drain / off
        counts = i in drains or i == 5
        body.append(
            [
                row.name,
                f"{row.median:.3f} µs",
                f"{min(row.samples):.3f} / {max(row.samples):.3f}",
                f"{drain * 1000:.0f} ns" if i in drains else "-",
                f"{ratio:.3f}x",
                f"{cost:+.1%}" if i else "-",
                f"≤ {BUDGET:.0%}" if counts else "-",
                ("meets" if cost <= BUDGET else "misses") if counts else "-",
            ]
        )
    header = ["measurement (per verify)", "median", "min / max", "drain/use", "vs off"]
    print()
    print(table([*header, "usage cost", "budget", "verdict"], body))
    print()
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"drain/use: {per_key} uses of each of the {s:,} keys per drain, as {args.interval:g} s of"
        f" verifying at the off rate would give"
    )
    print(
        f"worst case, every key used once per flush: {worst:,.0f} ns per use, "
        f"{worst * s / 1e6:.1f} ms per flush of {s:,} keys = "
        f"{worst * s / 1e9 / args.interval:.2%} of one core at a {args.interval:g} s interval"
    )
    print("vs off: median over runs of (row / off in the same round); usage cost: vs off - 1")
    print("  + drain/use / off median; the dict row leaves out its drain and its per-day split,")
    print("  so it is a lower bound for that design")
    return 0


if __name__ == "__main__":
    sys.exit(main())

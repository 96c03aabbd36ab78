"""Soak: two ledger processes on one PostgreSQL for ten minutes, keys minted, used and revoked
all along; RSS per key at the start and the end, and every answer checked.

    .venv/bin/python -m bench.soak [--minutes 10] [--json]

A client mints keys on process A at a steady rate, revokes every fifth one a little later, and
between writes verifies random known tokens on A and B (`POST /v1/verify`). Every answer is
checked against what the client knows: a live key must be valid on both; a revoked key must be
refused by A at once (A revoked it) and by B once one second has passed since the revoke
answered. A wrong answer is counted, never retried away. Memory is the resident set of each
server process (`/proc/<pid>/status`), sampled every few seconds: RSS per key is the growth
since the empty start divided by the keys held. A leak shows as RSS per key rising with time
while the keys added each minute stay constant.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import (
    NO_FAILED_ATTEMPT_LIMIT,
    command_line,
    emit_summary,
    fresh_schema,
    ledger_server,
    machine_lines,
    session_headers,
    summary_row,
)
from bench.verify import table

REVOKE_EVERY = 5
REVOKE_AFTER = 2.0  # seconds between minting a key and revoking it, for every fifth key
PROPAGATION = 1.0  # after this, every process must refuse a revoked token


def rss_kib(pid: int) -> int:
    """The resident set of a process, from /proc; its children (uvicorn workers) included."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


@dataclass
class Key:
    key_id: str
    token: str
    minted_at: float
    revoked_at: float | None = None


@dataclass
class Tally:
    checks: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok:
            self.wrong.append(what)


def verify(client: httpx.Client, base: str, token: str) -> bool:
    answer = client.post(f"{base}/v1/verify", json={"token": token})
    answer.raise_for_status()
    return bool(answer.json()["valid"])


def soak(minutes: float, mint_rate: float, workdir: Path) -> dict[str, object]:
    auth_secret = secrets.token_urlsafe(32)
    with fresh_schema("soak") as (_server, _schema, url):
        # Revoked tokens are checked all along from one address: no failed-attempt limit.
        quiet = {"ANTHRA_LOG_LEVEL": "WARNING", **NO_FAILED_ATTEMPT_LIMIT}
        a = ledger_server("soak-a", url, auth_secret, workdir, **quiet)
        a.wait_ready()
        b = ledger_server("soak-b", url, auth_secret, workdir, **quiet)
        b.wait_ready()
        try:
            return _run(
                a.url, b.url, (a.process.pid, b.process.pid), auth_secret, minutes, mint_rate
            )
        finally:
            a.stop()
            b.stop()


def _run(
    a: str, b: str, pids: tuple[int, int], auth_secret: str, minutes: float, mint_rate: float
) -> dict[str, object]:
    rng = random.Random(7)
    session = session_headers("soak-owner", auth_secret)
    keys: list[Key] = []
    to_revoke: deque[Key] = deque()
    tally = Tally()
    empty = [rss_kib(pid) for pid in pids]
    samples: list[tuple[float, int, list[int]]] = []
    started = time.monotonic()
    end = started + minutes * 60
    next_mint = started
    next_sample = started
    with httpx.Client(timeout=10) as client:
        while (now := time.monotonic()) < end:
            if now >= next_mint:
                answer = client.post(
                    f"{a}/api/v1/keys",
                    json={"name": f"soak {len(keys)}", "scopes": ["books:read"]},
                    headers=session,
                )
                answer.raise_for_status()
                body = answer.json()
                keys.append(Key(body["id"], body["token"], now))
                if len(keys) % REVOKE_EVERY == 0:
                    to_revoke.append(keys[-1])
                next_mint += 1 / mint_rate
            while to_revoke and now - to_revoke[0].minted_at >= REVOKE_AFTER:
                key = to_revoke.popleft()
                client.delete(f"{a}/api/v1/keys/{key.key_id}", headers=session).raise_for_status()
                key.revoked_at = time.monotonic()
                tally.check(not verify(client, a, key.token), "A accepted a key it revoked")
            for key in rng.sample(keys, min(len(keys), 8)):
                checked_at = time.monotonic()
                on_a, on_b = verify(client, a, key.token), verify(client, b, key.token)
                if key.revoked_at is None:
                    tally.check(on_a, "A refused a live key")
                    # B learns of a key a few ms after it is minted
                    if checked_at - key.minted_at >= PROPAGATION:
                        tally.check(on_b, "B refused a live key")
                else:
                    tally.check(not on_a, "A accepted a revoked key")
                    if checked_at - key.revoked_at >= PROPAGATION:
                        tally.check(not on_b, "B accepted a key revoked over a second ago")
            if now >= next_sample:
                samples.append((now - started, len(keys), [rss_kib(pid) for pid in pids]))
                next_sample += 5.0
            time.sleep(0.005)
    samples.append((time.monotonic() - started, len(keys), [rss_kib(pid) for pid in pids]))
    return {"empty": empty, "samples": samples, "tally": tally, "keys": len(keys)}


def per_key(sample: tuple[float, int, list[int]], empty: list[int]) -> str:
    _, held, rss = sample
    if held == 0:
        return "-"
    return " / ".join(f"{(r - e) * 1024 / held:,.0f}" for r, e in zip(rss, empty, strict=True))


def slope(start: tuple[float, int, list[int]], end: tuple[float, int, list[int]]) -> str:
    """RSS added per key added between two samples: steady if memory follows the keys."""
    added = end[1] - start[1]
    if added <= 0:
        return "-"
    return " / ".join(
        f"{(b - a) * 1024 / added:,.0f}" for a, b in zip(start[2], end[2], strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mint-rate", type=float, default=20.0, help="keys minted per second")
    parser.add_argument("--json", action="store_true", help="end with a bench-summary line")
    args = parser.parse_args(argv)
    for line in machine_lines():
        print(line)
    print(command_line("bench.soak", sys.argv[1:] if argv is None else argv))
    with tempfile.TemporaryDirectory(prefix="anthra-soak-") as workdir:
        result = soak(args.minutes, args.mint_rate, Path(workdir))
    samples = result["samples"]
    empty = result["empty"]
    tally: Tally = result["tally"]  # type: ignore[assignment]
    assert isinstance(samples, list) and isinstance(empty, list)
    # The first sample with a few hundred keys: RSS per key of an almost empty index is noise.
    first = next((s for s in samples if s[1] >= 200), samples[-1])
    last = samples[-1]
    rows = [
        [
            f"{s[0]:.0f} s",
            f"{s[1]:,}",
            " / ".join(f"{r / 1024:.1f}" for r in s[2]),
            per_key(s, empty),
        ]
        for s in [*samples[:: max(1, len(samples) // 12)], last]
    ]
    print(table(["elapsed", "keys", "RSS MiB (A / B)", "RSS growth per key, bytes (A / B)"], rows))
    half = samples[len(samples) // 2]
    print(
        "RSS growth per key added, first half / second half of the run: "
        f"{slope(first, half)} / {slope(half, last)} bytes (A / B)"
    )
    print(f"checks: {tally.checks:,}, wrong answers: {len(tally.wrong)}")
    for what in sorted(set(tally.wrong)):
        print(f"  {tally.wrong.count(what)} times: {what}")
    summary = [
        summary_row(
            f"soak {args.minutes:g} min, 2 processes: RSS per key, start → end",
            f"{per_key(first, empty)} → {per_key(last, empty)} B (A / B; {last[1]:,} keys)",
            verdict="-",
        ),
        summary_row(
            "soak: RSS growth per key added, first half → second half",
            f"{slope(first, samples[len(samples) // 2])} → "
            f"{slope(samples[len(samples) // 2], last)} B (A / B)",
            verdict="-",
        ),
        summary_row(
            "soak: wrong answers (revoked accepted, live refused)",
            f"{len(tally.wrong)} of {tally.checks:,}",
            budget="= 0",
            verdict="meets" if not tally.wrong else "misses",
        ),
    ]
    if args.json:
        emit_summary(summary)
    return 0 if not tally.wrong else 1


if __name__ == "__main__":
    sys.exit(main())

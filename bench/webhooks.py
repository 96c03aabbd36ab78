"""Webhook delivery benchmark: does a busy deliverer slow verification? Same run, interleaved.

    .venv/bin/python -m bench.webhooks [--keys N] [--sample S] [--runs R] [--endpoints E]

Verification is `VerificationIndex.verify` over an index of N keys (default 100,000), a sample of
S tokens (default 10,000) per pass, as bench/verify.py builds it. Beside it, in the same
process, a ledger on a fresh SQLite file with E endpoints (default 8) of one owner, each with a
backlog of deliveries, all pointing at a local receiver that takes 1 s to answer 500: the worst
kind of endpoint short of a timeout. The deliverer runs its passes every 50 ms (20x the
default) with 4 sends at once, each failure retried after 50 ms: its threads never rest.

Each of R rounds (default 12) times the verify pass with no deliverer ("off": the floor), then
starts a deliverer, lets it ramp up, times the same pass again ("busy"), stops it and lets its
last sends end. The table gives the median per verify and the median over rounds of busy / off
in the same round, so a noisy neighbour slows both sides of a round alike.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.usage import _loop_off
from bench.verify import build_index, machine, table
from infra.backends.sqlite import SQLiteBackend
from infra.webhook_deliverer import WebhookDeliverer
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from ledger.webhooks import Webhooks
from projections.audit_trail.view import AuditRow
from projections.key_states.view import KeyState

BUDGET = 0.05
PASSES = 15  # verify passes timed per side of a round


class _Bodies:
    def event(self, row: AuditRow) -> bytes:
        return b'{"type":"%s","position":%d}' % (row.type.encode(), row.position)

    def expiring_soon(self, state: KeyState, days: int) -> bytes:
        return b"{}"


class _SlowHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(1.0)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _timed(sample: list[str], index: Any, now: float) -> float:
    """µs per verify: the median of PASSES passes."""
    return statistics.median(
        _loop_off(sample, index, now) / len(sample) / 1000 for _ in range(PASSES)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the index")
    parser.add_argument("--sample", type=int, default=10_000, help="tokens per pass")
    parser.add_argument("--runs", type=int, default=12, help="rounds")
    parser.add_argument("--endpoints", type=int, default=8, help="slow endpoints")
    args = parser.parse_args(argv)
    print("\n".join(machine()))
    print(f"command: {sys.executable} -m bench.webhooks {' '.join(argv or sys.argv[1:])}".rstrip())

    rng = random.Random(20_261_202)
    index, sample = build_index(args.keys, frozenset(rng.sample(range(args.keys), args.sample)))
    rng.shuffle(sample)
    now = time.time()

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"

    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteBackend(Path(tmp) / "bench.sqlite3")
        ledger = KeyLedger(backend.store_env())
        audit = AuditTrail(ledger, backend.audit_view(ledger))
        webhooks = Webhooks(ledger, backend.webhook_store(ledger), allow_http_loopback=True)
        for _ in range(args.endpoints):
            webhooks.register(owner_id="bench", url=url, event_types=["Minted"], actor="bench")
        for i in range(20):
            ledger.mint(
                owner_id="bench",
                name=f"k{i}",
                scopes=["books:read"],
                expires_in_days=None,
                actor="bench",
            )
        audit.catch_up()

        off: list[float] = []
        busy: list[float] = []
        sends: list[int] = []
        _timed(sample, index, now)  # warm up
        for _ in range(args.runs):
            off.append(_timed(sample, index, now))
            deliverer = WebhookDeliverer(
                webhooks,
                audit,
                _Bodies(),
                interval=0.05,
                first_retry=0.05,
                timeout=5.0,
                concurrency=4,
                allow_http_loopback=True,
            )
            before = sum(
                d.attempts
                for e in webhooks.store.enabled()
                for d in webhooks.store.deliveries(e.endpoint_id, 100)
            )
            deliverer.start()
            time.sleep(0.3)
            busy.append(_timed(sample, index, now))
            deliverer.stop(timeout=2.0)
            time.sleep(1.5)  # its last sends end before the next "off" pass
            after = sum(
                d.attempts
                for e in webhooks.store.enabled()
                for d in webhooks.store.deliveries(e.endpoint_id, 100)
            )
            sends.append(after - before)
        webhooks.store.close()
        ledger.close()
    receiver.shutdown()

    ratios = [b / o for b, o in zip(busy, off, strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"keys: {args.keys:,}  sample: {args.sample:,}  rounds: {args.runs}"
        f"  endpoints: {args.endpoints}"
    )
    print()
    print(
        table(
            ["measurement (per verify)", "median", "min / max", "vs off", "budget", "verdict"],
            [
                [
                    "off: no deliverer (floor)",
                    f"{statistics.median(off):.3f} µs",
                    f"{min(off):.3f} / {max(off):.3f}",
                    "1.000x",
                    "-",
                    "-",
                ],
                [
                    "busy: deliverer on slow endpoints",
                    f"{statistics.median(busy):.3f} µs",
                    f"{min(busy):.3f} / {max(busy):.3f}",
                    f"{ratio:.3f}x",
                    f"≤ {1 + BUDGET:.2f}x",
                    "meets" if ratio <= 1 + BUDGET else "misses",
                ],
            ],
        )
    )
    print()
    print(f"sends attempted per busy round: median {statistics.median(sends):.0f}")
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("vs off: median over rounds of (busy / off in the same round)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the time of an HTTP request goes: py-spy samples the server under wrk load, by layer.

    .venv/bin/python -m bench.profile_http [--rows account authz healthz verify] [--duration 10]

One ledger (`anthra-keys serve`, 1 worker, as shipped: default settings, access log on, SQLite
file, deploy/policy.toml) is loaded by wrk one row at a time while `py-spy record` samples it
(raw collapsed stacks, only threads holding the GIL, so a sample is Python at work).
Each sample is charged to the innermost frame that belongs to a layer of the request path:

    server          uvicorn or granian, asyncio/uvloop, httptools: reading and writing HTTP
    front door      api/front_door.py: limits, proxies, hosts (the edge of before)
    request id      api/request_context.py
    token-in-URL    api/auth.py token_in_url and RefuseTokensInUrl
    auth            the Bearer check: api/auth.py, api/principal.py, the verification index
    routing         Litestar's router and route lookup
    DI              Litestar's kwargs model and dependency resolution
    handler         the endpoint's own code (api/account.py, api/forward_auth.py, ...)
    serialisation   msgspec and Litestar's response encoding
    access log      infra/access_log.py, `logging`, the redacting filter and formatters
    framework       the rest of Litestar (its middleware stack, before_send hooks, connection)
    background      the app's own threads (index follower, failure sync, sweeper, flushers)

A layer's µs per request is its share of the samples times the server's CPU time per request,
read from /proc over the same seconds (py-spy samples from outside the process and does not
stop it, but shares the cores with it and wrk: compare rows of one run, not runs of a busy
machine).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import ledger_server, machine_lines, mint_over_http, session_headers
from bench.http import (
    POLICY,
    SCOPES,
    check_ledger,
    ensure_wrk,
    run_wrk,
    scripts_for,
)
from bench.verify import table

ROWS = {
    "account": "/api/v1/account/whoami",
    "authz": "/v1/authz",
    "healthz": "/healthz",
    "verify": "/v1/verify",
}
# (layer, substrings of a frame "function (file:line)"), tried in order on each frame from the
# innermost out; the first frame that matches any names the layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "background",
        (
            "infra/follower.py",
            "infra/auth_failure_sync.py",
            "infra/sweeper.py",
            "infra/usage_flusher.py",
            "projections/catch_up.py",
            "Thread.run",
            "threading.py",
        ),
    ),
    (
        "access log",
        ("infra/access_log.py", "logging/__init__", "infra/logging.py", "uvicorn/logging"),
    ),
    ("token-in-URL", ("token_in_url", "RefuseTokensInUrl")),
    ("request id", ("api/request_context.py", "/uuid.py")),
    (
        "auth",
        (
            "api/auth.py",
            "api/principal.py",
            "verification_index",
            "ledger/key_ledger.py",
            "domain/token.py",
            "api/fast_authz.py",
        ),
    ),
    ("front door", ("api/front_door.py", "api/edge.py")),
    ("handler", ("api/account.py", "api/forward_auth.py", "api/health.py", "api/verify.py")),
    ("serialisation", ("msgspec", "litestar/serialization", "litestar/response/")),
    ("DI", ("litestar/_kwargs", "litestar/di.py", "_signature", "litestar/datastructures")),
    ("routing", ("litestar/_asgi/", "litestar/routes/")),
    ("framework", ("litestar/", "api/app.py", "api/json_body.py")),
    (
        "server",
        ("uvicorn/", "granian", "asyncio/", "uvloop", "httptools", "api/server_protocol.py"),
    ),
)
ORDER = [name for name, _ in LAYERS] + ["other"]


def layer_of(stack: Sequence[str]) -> str:
    """The layer a sample's stack (outermost frame first) is charged to."""
    for frame in reversed(stack):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def read_collapsed(path: Path) -> collections.Counter[str]:
    """Samples per layer from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        # The first frame is the process or thread py-spy names; the rest is the stack.
        counts[layer_of(frames[1:])] += int(count)
    return counts


def profile_row(
    py_spy: str, wrk: str, url: str, script: Path, seconds: float, rate: int, pid: int, out: Path
) -> tuple[collections.Counter[str], float]:
    """Samples per layer, and the server's CPU µs per request, under wrk's load."""
    argv = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    argv += ["--duration", f"{int(seconds)}", "--output", str(out), "--nonblocking"]
    # Only samples that hold the GIL: a thread waiting for it is not working.
    argv += ["--subprocesses", "--gil"]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches before the load starts
    result = run_wrk(wrk, url, script, 2, 64, seconds - 1, pid)
    _, err = recorder.communicate(timeout=seconds + 30)
    if recorder.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({recorder.returncode}): {err.decode()[-500:]}")
    return read_collapsed(out), result.cpu_us


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_http", description=__doc__)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per row")
    parser.add_argument("--rate", type=int, default=997, help="py-spy samples per second")
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="")
    parser.add_argument("--keep", type=Path, help="a directory to keep py-spy's raw output in")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("bench.profile_http needs py-spy: .venv/bin/pip install -e '.[dev]'")
    wrk = ensure_wrk()
    print("\n".join(machine_lines()))
    print(f"profile: py-spy record --rate {args.rate} --nonblocking --gil, ", end="")
    print(f"wrk -t2 -c64 for {args.duration - 1:g} s per row, 1 worker", flush=True)
    secret = "profile-" + "x" * 32
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        extra = {"ANTHRA_SERVER": args.server} if args.server else {}
        ledger = ledger_server(
            "ledger",
            f"sqlite:{workdir / 'ledger.sqlite3'}",
            secret,
            workdir,
            1,
            ANTHRA_POLICY_FILE=str(POLICY),
            **extra,
        )
        try:
            ledger.wait_ready()
            with httpx.Client(timeout=10) as client:
                _, token = mint_over_http(
                    client, ledger.url, session_headers("bench-profile", secret), "profile", SCOPES
                )
            check_ledger(ledger.url, token, 1)
            scripts = scripts_for(workdir, token)
            results: dict[str, tuple[collections.Counter[str], float]] = {}
            for row in args.rows:
                out = (args.keep or workdir) / f"{row}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                run_wrk(wrk, ledger.url + ROWS[row], scripts[row], 2, 64, 2)  # warm-up
                results[row] = profile_row(
                    py_spy,
                    wrk,
                    ledger.url + ROWS[row],
                    scripts[row],
                    args.duration,
                    args.rate,
                    ledger.process.pid,
                    out,
                )
                print(f"  {row}: done", flush=True)
        finally:
            ledger.stop()
    rows = []
    for layer in ORDER:
        cells = [layer]
        for row in args.rows:
            counts, cpu_us = results[row]
            cells.append(f"{counts[layer] / max(sum(counts.values()), 1) * cpu_us:.1f}")
        rows.append(cells)
    rows.append(["total (CPU µs/req)", *(f"{results[row][1]:.1f}" for row in args.rows)])
    print()
    print(table(["µs per request", *(f"{r} {ROWS[r]}" for r in args.rows)], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

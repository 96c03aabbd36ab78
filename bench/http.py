"""HTTP benchmark: the ledger's authenticated GET and verify POST against Litestar floors, same run.

    .venv/bin/python -m bench.http [--workers 1 2] [--runs 3] [--duration 8] [--json]

Two servers per worker count, both started the way an operator starts them, with the same
workers, `server_header` off, httptools and uvloop as installed: `anthra-keys serve` as shipped
(default settings, so its access log on, written to a log file in a temp dir) on a SQLite file in
a temp dir, and `bench/floors.py` (a Litestar hello world and msgspec echo) on uvicorn WITHOUT an
access log. One load generator, wrk, with the same threads, connections and duration for every row.

Rows, each the median of R runs of D seconds, interleaved so that a noisy neighbour hits every
row alike, after a warm-up of every row:
- `GET /api/v1/account/whoami` with `Authorization: Bearer` (any valid key; authentication and
  a small JSON answer, no I/O), against
  the floor `GET /` sent a Bearer header of the same length and the gateway's two headers;
  budget >= 0.85x the floor's req/s;
- `GET /v1/authz` as nginx's auth_request sends it (`Authorization: Bearer`, `X-Original-URI`,
  `X-Original-Method`) under deploy/policy.toml, against the same floor; budget >= 0.85x;
- `POST /v1/verify` with a valid token, against the floor `POST /echo` of a body of the same
  size and shape; budget >= 0.85x;
- unless `--no-breakdown`, `GET /healthz` without credentials (no budget; its ratio is to the
  hello world): the ledger's app and middleware stack without any key work, which splits a gap
  to the floor into the stack's share and the authentication and handler's share.

Every row also shows the server's CPU time per request (user + system of every process of the
server, from /proc, over the timed runs) and the floor's over the row's: what a request costs
apart from how wrk and the neighbours share the cores. The budget is judged on req/s.

The key is minted through the ledger's API with an Auth.js session cookie before any timing;
its token lives only in this process and in wrk's Lua scripts (mode 0600 in the temp dir,
deleted at the end): it is never printed and never on a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import (
    Server,
    at_least,
    command_line,
    emit_summary,
    floor_server,
    ledger_server,
    machine_lines,
    mint_over_http,
    session_headers,
    summary_row,
)
from bench.verify import table
from domain import token as token_format

BUDGET_RATIO = 0.85
SCOPES = ("account:read", "books:read")
POLICY = Path(__file__).resolve().parents[1] / "deploy" / "policy.toml"
AUTHZ_HEADERS = {"X-Original-URI": "/api/v1/books/b-1/chapters", "X-Original-Method": "GET"}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class Target:
    """One row: what wrk hits, with which script, on which server."""

    key: str
    name: str
    side: str  # "ledger" or "floor"
    path: str
    script: Path | None = None
    runs: list[WrkResult] = field(default_factory=list)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_us: float = 0.0  # the server's CPU time per request


def server_cpu_seconds(leader: int) -> float:
    """User + system CPU seconds of every live process in the server's session (its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # After the command: state ppid pgrp session ... utime (14th field) stime (15th).
        if int(fields[3]) == leader:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


# wrk


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's registry when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit(
            "bench.http needs wrk (the HTTP load generator): install it with "
            "`sudo apt-get install -y wrk`, or run this benchmark as root to have it installed"
        )
    print("wrk is missing; installing it: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get install -y wrk finished but wrk is still not on PATH")
    return found


def lua_script(path: Path, method: str, headers: dict[str, str], body: str | None) -> Path:
    """A wrk script setting the method, headers and body of every request; readable by us only."""
    lines = [f'wrk.method = "{method}"']
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = [==[{value}]==]')
    if body is not None:
        lines.append(f"wrk.body = [==[{body}]==]")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50 and p99 latency, and the error counts from wrk --latency output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        rps=float(rps[1]),
        p50_ms=_ms(p50[1]),
        p99_ms=_ms(p99[1]),
        requests=int(total[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(x) for x in sockets.groups()) if sockets else 0,
    )


def run_wrk(
    wrk: str,
    url: str,
    script: Path | None,
    threads: int,
    connections: int,
    seconds: float,
    server_pid: int | None = None,
) -> WrkResult:
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    before = server_cpu_seconds(server_pid) if server_pid else 0.0
    done = subprocess.run([*argv, url], capture_output=True, text=True, check=False)
    after = server_cpu_seconds(server_pid) if server_pid else 0.0
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    if server_pid and result.requests:
        result.cpu_us = (after - before) / result.requests * 1e6
    return result


# Checks before timing: every row must answer what its name says, or its numbers mean nothing.


def check_ledger(base: str, token: str, workers: int) -> None:
    """Account and verify both accept the token, on fresh connections (so on every worker)."""
    deadline = time.monotonic() + 15
    good = 0
    while good < 10 * workers:
        if time.monotonic() > deadline:
            raise RuntimeError("the ledger did not accept the freshly minted token in 15 s")
        account = httpx.get(
            f"{base}/api/v1/account/whoami",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        verify = httpx.post(
            f"{base}/v1/verify", json={"token": token, "scopes": list(SCOPES)}, timeout=5
        )
        authz = httpx.get(
            f"{base}/v1/authz",
            headers={"Authorization": f"Bearer {token}", **AUTHZ_HEADERS},
            timeout=5,
        )
        answered = (account.status_code, verify.status_code, authz.status_code)
        if answered == (200, 200, 200) and verify.json()["valid"]:
            good += 1
        else:
            good = 0
            time.sleep(0.05)


def check_floor(base: str, body: dict[str, object]) -> None:
    hello = httpx.get(base + "/", timeout=5)
    echo = httpx.post(base + "/echo", json=body, timeout=5)
    if hello.status_code != 200 or echo.status_code != 200 or echo.json() != body:
        raise RuntimeError(f"the floor answered {hello.status_code} / {echo.status_code}")


# The run


def scripts_for(workdir: Path, token: str) -> dict[str, Path]:
    """One Lua script per row; the floor rows send requests of the same size and shape."""
    stand_in = token_format.generate()  # well-formed, same length, no key: the floor's token
    real_body = json.dumps({"token": token, "scopes": list(SCOPES)}, separators=(",", ":"))
    floor_body = json.dumps({"token": stand_in, "scopes": list(SCOPES)}, separators=(",", ":"))
    json_type = {"Content-Type": "application/json"}
    floor_headers = {"Authorization": f"Bearer {stand_in}", **AUTHZ_HEADERS}
    return {
        "account": lua_script(
            workdir / "account.lua", "GET", {"Authorization": f"Bearer {token}"}, None
        ),
        "authz": lua_script(
            workdir / "authz.lua",
            "GET",
            {"Authorization": f"Bearer {token}", **AUTHZ_HEADERS},
            None,
        ),
        "floor_get": lua_script(workdir / "floor_get.lua", "GET", floor_headers, None),
        # Sent without credentials: the health check is public and a token would be refused.
        "healthz": lua_script(workdir / "healthz.lua", "GET", {}, None),
        "verify": lua_script(workdir / "verify.lua", "POST", json_type, real_body),
        "floor_echo": lua_script(workdir / "floor_echo.lua", "POST", json_type, floor_body),
    }


def targets(breakdown: bool) -> list[Target]:
    rows = [
        Target("floor_get", "FLOOR: hello world GET /", "floor", "/"),
        Target("account", "GET /api/v1/account/whoami, Bearer", "ledger", "/api/v1/account/whoami"),
        Target("authz", "GET /v1/authz, Bearer + route policy", "ledger", "/v1/authz"),
        Target("floor_echo", "FLOOR: msgspec echo POST /echo", "floor", "/echo"),
        Target("verify", "POST /v1/verify, valid token", "ledger", "/v1/verify"),
    ]
    if breakdown:
        # The ledger's app and middleware stack with no key work: splits any gap in two.
        rows.insert(2, Target("healthz", "GET /healthz, no key work", "ledger", "/healthz"))
    return rows


PAIRS = (("account", "floor_get"), ("authz", "floor_get"), ("verify", "floor_echo"))


def measure(
    args: argparse.Namespace, wrk: str, workdir: Path, secret: str, token: list[str], workers: int
) -> list[Target]:
    """Every row for one worker count: servers up, token checked, warm-up, R interleaved runs."""
    log_env = {} if args.access_log == "on" else {"ANTHRA_ACCESS_LOG": "off"}
    ledger = ledger_server(
        f"ledger-{workers}w",
        f"sqlite:{workdir / 'ledger.sqlite3'}",
        secret,
        workdir,
        workers,
        ANTHRA_POLICY_FILE=str(POLICY),
        **log_env,
        **({"ANTHRA_SERVER": args.server} if args.server else {}),
    )
    # The floors never log access: the budget is against the bare framework on the server.
    floor = floor_server(f"floor-{workers}w", workdir, workers, access_log=False)
    servers: list[Server] = [ledger, floor]
    other = None
    if args.also_server:
        # The same ledger (same store) on another server, its rows interleaved with the rest.
        other = ledger_server(
            f"ledger-{args.also_server}-{workers}w",
            f"sqlite:{workdir / 'ledger.sqlite3'}",
            secret,
            workdir,
            workers,
            ANTHRA_POLICY_FILE=str(POLICY),
            ANTHRA_SERVER=args.also_server,
            **log_env,
        )
        servers.append(other)
    try:
        for server in servers:
            server.wait_ready()
        if not token:
            with httpx.Client(timeout=10) as client:
                _, minted = mint_over_http(
                    client, ledger.url, session_headers("bench-http", secret), "bench http", SCOPES
                )
            token.append(minted)
        check_ledger(ledger.url, token[0], workers)
        scripts = scripts_for(workdir, token[0])
        check_floor(floor.url, {"token": "x" * len(token[0]), "scopes": list(SCOPES)})
        rows = targets(args.breakdown)
        base = {"ledger": ledger.url, "floor": floor.url}
        pids = {"ledger": ledger.process.pid, "floor": floor.process.pid}
        if other is not None:
            check_ledger(other.url, token[0], workers)
            base["other"], pids["other"] = other.url, other.process.pid
            rows += [
                Target(f"{r.key}@other", f"{r.name} [{args.also_server}]", "other", r.path)
                for r in rows
                if r.side == "ledger"
            ]
        for row in rows:
            row.script = scripts[row.key.partition("@")[0]]
            run_wrk(wrk, base[row.side] + row.path, row.script, args.threads, args.connections, 2)
        for run in range(args.runs):
            # Rotate the order each run so that no row always follows the same neighbour.
            for row in rows[run % len(rows) :] + rows[: run % len(rows)]:
                url = base[row.side] + row.path
                row.runs.append(
                    run_wrk(
                        wrk,
                        url,
                        row.script,
                        args.threads,
                        args.connections,
                        args.duration,
                        pids[row.side],
                    )
                )
            print(f"  {workers} worker(s): run {run + 1}/{args.runs} done", flush=True)
        return rows
    finally:
        for server in servers:
            server.stop()


def report(
    by_workers: dict[int, list[Target]], args: argparse.Namespace
) -> tuple[str, list[dict[str, object]], list[str]]:
    """The table, the summary rows and any warnings."""
    body: list[list[str]] = []
    summary: list[dict[str, object]] = []
    warnings: list[str] = []
    for workers, rows in by_workers.items():
        named = {r.key: r for r in rows}
        medians = {r.key: statistics.median(x.rps for x in r.runs) for r in rows}
        for row in rows:
            errors = sum(x.non_2xx for x in row.runs)
            sockets = sum(x.socket_errors for x in row.runs)
            if errors or sockets:
                warnings.append(
                    f"{workers} worker(s), {row.name}: {errors} non-2xx responses, "
                    f"{sockets} socket errors over {args.runs} runs"
                )
            floor_key = dict(PAIRS).get(row.key.partition("@")[0])
            ratio = medians[row.key] / medians[floor_key] if floor_key else None
            if row.key.partition("@")[0] == "healthz":
                ratio = medians[row.key] / medians["floor_get"]
            verdict = "-"
            if ratio is not None and floor_key:
                verdict = "INVALID" if errors else at_least(ratio, BUDGET_RATIO)
            p50 = statistics.median(x.p50_ms for x in row.runs)
            p99 = statistics.median(x.p99_ms for x in row.runs)
            cpu = statistics.median(x.cpu_us for x in row.runs)
            # The floor's CPU per request over this row's: the same ratio with less of the
            # neighbours' noise in it (shown, not judged).
            base = floor_key or ("floor_get" if row.key.startswith("healthz") else row.key)
            cpu_ratio = statistics.median(x.cpu_us for x in named[base].runs) / cpu if cpu else 0
            body.append(
                [
                    str(workers),
                    row.name,
                    f"{medians[row.key]:,.0f}",
                    f"{min(x.rps for x in row.runs):,.0f} / {max(x.rps for x in row.runs):,.0f}",
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    f"{cpu:.0f}",
                    f"{cpu_ratio:.2f}x",
                    f"{ratio:.2f}x" if ratio is not None else "1.00x",
                    f"≥ {BUDGET_RATIO:.2f}x" if floor_key else "-",
                    verdict,
                ]
            )
            if floor_key and ratio is not None and row.side != "other":
                floor_row = named[floor_key]
                f50 = statistics.median(x.p50_ms for x in floor_row.runs)
                f99 = statistics.median(x.p99_ms for x in floor_row.runs)
                summary.append(
                    summary_row(
                        f"http: {row.name}, {workers} worker{'s' if workers > 1 else ''}",
                        f"{medians[row.key]:,.0f} req/s (p50 {p50:.1f} / p99 {p99:.1f} ms)",
                        f"{medians[floor_key]:,.0f} req/s (p50 {f50:.1f} / p99 {f99:.1f} ms)",
                        f"{ratio:.2f}x",
                        f"≥ {BUDGET_RATIO:.2f}x floor",
                        verdict,
                        value=medians[row.key],
                        floor_value=medians[floor_key],
                        unit="req/s",
                    )
                )
    header = ["workers", "measurement", "req/s median", "min / max", "p50 ms", "p99 ms"]
    header += ["CPU µs/req", "floor's CPU / row's"]
    return table([*header, "ratio to floor", "budget", "verdict"], body), summary, warnings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row")
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--access-log",
        choices=("on", "off"),
        default="on",
        help="the ledger's access log (on as shipped); the floors never log access",
    )
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="",
        help="the server `anthra-keys serve` runs the ledger on (default: its own default)",
    )
    parser.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="leave out the GET /healthz row (the ledger's stack without key work)",
    )
    parser.add_argument(
        "--also-server",
        choices=("uvicorn", "granian"),
        default="",
        help="also run the ledger's rows on this server, interleaved (no budget judged on them)",
    )
    parser.add_argument("--json", action="store_true", help="end with a bench-summary line")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)

    shown = [f"--workers={' '.join(map(str, args.workers))}", "--runs", str(args.runs)]
    shown += ["--duration", f"{args.duration:g}", "--threads", str(args.threads)]
    shown += ["--connections", str(args.connections), "--access-log", args.access_log]
    shown += ["--server", args.server] if args.server else []
    shown += ["--also-server", args.also_server] if args.also_server else []
    shown += [] if args.breakdown else ["--no-breakdown"]
    print("\n".join(machine_lines()))
    print(f"command: {command_line('bench.http', shown)}")
    print(f"load generator: {wrk_version.stdout.splitlines()[0].split(' Copyright')[0]}")
    print(
        f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency; "
        f"median of {args.runs} runs per row, rows interleaved, 2 s warm-up each",
    )
    print(
        "servers: floors on uvicorn (httptools, uvloop) without access log; the ledger as "
        f"`anthra-keys serve` runs it{f' on {args.server}' if args.server else ''}, access log "
        f"{'on (as shipped), to a file' if args.access_log == 'on' else 'off'}; server header off",
        flush=True,
    )

    secret = secrets.token_urlsafe(32)
    token: list[str] = []  # minted once, shared by every worker count; never printed
    by_workers: dict[int, list[Target]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        for workers in args.workers:
            by_workers[workers] = measure(args, wrk, workdir, secret, token, workers)
    rendered, summary, warnings = report(by_workers, args)
    print()
    print(rendered)
    print()
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("notes: both servers run during every row (the idle one only polls its store); wrk")
    print("  shares the 2 cores with the server under test, alike for floor and ledger;")
    print("  the floors write no access log; the ledger's is on unless --access-log off;")
    print("  the ledger runs on a SQLite file (the verify and account paths read no database)")
    if args.json:
        emit_summary(summary)
    return 0 if all(r["verdict"] == "meets" for r in summary) else 1


if __name__ == "__main__":
    sys.exit(main())

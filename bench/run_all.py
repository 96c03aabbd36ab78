"""Run every benchmark in bench/ and print one table of what each measured against its budget.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME ...] [--skip NAME ...]

Each benchmark module present (verify, http, ledger_ops, propagation, audit, usage, cold_start,
soak) runs in a subprocess of its own, one after another, with its own defaults, or with reduced
sizes under `--quick`; its whole output goes to a log file (the directory is printed). Its summary
rows come from the `bench-summary:` line that a module run with `--json` ends with (see
bench/common.py; a module offers it when `--json` is in its `--help`), or, for a module without
it, from the tables it prints: every row with a verdict. A module that fails, times out or prints
nothing readable is a row marked `failed`, and the others still run.

Quick sizes are a smoke run (e.g. 200,000 keys for verify, 100,000 for cold_start where the
budgets speak of a million): their verdicts say where to look, the default sizes decide.
Exit status: 0 when every budget is met and nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, SUMMARY_PREFIX, command_line, machine_lines, summary_row
from bench.verify import table

Row = dict[str, Any]
Cells = dict[str, str]


@dataclass
class Module:
    """A benchmark module and how to run it quickly."""

    name: str
    quick: Callable[[str], list[str]]  # from the module's --help text to its quick arguments
    rows: Callable[[str, list[list[Cells]]], list[Row]] | None = None  # for printed tables
    args: list[str] = field(default_factory=list)


# Reading the tables of modules that print no summary line


def parse_tables(output: str) -> list[list[Cells]]:
    """Every table that bench.verify.table printed: a list of rows, each header -> cell."""
    # Columns are cut where the dashed line under the header puts them, so a cell may hold
    # single spaces ("1.2 / 3.4", "≤ 1.5 µs").
    lines = output.splitlines()
    tables = []
    for i in range(1, len(lines)):
        if not re.fullmatch(r"-+( {2}-+)*", lines[i].rstrip()):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i])]
        # The first column is left-justified and the others right-justified, so a cell may
        # start left of its dashes; cut between the ends of neighbouring dash runs.
        cuts = [(0 if c == 0 else spans[c - 1][1], end) for c, (_, end) in enumerate(spans)]

        def cells(line: str, cuts: list[tuple[int, int]] = cuts) -> list[str]:
            return [line[a:b].strip() for a, b in cuts]

        header = cells(lines[i - 1])
        rows = []
        for line in lines[i + 1 :]:
            if not line.strip():
                break
            rows.append(dict(zip(header, cells(line), strict=True)))
        tables.append(rows)
    return tables


def _judged(tables: list[list[Cells]]) -> list[tuple[list[Cells], Cells]]:
    """(table, row) for every row that carries a verdict."""
    return [
        (rows, row) for rows in tables for row in rows if row.get("verdict", "-") not in {"-", ""}
    ]


def _nearest_floor(rows: list[Cells], row: Cells, column: str) -> str:
    """The cell of the nearest row above this one whose name starts with FLOOR."""
    first = next(iter(row))
    floor = "-"
    for other in rows:
        if other is row:
            break
        if other[first].startswith("FLOOR"):
            floor = other.get(column, "-")
    return floor


def verify_rows(module: str, tables: list[list[Cells]]) -> list[Row]:
    out = []
    for rows, row in _judged(tables):
        name = next(iter(row.values()))
        out.append(
            summary_row(
                f"{module}: {name}",
                row["median"],
                _nearest_floor(rows, row, "median"),
                row.get("ratio to floor", "-"),
                row["budget"],
                row["verdict"],
            )
        )
    return out


def usage_rows(module: str, tables: list[list[Cells]]) -> list[Row]:
    out = []
    for rows, row in _judged(tables):
        name = next(iter(row.values()))
        off = rows[0]  # the first row is verification with usage counting off
        out.append(
            summary_row(
                f"{module}: {name}",
                f"{row.get('usage cost', '?')} ({row['median']})",
                f"{off['median']} ({next(iter(off.values()))})",
                row.get("vs off", "-"),
                f"usage cost {row['budget']}",
                row["verdict"],
            )
        )
    return out


def audit_rows(module: str, tables: list[list[Cells]]) -> list[Row]:
    out = []
    for _, row in _judged(tables):
        name = next(iter(row.values()))
        out.append(
            summary_row(
                f"{module}: {name}",
                f"p95 {row['p95 ms']} ms (p50 {row['p50 ms']})",
                "-",
                "-",
                f"p95 ≤ {row['budget p95']} ms",
                row["verdict"],
            )
        )
    return out


def generic_rows(module: str, tables: list[list[Cells]]) -> list[Row]:
    """Any table with a verdict column: its second column is taken as the measurement."""
    out = []
    for rows, row in _judged(tables):
        names = list(row)
        ratio = next((n for n in names if "ratio" in n or n.startswith("vs ")), None)
        budget = next((n for n in names if n.startswith("budget")), None)
        out.append(
            summary_row(
                f"{module}: {row[names[0]]}",
                f"{row[names[1]]} ({names[1]})",
                _nearest_floor(rows, row, names[1]),
                row[ratio] if ratio else "-",
                row[budget] if budget else "-",
                row["verdict"],
            )
        )
    return out


def _fixed(args: list[str]) -> Callable[[str], list[str]]:
    return lambda _help: list(args)


def cold_start_rows(module: str, tables: list[list[Cells]]) -> list[Row]:
    out = []
    for _, row in _judged(tables):
        name = next(iter(row.values()))
        out.append(
            summary_row(
                f"{module}: {name}",
                f"{row['median s']} s to ready (min / max {row['min / max s']})",
                "-",
                "-",
                f"{row['budget s']} s",
                row["verdict"],
            )
        )
    return out


def _cold_start_quick(help_text: str) -> list[str]:
    # Shrunk only through the flags its help offers: its owner may change them.
    argv = ["--keys", "100000"] if "--keys" in help_text else []
    return argv + (["--no-loaders"] if "--no-loaders" in help_text else [])


MODULES = [
    Module("verify", _fixed(["--keys", "200000", "--runs", "3", "--sample", "10000"]), verify_rows),
    # Three short runs rather than one long: a single run on a shared machine is noise.
    Module(
        "http",
        _fixed(["--workers", "1", "2", "--runs", "3", "--duration", "3", "--no-breakdown"]),
    ),
    Module("ledger_ops", _fixed(["--keys", "500", "--http-keys", "500", "--rounds", "3"])),
    Module("propagation", _fixed(["--keys", "300", "--sqlite-keys", "60", "--own", "30"])),
    Module(
        "audit", _fixed(["--events", "30000", "--owners", "100", "--queries", "50"]), audit_rows
    ),
    Module("usage", _fixed(["--keys", "20000", "--runs", "5", "--drains", "3"]), usage_rows),
    Module("cold_start", _cold_start_quick, cold_start_rows),
    Module("soak", _fixed(["--minutes", "1"])),
]


# Running


@dataclass
class Outcome:
    module: str
    argv: list[str]
    seconds: float
    returncode: int | None  # None: timed out
    rows: list[Row]
    log: Path


def _help(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    return done.stdout


def run_module(module: Module, quick: bool, timeout: float, log_dir: Path, echo: bool) -> Outcome:
    """Run one benchmark in its own process group; its rows, or a failed row, never a raise."""
    log = log_dir / f"{module.name}.log"
    started = time.monotonic()
    argv: list[str] = []
    try:
        help_text = _help(module.name)
        argv = module.quick(help_text) if quick else []
        argv += module.args
        offers_json = "--json" in help_text
        if offers_json:
            argv.append("--json")
        command = [sys.executable, "-m", f"bench.{module.name}", *argv]
        output = _run(command, log, timeout, echo)
    except subprocess.TimeoutExpired:
        return Outcome(module.name, argv, time.monotonic() - started, None, [], log)
    except Exception as e:
        log.write_text(f"run_all could not run bench.{module.name}: {e!r}\n")
        return Outcome(module.name, argv, time.monotonic() - started, -1, [], log)
    text, returncode = output
    rows = summary_from(module, text, offers_json)
    return Outcome(module.name, argv, time.monotonic() - started, returncode, rows, log)


def _run(command: list[str], log: Path, timeout: float, echo: bool) -> tuple[str, int]:
    """Run the command, its output to the log (and stdout with echo); stop it at the timeout."""
    with log.open("w") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        # A session of its own, so that stopping it at the timeout stops its servers too.
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        # A timer, not a check per line: a benchmark may hang without printing anything.
        watchdog = threading.Timer(timeout, stop)
        watchdog.start()
        chunks = []
        assert process.stdout is not None
        try:
            for line in process.stdout:
                chunks.append(line)
                out.write(line)
                out.flush()
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            process.wait()
        finally:
            watchdog.cancel()
        if fired.is_set():
            out.write(f"\nrun_all: stopped after {timeout:.0f} s\n")
            raise subprocess.TimeoutExpired(command, timeout)
        return "".join(chunks), process.returncode


def summary_from(module: Module, output: str, offers_json: bool) -> list[Row]:
    """The module's rows: its summary line if it has one, else its printed tables."""
    if offers_json:
        for line in reversed(output.splitlines()):
            if line.startswith(SUMMARY_PREFIX):
                rows: list[Row] = json.loads(line.removeprefix(SUMMARY_PREFIX))
                return rows
        return []
    tables = parse_tables(output)
    try:
        return (module.rows or generic_rows)(module.name, tables)
    except (KeyError, StopIteration, ValueError):
        # Its columns changed since its reader here was written: fall back to the generic one.
        return generic_rows(module.name, tables)


def outcome_rows(outcome: Outcome) -> list[Row]:
    """The rows of one module for the combined table, with a failed row where needed."""
    rows = list(outcome.rows)
    tail = _last_line(outcome.log)
    if outcome.returncode is None:
        rows.append(summary_row(f"{outcome.module}: timed out", "-", verdict="failed"))
    elif not rows:
        what = f"{outcome.module}: exit {outcome.returncode}, no summary rows"
        rows.append(summary_row(what, tail or "-", verdict="failed"))
    elif outcome.returncode not in (0, 1) or (
        outcome.returncode == 1 and all(r["verdict"] != "misses" for r in rows)
    ):
        # Exit 1 is how a benchmark says a budget was missed; anything else is a failure.
        what = f"{outcome.module}: exit {outcome.returncode}"
        rows.append(summary_row(what, tail or "-", verdict="failed"))
    return rows


def _last_line(log: Path) -> str:
    """The exception a failed module ended with, else its last line, shortened."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception|Exit)\b", line)]
        if errors or lines:
            return (errors or lines)[-1][:100]
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, a few minutes")
    names = [m.name for m in MODULES]
    parser.add_argument("--only", nargs="+", choices=names, help="run only these")
    parser.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these out")
    parser.add_argument("--timeout", type=float, help="seconds per module (900 quick, 3600 full)")
    parser.add_argument(
        "--log-dir", type=Path, help="where each module's output goes (a new temp dir)"
    )
    parser.add_argument("--echo", action="store_true", help="also stream each module's output")
    args = parser.parse_args(argv)
    timeout = args.timeout or (900.0 if args.quick else 3600.0)
    if args.log_dir:
        log_dir = args.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
    else:
        # Kept after the run, so that every module's full tables can be read afterwards.
        log_dir = Path(tempfile.mkdtemp(prefix=time.strftime("anthra-bench-%Y%m%d-%H%M%S-")))

    shown = ["--quick"] if args.quick else []
    if args.only:
        shown += ["--only", *args.only]
    if args.skip:
        shown += ["--skip", *args.skip]
    if args.timeout:
        shown += ["--timeout", f"{args.timeout:g}"]
    if args.log_dir:
        shown += ["--log-dir", str(args.log_dir)]
    if args.echo:
        shown.append("--echo")
    print("\n".join(machine_lines()))
    print(f"command: {command_line('bench.run_all', shown)}")
    print(f"logs: {log_dir}", flush=True)

    selected = [
        m
        for m in MODULES
        if (REPO / "bench" / f"{m.name}.py").exists()
        and (not args.only or m.name in args.only)
        and m.name not in args.skip
    ]
    missing = [m.name for m in MODULES if not (REPO / "bench" / f"{m.name}.py").exists()]
    outcomes = []
    for module in selected:
        print(f"running bench.{module.name} …", end=" ", flush=True)
        outcome = run_module(module, args.quick, timeout, log_dir, args.echo)
        status = "timed out" if outcome.returncode is None else f"exit {outcome.returncode}"
        print(f"{status} in {outcome.seconds:.0f} s, {len(outcome.rows)} rows", flush=True)
        outcomes.append(outcome)

    rows = [row for outcome in outcomes for row in outcome_rows(outcome)]
    body = [
        [r["what"], r["measured"], r["floor"], r["ratio"], r["budget"], r["verdict"]] for r in rows
    ]
    print()
    print(table(["what", "measured", "floor", "ratio", "budget", "verdict"], body))
    print()
    verdicts = [r["verdict"] for r in rows]
    print(
        f"budgets met: {verdicts.count('meets')}, missed: {verdicts.count('misses')}, "
        f"failed: {verdicts.count('failed')}; rows without a budget: {verdicts.count('-')}"
    )
    if missing:
        print(f"not present, skipped: {', '.join(missing)}")
    print("each module's command (from the repository root):")
    python = os.path.relpath(sys.executable, REPO)
    for outcome in outcomes:
        print(f"  {shlex.join([python, '-m', f'bench.{outcome.module}', *outcome.argv])}")
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if verdicts.count("misses") + verdicts.count("failed") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

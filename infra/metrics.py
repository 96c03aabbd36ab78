"""Prometheus metrics, with the official `prometheus_client`, safe under several workers.

The hot path never touches `prometheus_client`: a verification adds one to a plain dict entry
and a finished request appends to a bounded list (`Tally`); a background thread hands the sums
to the library every `FLUSH_INTERVAL` seconds, off the event loop. Under `serve --workers N` the
library's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, made by `serve` before the workers
start) adds the workers' counts up at scrape time.

No label ever holds a token, a prefix, a key id or a user id: only outcomes, route kinds,
operations and results, from fixed sets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter as Tally_
from collections.abc import Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

log = logging.getLogger("anthra.metrics")

MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
FLUSH_INTERVAL = 1.0
# Latencies kept between flushes; past this, samples are dropped (and counted) rather than held.
MAX_PENDING_SAMPLES = 100_000

OUTCOMES: Final = ("valid", "invalid_token", "insufficient_scope", "stale")
ROUTE_KINDS: Final = ("api", "authz", "verify", "other")

VERIFICATIONS = Counter(
    "anthra_verifications_total",
    "Token verifications, by outcome (stale: the index could not vouch, answered 503) and by the "
    "kind of route that asked (api: /api/* and /mcp; authz: forward-auth; verify: /v1/verify)",
    ["outcome", "route"],
)
REQUEST_SECONDS = Histogram(
    "anthra_request_duration_seconds",
    "Time from a request's first byte to its answer's last, by kind of route",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SAMPLES_DROPPED = Counter(
    "anthra_latency_samples_dropped_total",
    "Request latencies not recorded because the metrics thread fell behind",
)
INDEX_KEYS = Gauge(
    "anthra_index_keys", "Keys in a process's verification index", multiprocess_mode="livemax"
)
INDEX_POSITION = Gauge(
    "anthra_index_position",
    "The store position a process's verification index has applied (the lowest of the workers)",
    multiprocess_mode="livemin",
)
INDEX_LAG = Gauge(
    "anthra_index_lag_seconds",
    "Seconds since a process's index was last proven to hold everything in the store (the "
    "worst of the workers); past the staleness budget, verification answers 503",
    multiprocess_mode="livemax",
)
PROPAGATION_SECONDS = Histogram(
    "anthra_propagation_seconds",
    "From a change's commit (its event's time) to its being applied by another process's index",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
STORE_ERRORS = Counter(
    "anthra_store_errors_total",
    "Operations the event store or a read model's database could not answer, by operation",
    ["operation"],
)
FOLLOWER_RECONNECTS = Counter(
    "anthra_follower_reconnects_total",
    "Times a process's index follower reconnected to the store after losing it",
)
SWEEPER_RUNS = Counter(
    "anthra_sweeper_runs_total", "Expiry and stale-key sweeps, by result", ["result"]
)
SWEEPER_EVENTS = Counter(
    "anthra_sweeper_events_total", "Expired and Revoked (unused) events the sweeper recorded"
)
USAGE_FLUSH_LAG = Gauge(
    "anthra_usage_flush_lag_seconds",
    "Seconds since a process last wrote its usage counts to the store (the worst of the workers)",
    multiprocess_mode="livemax",
)
WEBHOOK_ATTEMPTS = Counter(
    "anthra_webhook_attempts_total",
    "Webhook delivery attempts, by outcome: delivered, retrying (to be tried again), failed "
    "(given up after the retry window; the endpoint is disabled)",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "anthra_webhook_attempt_seconds",
    "How long one webhook attempt took, from connecting to the whole answer (or the timeout)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ACCESS_LOG_DROPPED = Counter(
    "anthra_access_log_dropped_total",
    "Access-log lines dropped because the writer fell behind (requests are never held for them)",
)


class Tally:
    """What the hot path counts between flushes: plain ints and a bounded list of latencies."""

    def __init__(self) -> None:
        self.verifications: Tally_[tuple[str, str]] = Tally_()
        self.latencies: list[tuple[str, float]] = []
        self.propagations: list[float] = []
        self.dropped_samples = 0
        self.dropped_lines = 0

    def verified(self, outcome: str, route: str) -> None:
        self.verifications[(outcome, route)] += 1

    def answered(self, route: str, seconds: float) -> None:
        if len(self.latencies) < MAX_PENDING_SAMPLES:
            self.latencies.append((route, seconds))
        else:
            self.dropped_samples += 1

    def propagated(self, event: object) -> None:
        """Another process's change reached this index: how long after it was recorded."""
        at = getattr(event, "at", None)
        if at is not None and len(self.propagations) < MAX_PENDING_SAMPLES:
            self.propagations.append(max(0.0, time.time() - at.timestamp()))

    def take(self) -> Tally:
        """This tally's counts, leaving it empty (swapped, so a writer never waits)."""
        taken = Tally()
        taken.verifications, self.verifications = self.verifications, Tally_()
        taken.latencies, self.latencies = self.latencies, []
        taken.propagations, self.propagations = self.propagations, []
        taken.dropped_samples, self.dropped_samples = self.dropped_samples, 0
        taken.dropped_lines, self.dropped_lines = self.dropped_lines, 0
        return taken


TALLY = Tally()


def flush(tally: Tally = TALLY) -> None:
    """Hand what was tallied since the last flush to prometheus_client."""
    taken = tally.take()
    for (outcome, route), n in taken.verifications.items():
        VERIFICATIONS.labels(outcome, route).inc(n)
    for route, seconds in taken.latencies:
        REQUEST_SECONDS.labels(route).observe(seconds)
    for seconds in taken.propagations:
        PROPAGATION_SECONDS.observe(seconds)
    if taken.dropped_samples:
        SAMPLES_DROPPED.inc(taken.dropped_samples)
    if taken.dropped_lines:
        ACCESS_LOG_DROPPED.inc(taken.dropped_lines)


class MetricsFlusher:
    """A thread that flushes the tally and samples the gauges once a second."""

    def __init__(self, gauges: Iterable[tuple[Gauge, object]] = ()) -> None:
        self.gauges = list(gauges)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        flush()
        for gauge, read in self.gauges:
            try:
                gauge.set(read())  # type: ignore[operator]
            except Exception:  # a gauge that cannot be read now is left as it was
                log.debug("metrics: a gauge could not be read", exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.run_once()

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_INTERVAL):
            self.run_once()


def exposition() -> bytes:
    """The text exposition: of every worker in multiprocess mode, else of this process."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)


def check_multiprocess() -> None:
    """Under `serve`: the workers' shared folder was named before prometheus_client was first
    imported (it decides then where values live)."""
    from prometheus_client import values

    if not os.environ.get(MULTIPROCESS_DIR) or values.ValueClass is values.MutexValue:
        raise RuntimeError(f"{MULTIPROCESS_DIR} must be set before prometheus_client is imported")


def process_ended() -> None:
    """A worker stopping: its gauges leave the sums (counters stay, as Prometheus expects)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def serve_on_port(port: int, host: str) -> None:
    """Expose the metrics on their own port (a thread of this process)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, host, registry=registry)


def since(instant: float) -> float:
    """Seconds from an epoch instant to now, never negative."""
    return max(0.0, time.time() - instant)

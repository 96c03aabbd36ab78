"""Delivers owners' key events to their webhook endpoints, on a thread of its own.

Each pass reads the audit trail after every enabled endpoint's tracked position, queues what the
endpoint asked for (and the ExpiringSoon notices its owner's keys are due) in the webhook store,
and sends each endpoint's queue in order: a delivery that fails holds the ones behind it and is
tried again with exponential backoff and jitter until the retry window has passed since it was
first tried; then the endpoint is disabled, with the reason its owner sees. The queue and positions
are in the store, so a restart resumes where the last process stopped: at least once, in store
order per endpoint.

Several processes may run a deliverer over one store: an endpoint's lease row (taken, renewed
before each send, and given up at stop) lets one process at a time deliver its messages, on
SQLite and PostgreSQL alike. A process that dies holds its leases until they lapse.

Sends run on a small pool of threads with a timeout each: a slow endpoint costs its own thread,
never a request's.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol
from uuid import UUID

from domain.webhook_endpoint import EXPIRING_SOON, EXPIRY_NOTICE_DAYS
from domain.webhooks import DEFAULT_RETRY_WINDOW, FIRST_DELAY, message_id, notice_id, retry_delay
from domain.webhooks import sign as sign_message
from infra.outage import Outage
from infra.webhook_sender import send as send_message
from ledger.audit_trail import AuditTrail
from ledger.deadline import CONNECTION_ERRORS, StoreUnavailable, unavailable
from ledger.key_ledger import expiring_within
from ledger.webhooks import Webhooks
from projections.audit_trail.view import AuditRow
from projections.key_states.view import KeyState
from projections.webhooks.store import (
    DELIVERED,
    FAILED,
    PENDING,
    Attempt,
    Delivery,
    Endpoint,
    NewDelivery,
)

log = logging.getLogger("anthra.webhooks")
_PAGE = 500
Send = Callable[..., tuple[int | None, str]]


class Payloads(Protocol):
    """The bodies of webhook messages, in the API's wire form (built by the composition root)."""

    def event(self, row: AuditRow) -> bytes: ...

    def expiring_soon(self, state: KeyState, days: int) -> bytes: ...


class WebhookDeliverer:
    """Queues and sends webhook messages, one endpoint per thread at a time."""

    def __init__(
        self,
        webhooks: Webhooks,
        audit: AuditTrail,
        payloads: Payloads,
        *,
        interval: float = 1.0,
        retry_window: float = DEFAULT_RETRY_WINDOW,
        first_retry: float = FIRST_DELAY,
        timeout: float = 10.0,
        concurrency: int = 4,
        allow_http_loopback: bool = False,
        clock: Callable[[], float] = time.time,
        send: Send = send_message,
        jitter: Callable[[], float] = lambda: random.uniform(-1.0, 1.0),
    ) -> None:
        self.webhooks = webhooks
        self.store = webhooks.store
        self.audit = audit
        self.payloads = payloads
        self.interval = interval
        self.retry_window = retry_window
        self.first_retry = first_retry
        self.timeout = timeout
        self.concurrency = concurrency
        self.allow_http_loopback = allow_http_loopback
        self.clock = clock
        self.send = send
        self.jitter = jitter
        # Longer than a send can take, so a lease renewed before each send cannot lapse in it.
        self.lease_seconds = max(30.0, 3 * timeout)
        self.holder = f"deliverer-{uuid.uuid4()}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._busy: set[UUID] = set()
        self._leased: set[UUID] = set()
        self._noticed: set[tuple[UUID, str]] = set()
        self._lock = threading.Lock()
        self._outage = Outage(log, "webhook delivery")

    # One pass

    def run_once(self) -> None:
        """One pass over every enabled endpoint, on the calling thread."""
        self.audit.catch_up()
        for endpoint in self.store.enabled():
            self.work_on(endpoint)

    def work_on(self, endpoint: Endpoint) -> None:
        """Queue what is new for the endpoint, then send its due deliveries in order."""
        if not self._lease(endpoint.endpoint_id):
            return
        current = self.store.endpoint(endpoint.endpoint_id) or endpoint
        self.queue_events(current)
        if EXPIRING_SOON in current.event_types:
            self.queue_expiry_notices(current)
        self.deliver_due(current)

    def queue_events(self, endpoint: Endpoint) -> int:
        """Queue the owner's events after the endpoint's position that it asked for."""
        position, queued = endpoint.position, 0
        while not self._stopping.is_set():
            rows = self.audit.rows_after(position, _PAGE, endpoint.owner_id)
            if not rows:
                break
            new = [
                NewDelivery(
                    message_id=message_id(row.position),
                    type=row.type,
                    position=row.position,
                    payload=self.payloads.event(row),
                )
                for row in rows
                if row.type in endpoint.event_types
            ]
            if not self.store.enqueue(
                endpoint.endpoint_id, position, rows[-1].position, new, self.clock()
            ):
                break  # another process moved it on: it holds the lease now
            position, queued = rows[-1].position, queued + len(new)
            if len(rows) < _PAGE:
                break
        return queued

    def queue_expiry_notices(self, endpoint: Endpoint) -> int:
        """Queue an ExpiringSoon notice for each of the owner's live keys that crossed a
        threshold (7 days, 1 day) before its expiry; each once per key and threshold."""
        ledger = self.webhooks.ledger
        states = expiring_within(ledger, ledger.keys_of(endpoint.owner_id), max(EXPIRY_NOTICE_DAYS))
        now = ledger.now()
        new = []
        for state in states:
            if state.expires_at is None:
                continue
            left = state.expires_at - now
            # Only the nearest threshold crossed: a key minted to expire tomorrow gets the
            # 1-day notice, not a late 7-day one as well.
            days = min(d for d in EXPIRY_NOTICE_DAYS if left <= timedelta(days=d))
            notice = notice_id(str(state.key_id), days)
            if (endpoint.endpoint_id, notice) in self._noticed:
                continue
            new.append(
                NewDelivery(
                    message_id=notice,
                    type=EXPIRING_SOON,
                    position=None,
                    payload=self.payloads.expiring_soon(state, days),
                )
            )
        if not new:
            return 0
        position = endpoint.position
        current = self.store.endpoint(endpoint.endpoint_id)
        if current is not None:
            position = current.position
        # The store skips a notice it has: the position stays where it is.
        if self.store.enqueue(endpoint.endpoint_id, position, position, new, self.clock()):
            self._noticed.update((endpoint.endpoint_id, n.message_id) for n in new)
        return len(new)

    def deliver_due(self, endpoint: Endpoint) -> int:
        """Send the endpoint's pending deliveries in order, until one fails or is not due."""
        sent = 0
        while not self._stopping.is_set():
            delivery = self.store.next_pending(endpoint.endpoint_id)
            if delivery is None:
                return sent
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > self.clock():
                return sent
            secret = self.store.secret(endpoint.endpoint_id)
            if secret is None or not self._lease(endpoint.endpoint_id):
                return sent  # deleted meanwhile, or another process took it over
            if not self.attempt(endpoint, delivery, secret):
                return sent
            sent += 1
        return sent

    def attempt(self, endpoint: Endpoint, delivery: Delivery, secret: str) -> bool:
        """Send one delivery and record what came of it; whether it was delivered."""
        from infra import metrics  # here: serve names the metrics folder before it is imported

        started = self.clock()
        timestamp = int(started)
        headers = {
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_message(
                secret, delivery.message_id, timestamp, delivery.payload
            ),
        }
        status, error = self.send(
            endpoint.url,
            delivery.payload,
            headers,
            timeout=self.timeout,
            allow_loopback=self.allow_http_loopback,
        )
        now = self.clock()
        metrics.WEBHOOK_SECONDS.observe(max(0.0, now - started))
        if status is not None and 200 <= status < 300:
            metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc()
            self.store.record_attempt(
                endpoint.endpoint_id,
                delivery.seq,
                Attempt(
                    at=started,
                    status=DELIVERED,
                    last_status=status,
                    last_error="",
                    next_attempt_at=None,
                    delivered_at=now,
                ),
            )
            return True
        if status is not None:
            error = f"answered {status}" + (
                " (redirects are not followed)" if 300 <= status < 400 else ""
            )
        attempts = delivery.attempts + 1
        # The window runs from this delivery's first try: deliveries wait in order behind it,
        # so that is when the endpoint started failing.
        first_try = started if delivery.first_attempt_at is None else delivery.first_attempt_at
        give_up_at = first_try + self.retry_window
        if now >= give_up_at:
            metrics.WEBHOOK_ATTEMPTS.labels("failed").inc()
            self.store.record_attempt(
                endpoint.endpoint_id,
                delivery.seq,
                Attempt(
                    at=started,
                    status=FAILED,
                    last_status=status,
                    last_error=error,
                    next_attempt_at=None,
                ),
            )
            self.webhooks.disable(
                endpoint.endpoint_id,
                f"{delivery.type} {delivery.message_id} was not delivered after {attempts} "
                f"attempts over {_duration(self.retry_window)}; last: {error}",
            )
            return False
        # The last try falls at the window's end, so the endpoint is not disabled early.
        metrics.WEBHOOK_ATTEMPTS.labels("retrying").inc()
        delay = retry_delay(attempts, self.jitter(), self.first_retry)
        self.store.record_attempt(
            endpoint.endpoint_id,
            delivery.seq,
            Attempt(
                at=started,
                status=PENDING,
                last_status=status,
                last_error=error,
                next_attempt_at=min(now + delay, give_up_at),
            ),
        )
        log.info(
            "webhook %s to endpoint %s failed (%s); attempt %d, next in %.1f s",
            delivery.message_id,
            endpoint.endpoint_id,
            error,
            attempts,
            min(delay, give_up_at - now),
        )
        return False

    def _lease(self, endpoint_id: UUID) -> bool:
        now = self.clock()
        if self.store.lease(endpoint_id, self.holder, now, now + self.lease_seconds):
            with self._lock:
                self._leased.add(endpoint_id)
            return True
        return False

    # The loop

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-send")
        self._thread = threading.Thread(target=self._run, name="webhook-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        # Another process may take the endpoints over now rather than when the leases lapse.
        with self._lock:
            leased = list(self._leased)
        for endpoint_id in leased:
            try:
                self.store.release(endpoint_id, self.holder)
            except Exception:  # best effort: the lease lapses anyway
                log.debug("could not give up the lease of %s", endpoint_id, exc_info=True)
                break

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.audit.catch_up()
                endpoints = self.store.enabled()
            except (StoreUnavailable, *CONNECTION_ERRORS) as e:
                self._outage.failed(unavailable(e).reason)
                continue
            except Exception:
                log.warning("webhook pass failed; will retry", exc_info=True)
                continue
            self._outage.succeeded()
            for endpoint in endpoints:
                with self._lock:
                    if endpoint.endpoint_id in self._busy:
                        continue
                    self._busy.add(endpoint.endpoint_id)
                assert self._pool is not None
                try:
                    self._pool.submit(self._work_on, endpoint)
                except RuntimeError:  # the pool is shut down: stopping
                    return

    def _work_on(self, endpoint: Endpoint) -> None:
        try:
            self.work_on(endpoint)
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            log.info(
                "webhook endpoint %s: store unavailable (%s)",
                endpoint.endpoint_id,
                unavailable(e).reason,
            )
        except Exception:
            log.warning(
                "webhook endpoint %s: pass failed; will retry", endpoint.endpoint_id, exc_info=True
            )
        finally:
            with self._lock:
                self._busy.discard(endpoint.endpoint_id)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"

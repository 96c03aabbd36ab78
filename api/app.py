"""The composition root: settings in, a wired Litestar app out."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import psycopg
from litestar import Litestar, MediaType, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.routes import HTTPRoute

from api import problems
from api.account import AccountController
from api.audit import AuditController
from api.audit_tail import AuditTail
from api.auth import (
    AUTH_EXCEPTION_HANDLERS,
    Authenticator,
    problem_response,
)
from api.authjs import SessionCookieCodec
from api.event_stream import POLL_INTERVAL as STREAM_POLL_INTERVAL
from api.event_stream import EventStreamController, ServiceEventStreamController
from api.forward_auth import ForwardAuth, Gatekeeper
from api.front_door import FrontDoor
from api.health import HealthController
from api.json_body import BODY_PARAMETER, JSON_MEDIA_TYPE, JSONBodyRequest
from api.keys import KeysController
from api.leaks import LeaksController
from api.local_sign_in import local_sign_in
from api.metrics import MetricsController
from api.openapi import openapi_config
from api.operator import OperatorController
from api.page import AccountPage
from api.resource_metadata import protected_resource_metadata
from api.verify import VerifyAtTheDoor, VerifyController
from api.webhooks import WebhookPayloads, WebhooksController
from domain.errors import (
    InvalidInput,
    KeyAlreadyRotated,
    KeyNotActive,
    KeyNotFound,
    TooManyWebhooks,
    WebhookNotFound,
)
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.idempotency import IdempotencyKeyReused
from infra import metrics
from infra.access_log import AccessLog, access_log_enabled
from infra.auth_failure_stores import auth_failure_store_for
from infra.auth_failure_sync import AuthFailureSync
from infra.auth_failures import AuthFailures
from infra.authjs_sessions import DatabaseSessions, SessionTablesMissing
from infra.backends import backend_for
from infra.follower import IndexFollower
from infra.leak_reports import LeakReporters
from infra.metrics import MetricsFlusher
from infra.outage import summary
from infra.policy import Policy
from infra.settings import Settings, load_settings, require_public_origin
from infra.sweeper import ExpirySweeper
from infra.usage_flusher import UsageFlusher
from infra.webhook_deliverer import WebhookDeliverer
from ledger.audit_trail import AuditTrail
from ledger.deadline import (
    CONNECTION_ERRORS,
    HandlerThreads,
    OutcomeUnknown,
    StoreUnavailable,
    unavailable,
)
from ledger.key_ledger import Clock, KeyLedger
from ledger.recording import KeyBusy
from ledger.usage_report import UsageReport
from ledger.webhooks import Webhooks
from projections.usage.counter import UsageCounter
from projections.verification_index.index import IndexStale

log = logging.getLogger("anthra.api")
MAX_BODY_BYTES = 64 * 1024
# Threads for the handlers that block (every command waits on the database): asyncio's default,
# the CPU count plus four, would let six requests at a time into the ledger on two cores, and
# the rest queue in front of commands that could have been saved together.
HANDLER_THREADS = 40


def _error(status: int, error: str, description: str, field: str | None = None) -> Response[Any]:
    return Response(
        problems.ErrorBody(error=error, error_description=description, field=field),
        status_code=status,
        media_type=MediaType.JSON,
    )


def _invalid_input(_: Request[Any, Any, Any], exc: InvalidInput) -> Response[Any]:
    return _error(400, "invalid_request", exc.message, exc.field)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    field = first.get("key") or None
    message = first.get("message") or exc.detail
    if field == BODY_PARAMETER and first.get("source") == "body":
        # Litestar's words for an empty body are its parameter's name, quoted: "'data'".
        return _error(400, "invalid_request", f"send a JSON body ({JSON_MEDIA_TYPE})")
    return _error(400, "invalid_request", str(message), field)


def _not_found(_: Request[Any, Any, Any], exc: KeyNotFound) -> Response[Any]:
    return _error(404, "not_found", f"no key with id {exc.key_id}")


def _webhook_not_found(_: Request[Any, Any, Any], exc: WebhookNotFound) -> Response[Any]:
    return _error(404, "not_found", str(exc))


def _too_many_webhooks(_: Request[Any, Any, Any], exc: TooManyWebhooks) -> Response[Any]:
    return _error(409, "conflict", str(exc))


def _reused(_: Request[Any, Any, Any], exc: IdempotencyKeyReused) -> Response[Any]:
    return _error(422, "idempotency_key_reused", str(exc), IDEMPOTENCY_HEADER)


def _already_rotated(_: Request[Any, Any, Any], exc: KeyAlreadyRotated) -> Response[Any]:
    return _error(409, "conflict", str(exc))


def _not_active(_: Request[Any, Any, Any], exc: KeyNotActive) -> Response[Any]:
    return _error(409, "conflict", str(exc))


def _stale(request: Request[Any, Any, Any], _: IndexStale) -> Response[Any]:
    return problem_response(request, problems.unavailable())


def _busy(_: Request[Any, Any, Any], exc: KeyBusy) -> Response[Any]:
    return _error(409, "conflict", str(exc))


def _store_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The reason (host, port, the driver's words) goes to the log, not to the caller.
    reason = unavailable(exc)
    log.debug("%s %s: 503, %s", request.method, request.url.path, reason.reason)
    if isinstance(reason, OutcomeUnknown):
        description = (
            "the key database stopped answering while this change was being recorded: it may "
            "or may not have been recorded; read the key before trying again"
        )
    elif request.method in {"GET", "HEAD"}:
        description = "the key database is not answering; retry shortly"
    else:
        description = "the key database is not answering; nothing was changed; retry shortly"
    response = _error(503, "temporarily_unavailable", description)
    response.headers["Retry-After"] = "1"
    return response


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
        415: "unsupported_media_type",
        429: "too_many_requests",
        503: "temporarily_unavailable",
    }
    response = _error(exc.status_code, codes.get(exc.status_code, "invalid_request"), exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The redacting log handlers keep any token in the trace down to its prefix.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "server_error", "an internal error occurred; it has been logged")


def create_app(settings: Settings | None = None, *, clock: Clock = time.time) -> Litestar:
    """Wire store, ledger, index follower, sweeper, authentication and controllers."""
    settings = settings or load_settings()
    require_public_origin(settings)
    backend = backend_for(settings)
    usage_counter = UsageCounter()
    ledger = KeyLedger(backend.store_env(), clock=clock, on_use=usage_counter.used)
    key_states_view = backend.key_states_view(ledger)
    audit = AuditTrail(ledger, backend.audit_view(ledger))
    follower = IndexFollower(
        ledger,
        backend,
        key_states=ledger.read_states_from(key_states_view)
        if key_states_view is not None
        else None,
        read_models=[audit],
        poll_interval=settings.poll_interval,
        heartbeat_interval=settings.heartbeat_interval,
        max_staleness=settings.max_staleness,
    )
    usage_store = backend.usage_store()
    usage_flusher = UsageFlusher(usage_counter, usage_store, interval=settings.usage_flush_interval)
    usage = UsageReport(usage_store, usage_counter, clock)
    sweeper = ExpirySweeper(ledger, interval=settings.sweep_interval, usage=usage)
    webhooks = Webhooks(
        ledger,
        backend.webhook_store(ledger),
        allow_http_loopback=settings.webhooks_allow_http_loopback,
    )
    deliverer = WebhookDeliverer(
        webhooks,
        audit,
        WebhookPayloads(ledger),
        interval=settings.webhook_interval,
        retry_window=settings.webhook_retry_window,
        first_retry=settings.webhook_first_retry,
        timeout=settings.webhook_timeout,
        concurrency=settings.webhook_concurrency,
        allow_http_loopback=settings.webhooks_allow_http_loopback,
    )
    if settings.dev_mode:
        # One secret per run, shared by every worker through the environment `serve` sets.
        secrets_in_use: tuple[str, ...] = (settings.dev_secret or secrets.token_urlsafe(32),)
        sign_in_code = settings.dev_sign_in_code or secrets.token_urlsafe(24)
    else:
        secrets_in_use, sign_in_code = settings.auth_secrets, ""
    codec = SessionCookieCodec(secrets_in_use) if secrets_in_use else None
    # Auth.js's database strategy only when configured: otherwise a cookie that is not a JWE is
    # no session, and costs no query.
    database_sessions = (
        DatabaseSessions(settings.authjs_database_url) if settings.authjs_database_url else None
    )
    failures = AuthFailures(
        per_ip=settings.auth_failures_per_ip,
        per_prefix=settings.auth_failures_per_prefix,
        window=settings.auth_failure_window,
    )
    failure_store = auth_failure_store_for(settings, backend) if failures.enabled else None
    failure_sync = (
        AuthFailureSync(failures, failure_store, settings.auth_failure_sync_interval)
        if failure_store is not None
        else None
    )
    authenticator = Authenticator(
        ledger.verify,
        codec,
        settings.allowed_origins,
        database_sessions=database_sessions,
        public_url=settings.public_url,
        failures=failures if failures.enabled else None,
    )

    policy = Policy.load(settings.policy_file) if settings.policy_file else None
    gatekeeper = Gatekeeper(policy, authenticator, settings.public_url)
    access_log = (
        AccessLog(json=settings.log_json)
        if access_log_enabled(settings.log_level, settings.access_log)
        else None
    )

    index = ledger.index

    def propagated(event: Any) -> None:
        # Once caught up at start: what the index learns after that is propagation, not history.
        if follower.ready.is_set():
            metrics.TALLY.propagated(event)

    ledger.on_applied = propagated
    metrics_flusher = MetricsFlusher(
        [
            (metrics.INDEX_KEYS, index.__len__),
            (metrics.INDEX_POSITION, lambda: index.position),
            (metrics.INDEX_LAG, index.lag),
            (metrics.USAGE_FLUSH_LAG, usage_flusher.lag),
        ]
    )

    async def handler_threads() -> None:
        # Litestar runs sync handlers on the loop's default executor.
        asyncio.get_running_loop().set_default_executor(
            HandlerThreads(HANDLER_THREADS, thread_name_prefix="handler")
        )

    def start() -> None:
        if access_log is not None:
            access_log.start()
        log.info("event store: %s (%s)", backend.name, backend.describe())
        follower.start()
        sweeper.start()
        usage_flusher.start()
        deliverer.start()
        metrics_flusher.start()
        if failure_sync is not None:
            failure_sync.start()

    async def check_session_tables() -> None:
        if database_sessions is None:
            return
        try:
            await database_sessions.check_tables()
        except psycopg.Error as e:
            # Bearer tokens need no session database: serve them, and answer 503 to session
            # cookies until it is back.
            log.warning(
                "Auth.js session database unreachable at start (%s); session cookies answer "
                "503 until it is back",
                summary(e),
            )
        except SessionTablesMissing as e:
            log.error("%s", e)
            raise

    async def stop() -> None:
        # Under five seconds in all, whatever the database does: each step ends on its own.
        usage_flusher.stop(timeout=2.0)
        usage_store.close()
        if failure_sync is not None and failure_store is not None:
            failure_sync.stop()
            failure_store.close()
        sweeper.stop(timeout=0.5)
        deliverer.stop(timeout=0.5)
        webhooks.store.close()
        follower.stop(timeout=0.5)
        metrics_flusher.stop(timeout=0.5)
        metrics.process_ended()
        ledger.close()
        if database_sessions is not None:
            await database_sessions.close()
        if access_log is not None:
            access_log.stop()

    allowed: dict[str, str] = {}
    app = Litestar(
        route_handlers=[
            KeysController,
            AccountController,
            VerifyController,
            HealthController,
            local_sign_in,
            AccountPage,
            AuditController,
            OperatorController,
            LeaksController,
            MetricsController,
            EventStreamController,
            WebhooksController,
            ServiceEventStreamController,
            protected_resource_metadata,
            ForwardAuth,
        ],
        dependencies={
            "ledger": Provide(lambda: ledger, use_cache=True, sync_to_thread=False),
            "audit": Provide(lambda: audit, use_cache=True, sync_to_thread=False),
            "usage": Provide(lambda: usage, use_cache=True, sync_to_thread=False),
            "webhooks": Provide(lambda: webhooks, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={
            **AUTH_EXCEPTION_HANDLERS,
            InvalidInput: _invalid_input,
            ValidationException: _validation,
            KeyNotFound: _not_found,
            WebhookNotFound: _webhook_not_found,
            TooManyWebhooks: _too_many_webhooks,
            KeyNotActive: _not_active,
            KeyAlreadyRotated: _already_rotated,
            IdempotencyKeyReused: _reused,
            IndexStale: _stale,
            KeyBusy: _busy,
            StoreUnavailable: _store_unavailable,
            **dict.fromkeys(CONNECTION_ERRORS, _store_unavailable),
            HTTPException: _http,
            Exception: _unexpected,
        },
        state=State(
            {
                "ledger": ledger,
                "follower": follower,
                "sweeper": sweeper,
                "open_streams": 0,
                "audit_tail": AuditTail(audit, STREAM_POLL_INTERVAL),
                # Per owner, so that one account cannot hold every stream the process allows.
                "streams_by_owner": {},
                # Read once at start: a missing or wrong keys document stops the start.
                "leak_reporters": (
                    LeakReporters.load(settings.leak_keys_file) if settings.leak_keys_file else None
                ),
                "settings": settings,
                "verify_secret": settings.verify_secret,
                "session_codec": codec,
                "authenticator": authenticator,
                "audit": audit,
                "usage": usage,
                "webhooks": webhooks,
                "webhook_deliverer": deliverer,
                "policy": policy,
                "gatekeeper": gatekeeper,
                "dev_mode": settings.dev_mode,
                "dev_sign_in_code": sign_in_code,
                "dev_user": settings.dev_user,
                "sign_in_url": settings.sign_in_url,
                "public_url": settings.public_url,
                "authorization_servers": settings.authorization_servers,
            }
        ),
        on_startup=[handler_threads, check_session_tables, start],
        on_shutdown=[stop],
        openapi_config=openapi_config(),
        request_class=JSONBodyRequest,
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        debug=False,
    )
    allowed.update(
        (route.path_format, ", ".join(sorted(route.methods)))
        for route in app.routes
        if isinstance(route, HTTPRoute)
    )
    # Before routing, so that even an unknown path with a token in its URL is a 400, not a 404,
    # and `/v1/authz` is answered without it; outside everything, so every layer sees the
    # trusted client, scheme and host. It authenticates the protected paths (what
    # `KeyAuthMiddleware` does for another Litestar app), sets every answer's defaults
    # (no-store, the request id, OPTIONS' Allow) and writes the access log.
    app.asgi_handler = FrontDoor.configured(
        app.asgi_handler,
        settings,
        access_log=access_log,
        gatekeeper=gatekeeper,
        verifier=VerifyAtTheDoor(
            ledger,
            authenticator,
            secret=settings.verify_secret,
            max_body=MAX_BODY_BYTES,
            public_url=settings.public_url,
        ),
        allowed_methods=allowed,
        authenticator=authenticator,
    )
    return app

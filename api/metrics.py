"""`GET /metrics`: the Prometheus exposition, to loopback clients only, and not at all on the main
port when the metrics have a port of their own (ANTHRA_METRICS_PORT)."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec

from infra import metrics
from infra.settings import is_loopback

METRICS_PATH = "/metrics"


class MetricsController(Controller):
    tags = ["health"]

    @get(
        METRICS_PATH,
        media_type=metrics.CONTENT_TYPE,
        responses={
            200: ResponseSpec(
                str,
                description="Prometheus text exposition",
                media_type="text/plain",
                generate_examples=False,
            ),
            404: ResponseSpec(None, description="Not to this client, or served on its own port"),
        },
    )
    async def metrics(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The service's metrics: verifications by outcome, latencies, the index's size, position
        and lag, propagation, store errors, reconnects, sweeps, usage flushes, dropped log lines.
        Only to loopback clients (after trusted proxies), and only when not on a port of their
        own."""
        client = request.client.host if request.client else ""
        if request.app.state.settings.metrics_port or not is_loopback(client):
            raise NotFoundException()
        body = await anyio.to_thread.run_sync(metrics.exposition)
        return Response(body, media_type=metrics.CONTENT_TYPE)

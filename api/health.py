"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from api.schemas import Health, Readiness
from infra.follower import IndexFollower


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz")
    async def healthz(self) -> Health:
        """The process is up."""
        return Health(status="ok")

    @get(
        "/readyz",
        responses={503: ResponseSpec(Readiness, description="Not ready: the index is catching up")},
    )
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[Readiness]:
        """Ready once the verification index has caught up with the store and is fresh."""
        follower: IndexFollower = request.app.state.follower
        index = follower.ledger.index
        lag = index.lag() if follower.backend.shared else 0.0
        ready = follower.ready.is_set() and index.is_fresh()
        body = Readiness(
            ready=ready,
            backend=follower.backend.name,
            position=index.position,
            keys=len(index),
            lag_seconds=round(lag, 4),
        )
        return Response(body, status_code=200 if ready else 503)

"""Probes for orchestrators: /healthz (the process answers) and /readyz (Postgres and Redis answer)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from referral_broker.services.context import BrokerContext


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[dict[str, str]]:
    broker: BrokerContext = state.broker
    checks = {"postgres": "ok", "redis": "ok"}
    try:
        await broker.pool.fetchval("SELECT 1")
    except Exception:  # any failure means not ready
        checks["postgres"] = "unreachable"
    ping = getattr(broker.doorbell, "ping", None)
    if ping is not None and not await ping():
        checks["redis"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return Response(checks, status_code=200 if ready else 503)

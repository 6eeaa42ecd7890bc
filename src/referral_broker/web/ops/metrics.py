"""`/metrics` in Prometheus' text format.

Every value is read from PostgreSQL (and the queue's length from Redis) when Prometheus scrapes,
through a collector over one snapshot. Counters kept in a process's memory would be wrong as soon as
more than one server process answers (`serve --workers N`): each would count only what it served,
and restarting one would reset its share. Reading the database is right from any process, at the
cost of a few aggregate queries per scrape (each served by an index, or bounded by the table).

When `REFERRAL_BROKER_METRICS_TOKEN` is set, a scrape must send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from referral_broker.services import monitoring
from referral_broker.services.monitoring import MetricsSnapshot
from referral_broker.web.ops.access import broker_of

_P = "referral_broker_"


class SnapshotCollector(Collector):
    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield CounterMetricFamily(_P + "submissions", "Referrals submitted", value=s.totals.submissions)
        yield CounterMetricFamily(
            _P + "dispatches", "Deliveries made available in a clinic's inbox", value=s.totals.dispatches
        )
        yield CounterMetricFamily(
            _P + "acknowledgements", "Deliveries acknowledged by their clinic", value=s.totals.acknowledgements
        )
        failures = CounterMetricFamily(_P + "failures", "Failures by reason", labels=["reason"])
        for f in s.failures:
            failures.add_metric([f.reason], f.total)
        yield failures
        yield CounterMetricFamily(
            _P + "notifications_sent", "Clinic notices sent through every channel", value=s.totals.notifications_sent
        )
        yield CounterMetricFamily(
            _P + "notifications_failed",
            "Clinic notices given up after every try",
            value=s.totals.notifications_failed,
        )
        retention = CounterMetricFamily(
            _P + "retention_rows", "Rows changed by retention runs (from their audit events)", labels=["kind"]
        )
        retention.add_metric(["anonymised_referrals"], s.totals.retention_anonymised)
        retention.add_metric(["expired_deliveries"], s.totals.retention_expired_deliveries)
        yield retention
        latency = s.latency
        buckets = [(f"{b:g}", n) for b, n in zip(latency.bounds, latency.cumulative, strict=True)]
        buckets.append(("+Inf", latency.count))
        yield HistogramMetricFamily(
            _P + "delivery_latency_seconds",
            "Time from submission to the clinic's inbox",
            buckets=buckets,
            sum_value=latency.total_seconds,
        )
        by_status = GaugeMetricFamily(_P + "deliveries", "Deliveries by status", labels=["status"])
        for status, n in sorted(s.deliveries_by_status.items()):
            by_status.add_metric([status], n)
        yield by_status
        depth = GaugeMetricFamily(
            _P + "queue_depth", "Work waiting: jobs in Redis, due rows in the outbox", labels=["queue"]
        )
        depth.add_metric(["outbox"], s.outbox_pending)
        if s.arq_depth is not None:
            depth.add_metric(["redis"], s.arq_depth)
        yield depth
        yield GaugeMetricFamily(
            _P + "reconciler_lag_seconds",
            "Age of the oldest due, unfinished outbox row",
            value=s.reconciler_lag_seconds,
        )
        messages = GaugeMetricFamily(
            _P + "customer_messages",
            "Customer-service messages by state (closed ones await deletion)",
            labels=["state"],
        )
        for state, n in sorted(s.customer_messages.items()):
            messages.add_metric([state], n)
        yield messages
        if s.heartbeat_age_seconds is not None:
            yield GaugeMetricFamily(
                _P + "worker_heartbeat_age_seconds",
                "Seconds since a worker last ran its heartbeat job",
                value=s.heartbeat_age_seconds,
            )


def render(snapshot: MetricsSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    broker = broker_of(request)
    token = broker.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(b"a bearer token is required\n", status_code=401, media_type="text/plain")
    body = render(await monitoring.metrics_snapshot(broker))
    # What generate_latest writes (text format 0.0.4); Litestar adds the charset, so it is not named here.
    return Response(body, media_type="text/plain; version=0.0.4")

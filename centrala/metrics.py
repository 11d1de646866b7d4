"""Prometheus metrics for ``GET /metrics``.

Web, SMTP and worker processes all write the same database, so every count that must be exact across
processes is read at scrape time from where it is kept: the ledgers and the outbox in the database, the queue
and the worker registrations in Redis. Those reads are cached for ``CENTRALA_METRICS_CACHE_SECONDS`` so that
frequent scrapes (or several Prometheus servers) cost little. Only the Twilio webhook latency is measured in
this process, as it happens; each web process reports its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from centrala.core.queue import read_queue_state
from centrala.ingest.models import CallEventRecord, InboundEmail, InboundStatus
from centrala.telephony.events import CallEventKind
from centrala.tickets.models import ClockState, OutboundEmail, OutboundState, SlaClock, SlaMetric

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WEBHOOK_PREFIX = "/twilio/"
_WEBHOOK_KINDS = frozenset(kind.value for kind in CallEventKind)

# Not in prometheus_client's global registry: each app has its own registry, which forwards to this one
# histogram, so that building a second app (as tests do) does not register the name twice.
WEBHOOK_SECONDS = Histogram(
    "centrala_twilio_webhook_seconds",
    "Time from a Twilio webhook request arriving to our answer being sent, by webhook and HTTP status.",
    ["kind", "code"],
    # Twilio waits 15 s for an answer; the interesting part is well under a second.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
    registry=None,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WebhookTiming:
    """ASGI middleware timing the Twilio webhook routes (a pure ASGI one: it must not buffer the answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        kind = path[len(WEBHOOK_PREFIX) :]
        kind = kind if kind in _WEBHOOK_KINDS else "other"  # bounded label values, whatever is requested
        code = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            WEBHOOK_SECONDS.labels(kind, str(code)).observe(time.perf_counter() - started)


class _Forward(Collector):
    """Hands an existing collector's samples to another registry."""

    def __init__(self, collector: Histogram) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        return self.collector.collect()


class _CachedFamilies(Collector):
    """The service-wide families of the last refresh."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class MetricsExporter:
    """One app's metrics: this process's own, and the service-wide counts, refreshed at most every
    ``cache_seconds``."""

    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Forward(WEBHOOK_SECONDS))
        ProcessCollector(registry=self.registry)
        self._service = _CachedFamilies()
        self.registry.register(self._service)
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()

    def render(self, *, session: Session, redis_client: redis.Redis | None) -> bytes:
        """The text exposition format, the service-wide counts read again if the cached ones are too old."""
        with self._lock:
            now = time.monotonic()
            if self._refreshed_at is None or now - self._refreshed_at >= self.cache_seconds:
                self._service.families = service_families(session=session, redis_client=redis_client)
                self._refreshed_at = now
            return generate_latest(self.registry)


def service_families(*, session: Session, redis_client: redis.Redis | None) -> list[Metric]:
    """Counts of the whole service, read from the database and Redis; a part that does not answer is reported
    down (``centrala_database_up`` / ``centrala_redis_up`` 0) and its families left out."""
    families: list[Metric] = []
    database_up = GaugeMetricFamily("centrala_database_up", "Whether the database answered the last scrape.")
    try:
        families += _database_families(session)
        database_up.add_metric([], 1)
    except (SQLAlchemyError, OSError) as error:
        log.warning("metrics: database unavailable: %s", error)
        session.rollback()
        database_up.add_metric([], 0)
    families.append(database_up)

    redis_up = GaugeMetricFamily("centrala_redis_up", "Whether Redis answered the last scrape.")
    try:
        if redis_client is None:
            raise redis.ConnectionError("no Redis client")
        families += _queue_families(redis_client)
        redis_up.add_metric([], 1)
    except (redis.RedisError, OSError) as error:
        log.warning("metrics: Redis unavailable: %s", error)
        redis_up.add_metric([], 0)
    families.append(redis_up)
    return families


def _counts_by(session: Session, family: GaugeMetricFamily, column: Any, members: Iterable[Any]) -> None:
    """One sample per value of ``members`` (zero when no row has it): the rows counted by ``column``."""
    counts = dict(session.execute(select(column, func.count()).group_by(column)).all())
    for member in members:
        family.add_metric([member.value], counts.get(member, 0))


def _database_families(session: Session) -> list[Metric]:
    inbound = GaugeMetricFamily(
        "centrala_inbound_emails",
        "Inbound e-mails in the ledger by status: received (not processed yet), processed, quarantined.",
        labels=["status"],
    )
    _counts_by(session, inbound, InboundEmail.status, InboundStatus)

    call_events = GaugeMetricFamily(
        "centrala_call_events", "Twilio call events in the ledger by status.", labels=["status"]
    )
    _counts_by(session, call_events, CallEventRecord.status, InboundStatus)

    outbound = GaugeMetricFamily(
        "centrala_outbound_emails",
        "Outbound e-mails by delivery state: queued, deferred (waiting for a retry), sent, bounced, failed.",
        labels=["state"],
    )
    _counts_by(session, outbound, OutboundEmail.state, OutboundState)

    breaches = CounterMetricFamily(
        "centrala_sla_breaches",
        "SLA clocks whose due time passed while they ran, by metric (every breach ever recorded).",
        labels=["metric"],
    )
    open_breaches = GaugeMetricFamily(
        "centrala_sla_breached_clocks",
        "SLA clocks breached and still running or paused (not met or cancelled yet), by metric.",
        labels=["metric"],
    )
    rows = session.execute(
        select(SlaClock.metric, SlaClock.state, func.count())
        .where(SlaClock.breached_at.is_not(None))
        .group_by(SlaClock.metric, SlaClock.state)
    ).all()
    total = dict.fromkeys(SlaMetric, 0)
    still_open = dict.fromkeys(SlaMetric, 0)
    for metric, state, count in rows:
        total[metric] += count
        if state in (ClockState.RUNNING, ClockState.PAUSED):
            still_open[metric] += count
    for metric in SlaMetric:
        breaches.add_metric([metric.value], total[metric])
        open_breaches.add_metric([metric.value], still_open[metric])
    return [inbound, call_events, outbound, breaches, open_breaches]


def _queue_families(redis_client: redis.Redis) -> list[Metric]:
    state = read_queue_state(redis_client)
    jobs = GaugeMetricFamily(
        "centrala_queue_jobs",
        "Jobs of the work queue by registry: queued (waiting), started, scheduled, deferred, failed.",
        labels=["registry"],
    )
    for registry, count in state.jobs.items():
        jobs.add_metric([registry], count)
    workers = GaugeMetricFamily("centrala_workers", "Workers registered with a recent heartbeat.")
    workers.add_metric([], state.workers)
    scheduler = GaugeMetricFamily("centrala_scheduler_up", "Whether a scheduler holds the queue's lock.")
    scheduler.add_metric([], 1 if state.scheduler else 0)
    return [jobs, workers, scheduler]

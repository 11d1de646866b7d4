"""GET /metrics: the service's counts read from the database and Redis, the webhook latency of this process,
behind a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from centrala.core.queue import get_queue
from centrala.core.settings import Settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.metrics import MetricsExporter
from centrala.tickets.models import (
    ClockState,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    SlaClock,
    SlaMetric,
)
from tests.factories import make_ticket
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def metrics_app(app, redis_url):
    app.state.settings = Settings(metrics_token=TOKEN, redis_url=redis_url)
    app.state.metrics = MetricsExporter(cache_seconds=0)
    return app


def samples(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _inbound(session, blobs, n: int, status: InboundStatus) -> None:
    recorded = record_inbound_email(
        session=session,
        raw=make_mail(message_id=f"<metrics-{status}-{n}@x>"),
        mailbox="support@localhost",
        mail_from="",
        rcpt_tos=["support@localhost"],
        now=NOW,
        blobs=blobs,
    )
    session.get(InboundEmail, recorded.id).status = status


def _outbound(session, n: int, state: OutboundState) -> None:
    session.add(
        OutboundEmail(
            kind=OutboundKind.REPLY,
            mailbox="support@localhost",
            mail_from="support@localhost",
            recipient="jana@example.cz",
            message_id=f"metrics-{n}@centrala.test",
            raw=b"Subject: x\r\n\r\nx\r\n",
            state=state,
            created_at=NOW,
            updated_at=NOW,
        )
    )


def _clock(session, metric: SlaMetric, state: ClockState, *, breached: bool) -> None:
    session.add(
        SlaClock(
            ticket=make_ticket(session),
            metric=metric,
            state=state,
            target_minutes=60,
            started_at=NOW - timedelta(hours=3),
            due_at=NOW - timedelta(hours=2),
            breached_at=NOW - timedelta(hours=2) if breached else None,
        )
    )


def test_metrics_count_mail_delivery_states_and_breaches_from_the_database(
    metrics_app, client, session, blobs
):
    for n in range(3):
        _inbound(session, blobs, n, InboundStatus.PROCESSED)
    _inbound(session, blobs, 0, InboundStatus.QUARANTINED)
    _inbound(session, blobs, 0, InboundStatus.RECEIVED)
    for n, state in enumerate(
        [OutboundState.SENT, OutboundState.SENT, OutboundState.DEFERRED, OutboundState.FAILED]
    ):
        _outbound(session, n, state)
    _clock(session, SlaMetric.FIRST_RESPONSE, ClockState.RUNNING, breached=True)
    _clock(session, SlaMetric.FIRST_RESPONSE, ClockState.MET, breached=True)
    _clock(session, SlaMetric.RESOLUTION, ClockState.RUNNING, breached=False)
    session.flush()

    seen = samples(client)

    def value(name: str, **labels: str) -> float:
        return seen[(name, frozenset(labels.items()))]

    assert value("centrala_inbound_emails", status="processed") == 3
    assert value("centrala_inbound_emails", status="quarantined") == 1
    assert value("centrala_inbound_emails", status="received") == 1
    assert value("centrala_outbound_emails", state="sent") == 2
    assert value("centrala_outbound_emails", state="deferred") == 1
    assert value("centrala_outbound_emails", state="failed") == 1
    assert value("centrala_outbound_emails", state="bounced") == 0
    assert value("centrala_sla_breaches_total", metric="first_response") == 2
    assert value("centrala_sla_breached_clocks", metric="first_response") == 1
    assert value("centrala_sla_breaches_total", metric="resolution") == 0
    assert value("centrala_database_up") == 1 and value("centrala_redis_up") == 1


def test_metrics_report_queue_depth_and_workers_from_redis(metrics_app, client, redis_url):
    queue = get_queue(redis.Redis.from_url(redis_url))
    before = samples(client)[("centrala_queue_jobs", frozenset({("registry", "queued")}))]
    job = queue.enqueue("centrala.workers.jobs.sweep_stale_emails")
    try:
        after = samples(client)
        assert after[("centrala_queue_jobs", frozenset({("registry", "queued")}))] == before + 1
        assert after[("centrala_workers", frozenset())] == 0
        assert after[("centrala_scheduler_up", frozenset())] == 0
    finally:
        queue.remove(job)
        job.delete()


def test_counts_are_cached_between_scrapes(metrics_app, client, session, blobs):
    metrics_app.state.metrics = MetricsExporter(cache_seconds=3600)
    first = samples(client)[("centrala_inbound_emails", frozenset({("status", "processed")}))]
    _inbound(session, blobs, 99, InboundStatus.PROCESSED)
    session.flush()
    assert samples(client)[("centrala_inbound_emails", frozenset({("status", "processed")}))] == first
    metrics_app.state.metrics = MetricsExporter(cache_seconds=0)
    assert samples(client)[("centrala_inbound_emails", frozenset({("status", "processed")}))] == first + 1


def test_twilio_webhook_latency_is_a_histogram_per_webhook_and_status(metrics_app, client):
    key = ("centrala_twilio_webhook_seconds_count", frozenset({("kind", "voice"), ("code", "403")}))
    before = samples(client).get(key, 0)
    assert client.post("/twilio/voice", data={"CallSid": "CA" + "0" * 32}).status_code == 403
    assert client.post("/twilio/voice", data={"CallSid": "CA" + "1" * 32}).status_code == 403
    assert samples(client)[key] == before + 2


def test_metrics_need_the_token_and_are_off_without_one(app, client, redis_url):
    app.state.settings = Settings(redis_url=redis_url)
    off = client.get("/metrics", headers=AUTH)
    assert off.status_code == 404 and "CENTRALA_METRICS_TOKEN" in off.json()["detail"]

    app.state.settings = Settings(metrics_token=TOKEN, redis_url=redis_url)
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", headers=AUTH).status_code == 200

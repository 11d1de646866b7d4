"""Reports for supervisors over a period: volume, response and resolution times, SLA compliance, calls,
satisfaction, and the customers who generate most of the work. Each report is a list of rows (a header and
values) so that the console can draw it and offer it as CSV."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centrala.tickets.models import (
    Agent,
    ClockState,
    Contact,
    CsatSurvey,
    Queue,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Team,
    TeamQueue,
    Ticket,
)
from centrala.tickets.phone_models import Call

PARETO_SHARE = 0.8

# The queues a report covers (a supervisor's teams' queues); None covers everything.
Scope = Sequence[int] | None


def _in_scope(queue_column: Any, queue_ids: Scope) -> list[Any]:
    """The condition limiting a report to ``queue_ids`` (none when it covers everything)."""
    return [] if queue_ids is None else [queue_column.in_(list(queue_ids))]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    header: tuple[str, ...]
    rows: list[tuple[object, ...]]


def volume_by_day_and_channel(
    *, session: Session, since: datetime, until: datetime, queue_ids: Scope = None
) -> Report:
    """New tickets per day and channel."""
    day = func.date(Ticket.created_at)
    rows = session.execute(
        select(day, Ticket.channel, func.count())
        .where(Ticket.created_at >= since, Ticket.created_at < until, *_in_scope(Ticket.queue_id, queue_ids))
        .group_by(day, Ticket.channel)
        .order_by(day, Ticket.channel)
    ).all()
    return Report(
        "volume",
        "New tickets by day and channel",
        ("day", "channel", "tickets"),
        [(str(d), channel.value, count) for d, channel, count in rows],
    )


def volume_by_queue(*, session: Session, since: datetime, until: datetime, queue_ids: Scope = None) -> Report:
    rows = session.execute(
        select(func.coalesce(Ticket.queue_id, 0), func.count())
        .where(Ticket.created_at >= since, Ticket.created_at < until, *_in_scope(Ticket.queue_id, queue_ids))
        .group_by(Ticket.queue_id)
    ).all()
    names = {queue.id: queue.name for queue in session.scalars(select(Queue))}
    data = sorted(((names.get(qid, "no queue"), count) for qid, count in rows), key=lambda r: -r[1])
    return Report("queues", "New tickets by queue", ("queue", "tickets"), data)


def volume_by_type(*, session: Session, since: datetime, until: datetime, queue_ids: Scope = None) -> Report:
    """New tickets by week and type (what the case is about; "not set" until someone says)."""
    rows = session.execute(
        select(Ticket.created_at, Ticket.case_type).where(
            Ticket.created_at >= since, Ticket.created_at < until, *_in_scope(Ticket.queue_id, queue_ids)
        )
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for created_at, case_type in rows:
        year, number, _ = created_at.isocalendar()
        key = (f"{year}-W{number:02d}", case_type.value if case_type else "not set")
        counts[key] = counts.get(key, 0) + 1
    data = [(period, kind, count) for (period, kind), count in sorted(counts.items())]
    return Report("types", "New tickets by week and type", ("week", "type", "tickets"), data)


def response_times_by_team(
    *, session: Session, since: datetime, until: datetime, queue_ids: Scope = None
) -> Report:
    """Median and 90th percentile business minutes to the first response and to resolution, per team (the
    team whose queue the ticket is in; a queue of several teams counts for each)."""
    met = session.execute(
        select(Team.name, SlaClock.metric, SlaClock.achieved_minutes)
        .join(Ticket, SlaClock.ticket_id == Ticket.id)
        .join(TeamQueue, TeamQueue.queue_id == Ticket.queue_id)
        .join(Team, Team.id == TeamQueue.team_id)
        .where(
            SlaClock.state == ClockState.MET,
            SlaClock.met_at >= since,
            SlaClock.met_at < until,
            *_in_scope(Ticket.queue_id, queue_ids),
        )
    ).all()
    rows = _times_by_name(met, resolution_p90=True)
    return Report(
        "teams",
        "Response and resolution times by team (business minutes)",
        ("team", "first responses", "median", "p90", "resolutions", "median resolution", "p90 resolution"),
        rows,
    )


def _times_by_name(
    met: Iterable[tuple[str, SlaMetric, float]], *, resolution_p90: bool
) -> list[tuple[object, ...]]:
    """Per name, in order: first responses with their median and p90, resolutions with their median (and p90)."""
    by_name: dict[str, dict[SlaMetric, list[float]]] = {}
    for name, metric, minutes in met:
        by_name.setdefault(name, {}).setdefault(metric, []).append(float(minutes))
    rows: list[tuple[object, ...]] = []
    for name in sorted(by_name):
        first = by_name[name].get(SlaMetric.FIRST_RESPONSE, [])
        resolution = by_name[name].get(SlaMetric.RESOLUTION, [])
        row: tuple[object, ...] = (
            name,
            len(first),
            _round(statistics.median(first)) if first else None,
            _round(_percentile(first, 0.9)) if first else None,
            len(resolution),
            _round(statistics.median(resolution)) if resolution else None,
        )
        if resolution_p90:
            row += (_round(_percentile(resolution, 0.9)) if resolution else None,)
        rows.append(row)
    return rows


def response_times_by_agent(
    *, session: Session, since: datetime, until: datetime, queue_ids: Scope = None
) -> Report:
    """Median and 90th percentile business minutes to the first response, per agent who gave it, and median
    business minutes to resolution of the tickets they own."""
    met = session.execute(
        select(Ticket.assignee_id, SlaClock.metric, SlaClock.achieved_minutes)
        .join(Ticket, SlaClock.ticket_id == Ticket.id)
        .where(
            SlaClock.state == ClockState.MET,
            SlaClock.met_at >= since,
            SlaClock.met_at < until,
            *_in_scope(Ticket.queue_id, queue_ids),
        )
    ).all()
    names = {agent.id: agent.name or agent.email for agent in session.scalars(select(Agent))}
    rows = _times_by_name(
        ((names.get(assignee_id, "unassigned"), metric, minutes) for assignee_id, metric, minutes in met),
        resolution_p90=False,
    )
    return Report(
        "agents",
        "Response and resolution times by agent (business minutes)",
        ("agent", "first responses", "median", "p90", "resolutions", "median resolution"),
        rows,
    )


def sla_compliance(*, session: Session, since: datetime, until: datetime, queue_ids: Scope = None) -> Report:
    """Per policy and metric: clocks that ended in the period, met in time, breached."""
    rows = session.execute(
        select(SlaPolicy.name, SlaClock.metric, func.count(), func.count(SlaClock.breached_at))
        .join(SlaPolicy, SlaClock.policy_id == SlaPolicy.id)
        .join(Ticket, SlaClock.ticket_id == Ticket.id)
        .where(
            SlaClock.state == ClockState.MET,
            SlaClock.met_at >= since,
            SlaClock.met_at < until,
            *_in_scope(Ticket.queue_id, queue_ids),
        )
        .group_by(SlaPolicy.name, SlaClock.metric)
        .order_by(SlaPolicy.name, SlaClock.metric)
    ).all()
    data = [
        (policy, metric.value, total, total - breached, breached, _round(100 * (total - breached) / total))
        for policy, metric, total, breached in rows
    ]
    return Report(
        "sla", "SLA compliance by policy", ("policy", "metric", "met", "in time", "late", "in time %"), data
    )


def call_kpis(*, session: Session, since: datetime, until: datetime, queue_ids: Scope = None) -> Report:
    rows = session.execute(
        select(Call.outcome, func.count(), func.avg(Call.wait_seconds), func.avg(Call.talk_seconds))
        .where(
            Call.direction == "inbound",
            Call.started_at >= since,
            Call.started_at < until,
            Call.outcome.is_not(None),
            *_in_scope(Call.queue_id, queue_ids),
        )
        .group_by(Call.outcome)
        .order_by(Call.outcome)
    ).all()
    data = [(outcome, count, _round(wait), _round(talk)) for outcome, count, wait, talk in rows]
    return Report("calls", "Inbound calls by outcome", ("outcome", "calls", "avg wait s", "avg talk s"), data)


def csat(*, session: Session, since: datetime, until: datetime, queue_ids: Scope = None) -> Report:
    rows = session.execute(
        select(CsatSurvey.rating, func.count())
        .join(Ticket, CsatSurvey.ticket_id == Ticket.id)
        .where(
            CsatSurvey.answered_at >= since,
            CsatSurvey.answered_at < until,
            CsatSurvey.rating.is_not(None),
            *_in_scope(Ticket.queue_id, queue_ids),
        )
        .group_by(CsatSurvey.rating)
        .order_by(CsatSurvey.rating)
    ).all()
    return Report(
        "csat", "Customer ratings", ("rating", "answers"), [(rating, count) for rating, count in rows]
    )


def pareto_customers(
    *, session: Session, since: datetime, until: datetime, queue_ids: Scope = None
) -> Report:
    """The customers who together opened 80 % of the period's tickets, most first, with the running share."""
    rows = session.execute(
        select(Contact.id, Contact.name, func.count(Ticket.id))
        .join(Ticket, Ticket.contact_id == Contact.id)
        .where(Ticket.created_at >= since, Ticket.created_at < until, *_in_scope(Ticket.queue_id, queue_ids))
        .group_by(Contact.id, Contact.name)
        .order_by(func.count(Ticket.id).desc(), Contact.id)
    ).all()
    total = sum(count for _, _, count in rows)
    data, running = [], 0
    for contact_id, name, count in rows:
        if total and running / total >= PARETO_SHARE:
            break
        running += count
        data.append((contact_id, name, count, _round(100 * running / total)))
    return Report(
        "pareto",
        f"Customers behind {PARETO_SHARE:.0%} of tickets",
        ("contact", "name", "tickets", "cumulative %"),
        data,
    )


def all_reports(
    *, session: Session, since: datetime, until: datetime, queue_ids: Scope = None
) -> list[Report]:
    """Every report over the period, limited to ``queue_ids`` when given."""
    return [
        report(session=session, since=since, until=until, queue_ids=queue_ids)
        for report in (
            volume_by_day_and_channel,
            volume_by_queue,
            volume_by_type,
            response_times_by_agent,
            response_times_by_team,
            sla_compliance,
            call_kpis,
            csat,
            pareto_customers,
        )
    ]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)

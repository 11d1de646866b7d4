"""SLA clocks on the real database: policy choice, start, pause, resume, stop, warnings, breaches, recompute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select

from centrala.core.settings import get_settings
from centrala.tickets.models import (
    BusinessCalendarRow,
    Channel,
    ClockState,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    SegmentKind,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.outbox import queue_reply
from centrala.tickets.seed import seed_demo_data
from centrala.tickets.sla_clocks import (
    CHECK_DUE_JOB,
    check_clock,
    choose_policy,
    find_due_clocks,
    on_agent_response,
    on_customer_message,
    on_status_change,
    recompute_open_clocks,
    start_clocks_for_new_ticket,
)
from centrala.tickets.tickets import note_customer_activity, open_ticket
from tests.factories import (
    make_agent,
    make_contact,
    make_interaction,
    make_organization,
    make_queue,
    make_ticket,
)

PRAGUE = ZoneInfo("Europe/Prague")
# 2026-11-20 is a Friday; Prague is UTC+1 in November.
FRIDAY_1630 = datetime(2026, 11, 20, 16, 30, tzinfo=PRAGUE)
MONDAY_0900 = datetime(2026, 11, 23, 9, 0, tzinfo=PRAGUE)


@pytest.fixture()
def settings():
    return get_settings().model_copy(update={"mailboxes": ["support@localhost"]})


def make_calendar(session, *, hours=(("09:00", "17:00"),)) -> BusinessCalendarRow:
    row = BusinessCalendarRow(
        name=f"Prague office {id(hours)}-{session.scalar(select(func.count(BusinessCalendarRow.id)))}",
        timezone="Europe/Prague",
        weekly_hours={str(day): [list(pair) for pair in hours] for day in range(5)},
        extra_holidays=[],
        updated_at=MONDAY_0900,
    )
    session.add(row)
    session.flush()
    return row


def make_policy(
    session,
    *,
    name="Standard",
    calendar=None,
    precedence=100,
    is_default=False,
    targets=None,
    warn_before_minutes=15,
    escalations=None,
    **conditions,
) -> SlaPolicy:
    policy = SlaPolicy(
        name=name,
        precedence=precedence,
        is_default=is_default,
        calendar=calendar,
        targets=targets or {"default": {"first_response": 60, "next_response": 120, "resolution": 480}},
        warn_before_minutes=warn_before_minutes,
        escalations=escalations or [],
        updated_at=MONDAY_0900,
        **conditions,
    )
    session.add(policy)
    session.flush()
    return policy


def clock_of(clocks, metric, cycle=0) -> SlaClock:
    return next(c for c in clocks if c.metric is metric and c.cycle == cycle)


def all_clocks(session, ticket) -> list[SlaClock]:
    return list(
        session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id))
    )


def scheduled_jobs(session) -> list[tuple[datetime, str, tuple]]:
    return [(job.at, job.func, job.args) for job in session.info.get("centrala.pending_jobs", []) if job.at]


def check_at(moment: datetime) -> tuple[datetime, str, tuple]:
    """The scheduled job that checks the clocks due at ``moment``, a whole second."""
    return (moment, CHECK_DUE_JOB, (int(moment.timestamp()),))


def test_matching_policy_with_lowest_precedence_wins_and_the_default_catches_the_rest(session):
    queue = make_queue(session)
    organization = make_organization(session)
    default = make_policy(session, name="Default", is_default=True, precedence=0)
    by_queue = make_policy(session, name="Queue", precedence=50, queue_id=queue.id)
    by_org = make_policy(session, name="VIP", precedence=10, organization_id=organization.id)
    make_policy(session, name="Phone only", precedence=1, channel=Channel.PHONE)
    make_policy(session, name="Urgent", precedence=5, priority=TicketPriority.URGENT)

    vip = make_ticket(session, contact=make_contact(session, organization=organization), queue=queue)
    in_queue = make_ticket(session, queue=queue)
    plain = make_ticket(session)

    assert choose_policy(session=session, ticket=vip) == by_org
    assert choose_policy(session=session, ticket=in_queue) == by_queue
    assert choose_policy(session=session, ticket=plain) == default


def test_no_policy_starts_no_clocks(session):
    ticket = make_ticket(session)
    assert start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900) == []


def test_friday_afternoon_ticket_is_due_monday_0930_and_warned_at_0915_in_business_hours(session):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    ticket = make_ticket(session, created_at=FRIDAY_1630)

    clocks = start_clocks_for_new_ticket(session=session, ticket=ticket, now=FRIDAY_1630)

    first = clock_of(clocks, SlaMetric.FIRST_RESPONSE)
    assert first.due_at == datetime(2026, 11, 23, 9, 30, tzinfo=PRAGUE)
    assert first.warn_at == datetime(2026, 11, 23, 9, 15, tzinfo=PRAGUE)
    assert first.warn_at.astimezone(PRAGUE).hour == 9  # never at midnight
    assert first.next_check_at == first.warn_at
    jobs = scheduled_jobs(session)
    assert check_at(first.warn_at) in jobs
    assert check_at(first.due_at) in jobs
    job_ids = [job.job_id for job in session.info["centrala.pending_jobs"]]
    assert len(set(job_ids)) == len(job_ids)


def test_tickets_whose_clocks_fall_due_in_the_same_second_share_one_check_per_second(session):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    # A weekend's tickets all start their clocks at Monday's opening.
    for moment in (FRIDAY_1630 + timedelta(hours=2), FRIDAY_1630 + timedelta(days=1)):
        start_clocks_for_new_ticket(session=session, ticket=make_ticket(session, created_at=moment), now=moment)
    # One opened at 09:00:00.4 on Monday: its instants are not whole seconds.
    late = MONDAY_0900 + timedelta(milliseconds=400)
    late_first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=make_ticket(session, created_at=late), now=late),
        SlaMetric.FIRST_RESPONSE,
    )

    jobs = scheduled_jobs(session)
    # First response warned 09:45 and due 10:00, resolution warned and due later: four seconds for the two
    # weekend tickets, four more (each a second later) for the third.
    assert check_at(MONDAY_0900 + timedelta(minutes=45)) in jobs
    assert check_at(MONDAY_0900 + timedelta(minutes=60)) in jobs
    assert late_first.due_at == MONDAY_0900 + timedelta(minutes=60, milliseconds=400)
    assert check_at(MONDAY_0900 + timedelta(minutes=60, seconds=1)) in jobs
    assert len(jobs) == 8
    job_ids = [job.job_id for job in session.info["centrala.pending_jobs"]]
    assert len(set(job_ids)) == len(job_ids)


def test_first_response_is_met_by_an_agent_reply_but_not_by_a_note_or_an_acknowledgement(session, settings):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=MONDAY_0900, status=TicketStatus.OPEN)
    make_interaction(
        session, ticket=ticket, occurred_at=MONDAY_0900, author_address=ticket.contact.emails[0].address
    )
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)

    note = make_interaction(
        session,
        ticket=ticket,
        channel=Channel.NOTE,
        direction=Direction.INTERNAL,
        agent=agent,
        occurred_at=MONDAY_0900 + timedelta(minutes=5),
    )
    acknowledgement = make_interaction(
        session, ticket=ticket, direction=Direction.OUTBOUND, occurred_at=MONDAY_0900 + timedelta(minutes=1)
    )
    for interaction in (note, acknowledgement):
        assert (
            on_agent_response(
                session=session,
                ticket=ticket,
                interaction=interaction,
                now=MONDAY_0900 + timedelta(minutes=5),
            )
            == []
        )
    assert clock_of(all_clocks(session, ticket), SlaMetric.FIRST_RESPONSE).state is ClockState.RUNNING

    queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Díváme se na to.",
        html=None,
        now=MONDAY_0900 + timedelta(minutes=40),
        settings=settings,
    )

    clocks = all_clocks(session, ticket)
    first = clock_of(clocks, SlaMetric.FIRST_RESPONSE)
    assert first.state is ClockState.MET
    assert first.met_at == MONDAY_0900 + timedelta(minutes=40)
    assert first.achieved_minutes == pytest.approx(40)
    assert first.breached_at is None and first.next_check_at is None
    # The reply leaves the ticket waiting on the customer: resolution pauses.
    resolution = clock_of(clocks, SlaMetric.RESOLUTION)
    assert resolution.state is ClockState.PAUSED
    assert resolution.segments[-1].cause == "waiting on customer"


def test_customer_message_restarts_next_response_and_resumes_resolution(session, settings):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=MONDAY_0900, status=TicketStatus.OPEN)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    reply = make_interaction(session, ticket=ticket, direction=Direction.OUTBOUND, agent=agent)
    ticket.status = TicketStatus.PENDING
    on_agent_response(
        session=session, ticket=ticket, interaction=reply, now=MONDAY_0900 + timedelta(minutes=10)
    )

    answer_at = MONDAY_0900 + timedelta(hours=2)
    note_customer_activity(ticket=ticket, now=answer_at)
    started = on_customer_message(session=session, ticket=ticket, now=answer_at)

    assert [(c.metric, c.cycle) for c in started] == [(SlaMetric.NEXT_RESPONSE, 1)]
    assert started[0].due_at == answer_at + timedelta(minutes=120)
    resolution = clock_of(all_clocks(session, ticket), SlaMetric.RESOLUTION)
    assert resolution.state is ClockState.RUNNING
    # Another message while we still owe the answer starts nothing new.
    assert on_customer_message(session=session, ticket=ticket, now=answer_at + timedelta(minutes=5)) == []


def test_pending_pauses_the_clock_and_paused_time_is_not_counted(session):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    ticket = make_ticket(session, created_at=MONDAY_0900, status=TicketStatus.OPEN)
    clocks = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    resolution = clock_of(clocks, SlaMetric.RESOLUTION)

    ticket.status = TicketStatus.PENDING
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.OPEN,
        new=TicketStatus.PENDING,
        now=MONDAY_0900 + timedelta(hours=1),
    )
    assert resolution.state is ClockState.PAUSED
    assert resolution.due_at is None and resolution.next_check_at is None
    session.flush()  # a check job finds the clock written
    assert (
        check_clock(
            session=session,
            clock_id=resolution.id,
            now=MONDAY_0900 + timedelta(days=3),
            settings=get_settings(),
        )
        == []
    )

    ticket.status = TicketStatus.OPEN
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.PENDING,
        new=TicketStatus.OPEN,
        now=MONDAY_0900 + timedelta(hours=3),
    )
    assert resolution.state is ClockState.RUNNING
    assert resolution.achieved_minutes == pytest.approx(60)
    # 420 minutes left from 12:00: 12:00-17:00 is 300, Tuesday 09:00 + 120.
    assert resolution.due_at == datetime(2026, 11, 24, 11, 0, tzinfo=PRAGUE)

    ticket.status = TicketStatus.RESOLVED
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.OPEN,
        new=TicketStatus.RESOLVED,
        now=MONDAY_0900 + timedelta(hours=3, minutes=30),
    )
    assert resolution.state is ClockState.MET
    assert resolution.achieved_minutes == pytest.approx(90)
    assert [(s.kind, s.cause) for s in resolution.segments] == [
        (SegmentKind.RUNNING, "awaiting us"),
        (SegmentKind.PAUSED, "waiting on customer"),
        (SegmentKind.RUNNING, "awaiting us"),
    ]
    assert all(s.ended_at is not None for s in resolution.segments)
    # Resolving cancels a response clock that was still open.
    assert clock_of(all_clocks(session, ticket), SlaMetric.FIRST_RESPONSE).state is ClockState.CANCELLED


def test_time_outside_business_hours_is_its_own_segment_and_not_counted(session):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=FRIDAY_1630, status=TicketStatus.OPEN)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=FRIDAY_1630)
    reply = make_interaction(session, ticket=ticket, direction=Direction.OUTBOUND, agent=agent)

    on_agent_response(
        session=session, ticket=ticket, interaction=reply, now=MONDAY_0900 + timedelta(minutes=10)
    )

    first = clock_of(all_clocks(session, ticket), SlaMetric.FIRST_RESPONSE)
    assert first.achieved_minutes == pytest.approx(40)
    assert [(s.kind, s.started_at, s.ended_at) for s in first.segments] == [
        (SegmentKind.RUNNING, FRIDAY_1630, datetime(2026, 11, 20, 17, 0, tzinfo=PRAGUE)),
        (SegmentKind.OUTSIDE_HOURS, datetime(2026, 11, 20, 17, 0, tzinfo=PRAGUE), MONDAY_0900),
        (SegmentKind.RUNNING, MONDAY_0900, MONDAY_0900 + timedelta(minutes=10)),
    ]


def test_breach_fires_its_escalations_once_even_when_checked_twice(session, settings):
    calendar = make_calendar(session)
    escalation_queue = make_queue(session)
    escalation_queue.email_address = "escalations@centrala.test"
    make_policy(
        session,
        is_default=True,
        calendar=calendar,
        escalations=[
            {"on": "warning", "action": "notify_assignee"},
            {"on": "breach", "action": "notify_assignee"},
            {"on": "breach", "action": "raise_priority"},
            {"on": "breach", "action": "notify_queue", "queue_id": escalation_queue.id},
            {"on": "breach", "action": "reassign", "queue_id": escalation_queue.id},
        ],
    )
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=MONDAY_0900, assignee=agent)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900), SlaMetric.FIRST_RESPONSE
    )
    session.flush()  # the check job finds the clock by its id

    assert check_clock(session=session, clock_id=first.id, now=first.warn_at, settings=settings) == [
        "warning"
    ]
    assert first.warned_at == first.warn_at and first.next_check_at == first.due_at
    late = first.due_at + timedelta(minutes=1)
    assert check_clock(session=session, clock_id=first.id, now=late, settings=settings) == ["breach"]
    assert check_clock(session=session, clock_id=first.id, now=late, settings=settings) == []

    assert first.breached_at == late and first.state is ClockState.RUNNING and first.next_check_at is None
    assert ticket.priority is TicketPriority.HIGH
    assert ticket.queue_id == escalation_queue.id
    notifications = session.scalars(
        select(OutboundEmail).where(
            OutboundEmail.ticket_id == ticket.id, OutboundEmail.kind == OutboundKind.NOTIFICATION
        )
    ).all()
    assert sorted(n.recipient for n in notifications) == sorted(
        [agent.email, agent.email, "escalations@centrala.test"]
    )


def test_warning_without_assignee_is_a_note_on_the_ticket(session, settings):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    ticket = make_ticket(session, created_at=MONDAY_0900)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900), SlaMetric.FIRST_RESPONSE
    )
    session.flush()
    check_clock(session=session, clock_id=first.id, now=first.warn_at, settings=settings)
    notes = session.scalars(
        select(Interaction).where(Interaction.ticket_id == ticket.id, Interaction.channel == Channel.NOTE)
    ).all()
    assert len(notes) == 1 and notes[0].subject.startswith("SLA warning")


def test_stale_checks_do_nothing(session, settings):
    policy = make_policy(session, is_default=True, calendar=make_calendar(session))
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=MONDAY_0900)
    clocks = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    first, resolution = clock_of(clocks, SlaMetric.FIRST_RESPONSE), clock_of(clocks, SlaMetric.RESOLUTION)
    old_due = resolution.due_at

    # Met before its due: the job scheduled for the due instant finds nothing to do.
    reply = make_interaction(session, ticket=ticket, direction=Direction.OUTBOUND, agent=agent)
    on_agent_response(
        session=session, ticket=ticket, interaction=reply, now=MONDAY_0900 + timedelta(minutes=5)
    )
    assert (
        check_clock(
            session=session,
            clock_id=first.id,
            now=first.due_at or MONDAY_0900 + timedelta(hours=1),
            settings=settings,
        )
        == []
    )

    # Moved later by a policy change: the job for the old instant does nothing.
    ticket.status = TicketStatus.OPEN
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.PENDING,
        new=TicketStatus.OPEN,
        now=MONDAY_0900 + timedelta(minutes=5),
    )
    old_due = resolution.due_at
    policy.targets = {"default": {"first_response": 60, "next_response": 120, "resolution": 960}}
    recompute_open_clocks(session=session, policy=policy, now=MONDAY_0900 + timedelta(minutes=6))
    assert resolution.due_at > old_due
    assert check_clock(session=session, clock_id=resolution.id, now=old_due, settings=settings) == []
    assert check_clock(session=session, clock_id=9_999_999, now=old_due, settings=settings) == []


def test_recompute_after_a_policy_change_moves_due_and_schedules_a_new_job(session):
    policy = make_policy(session, is_default=True, calendar=make_calendar(session))
    ticket = make_ticket(session, created_at=MONDAY_0900)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900), SlaMetric.FIRST_RESPONSE
    )
    assert first.due_at == MONDAY_0900 + timedelta(minutes=60)

    policy.targets = {"default": {"first_response": 30, "resolution": 480}}
    policy.warn_before_minutes = 10
    assert recompute_open_clocks(session=session, policy=policy, now=MONDAY_0900 + timedelta(minutes=1)) == 2

    assert first.target_minutes == 30
    assert first.due_at == MONDAY_0900 + timedelta(minutes=30)
    assert first.warn_at == MONDAY_0900 + timedelta(minutes=20)
    assert check_at(first.due_at) in scheduled_jobs(session)


def test_recompute_after_a_calendar_change_counts_the_ledger_again(session):
    calendar = make_calendar(session)
    make_policy(session, is_default=True, calendar=calendar)
    ticket = make_ticket(session, created_at=FRIDAY_1630)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=FRIDAY_1630), SlaMetric.FIRST_RESPONSE
    )
    calendar.weekly_hours = {str(day): [["08:00", "17:00"]] for day in range(5)}
    recompute_open_clocks(session=session, calendar_id=calendar.id, now=FRIDAY_1630 + timedelta(minutes=5))
    assert first.due_at == datetime(2026, 11, 23, 8, 30, tzinfo=PRAGUE)


def test_sweep_finds_only_clocks_overdue_beyond_the_grace(session, settings):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    ticket = make_ticket(session, created_at=MONDAY_0900)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900), SlaMetric.FIRST_RESPONSE
    )
    grace = timedelta(minutes=1)
    assert first.id not in find_due_clocks(session=session, now=first.warn_at, grace=grace)
    assert first.id in find_due_clocks(session=session, now=first.warn_at + timedelta(minutes=2), grace=grace)
    check_clock(
        session=session, clock_id=first.id, now=first.warn_at + timedelta(minutes=2), settings=settings
    )
    assert first.id not in find_due_clocks(
        session=session, now=first.warn_at + timedelta(minutes=3), grace=grace
    )


def test_policy_targets_per_priority(session):
    make_policy(
        session,
        is_default=True,
        targets={
            "urgent": {"first_response": 15},
            "default": {"first_response": 240},
        },
    )
    urgent = make_ticket(session, priority=TicketPriority.URGENT, created_at=MONDAY_0900)
    normal = make_ticket(session, created_at=MONDAY_0900)
    assert [
        c.target_minutes for c in start_clocks_for_new_ticket(session=session, ticket=urgent, now=MONDAY_0900)
    ] == [15]
    assert [
        c.target_minutes for c in start_clocks_for_new_ticket(session=session, ticket=normal, now=MONDAY_0900)
    ] == [240]
    # No calendar: round the clock.
    assert all_clocks(session, urgent)[0].due_at == MONDAY_0900.astimezone(UTC) + timedelta(minutes=15)


def test_ticket_detail_shows_its_clocks(session, client):
    make_policy(session, is_default=True, calendar=make_calendar(session))
    _, token = make_agent(session)
    ticket = make_ticket(session, created_at=FRIDAY_1630)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=FRIDAY_1630)

    response = client.get(f"/api/v1/tickets/{ticket.id}", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    sla = response.json()["sla"]
    assert [(c["metric"], c["state"]) for c in sla] == [
        ("first_response", "running"),
        ("resolution", "running"),
    ]
    assert datetime.fromisoformat(sla[0]["due_at"]) == datetime(2026, 11, 23, 9, 30, tzinfo=PRAGUE)


def test_a_reply_that_fails_for_good_reopens_and_resumes_the_paused_clocks(session, settings):
    from centrala.core.errors import PermanentDeliveryError
    from centrala.tickets.outbox import claim_outbound_email, record_delivery_attempt

    make_policy(session, is_default=True, calendar=make_calendar(session))
    agent, _ = make_agent(session)
    ticket = make_ticket(session, created_at=MONDAY_0900, status=TicketStatus.OPEN)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    outbound = queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Hotovo.",
        html=None,
        now=MONDAY_0900 + timedelta(minutes=10),
        settings=settings,
    )
    resolution = clock_of(all_clocks(session, ticket), SlaMetric.RESOLUTION)
    assert resolution.state is ClockState.PAUSED

    failed_at = MONDAY_0900 + timedelta(minutes=20)
    claim_outbound_email(session=session, outbound_id=outbound.id, now=failed_at)
    record_delivery_attempt(
        session=session,
        outbound_id=outbound.id,
        error=PermanentDeliveryError("550 no such user"),
        now=failed_at,
        settings=settings,
    )

    assert ticket.status is TicketStatus.OPEN
    assert resolution.state is ClockState.RUNNING
    assert resolution.achieved_minutes == pytest.approx(10)


def test_raising_priority_on_breach_applies_the_higher_targets_to_open_clocks(session, settings):
    make_policy(
        session,
        is_default=True,
        calendar=make_calendar(session),
        targets={
            "normal": {"first_response": 60, "resolution": 480},
            "high": {"first_response": 30, "resolution": 240},
        },
        escalations=[{"on": "breach", "action": "raise_priority"}],
    )
    ticket = make_ticket(session, created_at=MONDAY_0900)
    clocks = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    first, resolution = clock_of(clocks, SlaMetric.FIRST_RESPONSE), clock_of(clocks, SlaMetric.RESOLUTION)
    session.flush()

    late = MONDAY_0900 + timedelta(minutes=61)
    assert "breach" in check_clock(session=session, clock_id=first.id, now=late, settings=settings)

    assert ticket.priority is TicketPriority.HIGH
    assert resolution.target_minutes == 240
    assert resolution.due_at == MONDAY_0900 + timedelta(minutes=240)
    assert first.breached_at == late and first.next_check_at is None


def test_what_counts_as_a_response(session):
    agent, _ = make_agent(session)
    ticket = make_ticket(session)

    def counts(**fields):
        from centrala.tickets.sla_clocks import counts_as_response

        return counts_as_response(make_interaction(session, ticket=ticket, **fields))

    assert counts(channel=Channel.EMAIL, direction=Direction.OUTBOUND, agent=agent)
    assert counts(channel=Channel.PHONE, direction=Direction.INBOUND, agent=agent)  # a call an agent answered
    assert not counts(channel=Channel.PHONE, direction=Direction.INBOUND)  # missed call, voicemail
    assert not counts(channel=Channel.NOTE, direction=Direction.INTERNAL, agent=agent)
    assert not counts(channel=Channel.EMAIL, direction=Direction.OUTBOUND)  # acknowledgement
    assert not counts(channel=Channel.EMAIL, direction=Direction.INBOUND)


def test_reopening_a_resolved_ticket_starts_a_new_resolution_cycle(session):
    make_policy(session, is_default=True)
    ticket = make_ticket(session, created_at=MONDAY_0900, status=TicketStatus.OPEN)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    ticket.status = TicketStatus.RESOLVED
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.OPEN,
        new=TicketStatus.RESOLVED,
        now=MONDAY_0900 + timedelta(hours=1),
    )
    ticket.status = TicketStatus.OPEN
    on_status_change(
        session=session,
        ticket=ticket,
        old=TicketStatus.RESOLVED,
        new=TicketStatus.OPEN,
        now=MONDAY_0900 + timedelta(hours=2),
    )
    assert [(c.metric, c.cycle, c.state) for c in all_clocks(session, ticket)] == [
        (SlaMetric.FIRST_RESPONSE, 0, ClockState.CANCELLED),
        (SlaMetric.RESOLUTION, 0, ClockState.MET),
        (SlaMetric.NEXT_RESPONSE, 1, ClockState.RUNNING),
        (SlaMetric.RESOLUTION, 1, ClockState.RUNNING),
    ]


def test_a_new_tickets_clocks_are_started_and_checked_without_writing_anything(session):
    # The inbound drain writes a batch of messages at once: opening a ticket and starting its clocks writes
    # nothing, yet their checks are scheduled, and the clocks are stored with the batch.
    make_policy(session, is_default=True, calendar=make_calendar(session))
    contact = make_contact(session)
    earlier = start_clocks_for_new_ticket(session=session, ticket=make_ticket(session), now=MONDAY_0900)
    flushes = []
    event.listen(session, "after_flush", lambda *_: flushes.append(1))

    ticket = open_ticket(
        session=session, contact=contact, subject="Printer", channel=Channel.EMAIL, now=MONDAY_0900, flush=False
    )
    clocks = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)

    assert flushes == []
    assert len(clocks) == 2
    jobs = scheduled_jobs(session)
    for clock in clocks:
        assert check_at(clock.due_at) in jobs
    session.flush()
    stored = all_clocks(session, ticket)
    assert [(c.id, c.metric) for c in stored] == [(c.id, c.metric) for c in clocks]
    assert all(c.segments for c in stored)
    assert len({c.id for c in (*earlier, *clocks)}) == 4


def test_a_ticket_added_without_a_number_does_not_take_the_one_a_new_ticket_is_given(session):
    # next_id (SQLite): a pending row of the model without an id could be numbered, when written, with an id
    # handed out meanwhile; it is written first.
    contact = make_contact(session)
    unnumbered = Ticket(
        subject="Added by hand", status=TicketStatus.NEW, priority=TicketPriority.NORMAL, channel=Channel.EMAIL,
        contact=contact, created_at=MONDAY_0900, updated_at=MONDAY_0900,
    )
    session.add(unnumbered)

    ticket = open_ticket(
        session=session, contact=contact, subject="Printer", channel=Channel.EMAIL, now=MONDAY_0900, flush=False
    )
    numbered = ticket.id
    session.flush()

    assert ticket.id == numbered and unnumbered.id not in (None, numbered)


def test_a_policy_changed_and_not_yet_written_is_the_one_chosen(session):
    # The choice reads policies without writing what the caller has pending, unless a policy is pending.
    standard = make_policy(session, is_default=True)
    ticket = make_ticket(session, created_at=MONDAY_0900)
    standard.is_active = False
    replacement = SlaPolicy(
        name="Replacement", is_default=True, targets={"default": {"first_response": 30}}, updated_at=MONDAY_0900
    )
    session.add(replacement)

    assert choose_policy(session=session, ticket=ticket) == replacement
    [first] = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    assert first.target_minutes == 30


def test_a_new_installations_demo_policy_counts_office_hours_and_the_regions_holidays(session):
    seed_demo_data(session=session, now=MONDAY_0900, region="CZ", timezone="Europe/Prague")

    friday = make_ticket(session, created_at=FRIDAY_1630)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=friday, now=FRIDAY_1630), SlaMetric.FIRST_RESPONSE
    )
    # Half an hour on Friday, the remaining three and a half from Monday 08:00.
    assert first.due_at == datetime(2026, 11, 23, 11, 30, tzinfo=PRAGUE)
    assert first.warn_at == datetime(2026, 11, 23, 11, 0, tzinfo=PRAGUE)

    # 23 December, 16:00: one hour that day; the 24th to 26th are Czech holidays, then the weekend.
    before_christmas = datetime(2026, 12, 23, 16, 0, tzinfo=PRAGUE)
    ticket = make_ticket(session, created_at=before_christmas)
    first = clock_of(
        start_clocks_for_new_ticket(session=session, ticket=ticket, now=before_christmas), SlaMetric.FIRST_RESPONSE
    )
    assert first.due_at == datetime(2026, 12, 28, 11, 0, tzinfo=PRAGUE)

"""SLA clocks of tickets: choose the policy, start, pause, resume and stop clocks, warn and breach.

Every clock keeps a ledger of segments (running, paused with its cause, outside business hours). Only running
business time counts: ``achieved_minutes`` sums the closed running stretches, and while a clock runs its due
instant is ``add_business_minutes(running_since, target - achieved)``. The warning is the instant at which
``target - warn_before`` business minutes have elapsed, so it always falls inside business hours (a 9-17
calendar never warns at midnight). Each pending warning and breach is scheduled with rq at its instant, one job
per second for all the clocks due in it (``schedule_check``); the job finds them by the ``next_check_at`` index
and re-reads each (``check_clock``), so a clock that stopped or moved is not fired, and the scheduler's sweep
finds through the same index the clocks whose job was lost.

Services take a session and ``now``; they flush, never commit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, inspect, or_, select, update
from sqlalchemy.orm import Session, object_session

from centrala.core.db import autoflush_only_for, batch_cache
from centrala.core.queue import enqueue_at_after_commit
from centrala.core.settings import Settings
from centrala.tickets.models import (
    CLOCK_TRANSITIONS,
    Agent,
    Channel,
    ClockState,
    Direction,
    Interaction,
    Queue,
    SegmentKind,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    SlaSegment,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.sla import (
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    next_open,
    open_intervals,
)

log = logging.getLogger(__name__)

CHECK_DUE_JOB = "centrala.workers.jobs.check_due_sla_clocks"
# Due clocks read per query by a check or sweep, which goes on until none is left.
DUE_CLOCKS_PER_QUERY = 500
OPEN_STATES = (ClockState.RUNNING, ClockState.PAUSED)
RESPONSE_METRICS = (SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE)
CAUSE_WAITING_ON_CUSTOMER = "waiting on customer"
CAUSE_WAITING_ON_THIRD_PARTY = "waiting on third party"
CAUSE_RUNNING = "awaiting us"
CAUSE_OUTSIDE_HOURS = "outside business hours"
# Interactions that answer the customer: an agent's e-mail or portal reply, or a call an agent took part in.
# Internal notes and automated mail (acknowledgements, which have no agent) never count.
RESPONSE_CHANNELS = (Channel.EMAIL, Channel.PORTAL, Channel.PHONE)
_PRIORITY_ORDER = (TicketPriority.LOW, TicketPriority.NORMAL, TicketPriority.HIGH, TicketPriority.URGENT)
_DEFAULT_ESCALATIONS = (
    {"on": "warning", "action": "notify_assignee"},
    {"on": "breach", "action": "notify_assignee"},
)


# --- policies and calendars -----------------------------------------------------------------------------------


def choose_policy(*, session: Session, ticket: Ticket) -> SlaPolicy | None:
    """The active policy whose conditions all match ``ticket`` with the lowest precedence, else the default."""
    organization_id = ticket.contact.organization_id if ticket.contact is not None else None
    segment = ticket.contact.segment if ticket.contact is not None else None
    cache = batch_cache(session)
    key = ("choose_policy", ticket.queue_id, ticket.priority, organization_id, ticket.channel, segment)
    with autoflush_only_for(session, SlaPolicy):
        if cache is not None and key in cache:
            # The cache may outlive this session: it keeps the id, and the session loads the row (from its
            # identity map after the first time).
            return None if cache[key] is None else session.get(SlaPolicy, cache[key])
        policy = _choose_policy(
            session=session, ticket=ticket, organization_id=organization_id, segment=segment
        )
    if cache is not None:
        cache[key] = None if policy is None else policy.id
    return policy


def _choose_policy(
    *, session: Session, ticket: Ticket, organization_id: int | None, segment: str | None
) -> SlaPolicy | None:
    matching = session.scalars(
        select(SlaPolicy)
        .where(
            SlaPolicy.is_active.is_(True),
            SlaPolicy.is_default.is_(False),
            or_(SlaPolicy.queue_id.is_(None), SlaPolicy.queue_id == ticket.queue_id),
            or_(SlaPolicy.priority.is_(None), SlaPolicy.priority == ticket.priority),
            or_(SlaPolicy.organization_id.is_(None), SlaPolicy.organization_id == organization_id),
            or_(SlaPolicy.channel.is_(None), SlaPolicy.channel == ticket.channel),
            or_(SlaPolicy.segment.is_(None), SlaPolicy.segment == segment),
        )
        .order_by(SlaPolicy.precedence, SlaPolicy.id)
        .limit(1)
    ).first()
    if matching is not None:
        return matching
    return session.scalars(
        select(SlaPolicy)
        .where(SlaPolicy.is_active.is_(True), SlaPolicy.is_default.is_(True))
        .order_by(SlaPolicy.precedence, SlaPolicy.id)
        .limit(1)
    ).first()


def policy_calendar(policy: SlaPolicy | None) -> BusinessCalendar:
    """The policy's business calendar; round the clock in UTC when it names none."""
    if policy is None:
        return BusinessCalendar.always_open("UTC")
    session = object_session(policy)
    # Loading the calendar row needs nothing pending written: a calendar changed in this session is already
    # the one in its identity map.
    with session.no_autoflush if session is not None else nullcontext():
        row = policy.calendar
    return BusinessCalendar.always_open("UTC") if row is None else row.to_calendar()


def target_minutes(*, policy: SlaPolicy, priority: TicketPriority, metric: SlaMetric) -> int | None:
    """The policy's target for the priority (or its ``"default"`` targets); None: no clock for the metric."""
    targets = policy.targets.get(priority.value) or policy.targets.get("default") or {}
    value = targets.get(metric.value)
    return int(value) if value is not None else None


# --- the state machine ----------------------------------------------------------------------------------------


def transition_clock(
    *,
    session: Session,
    clock: SlaClock,
    to: ClockState,
    now: datetime,
    cause: str = "",
    calendar: BusinessCalendar | None = None,
) -> bool:
    """Move ``clock`` to ``to`` when CLOCK_TRANSITIONS allows it, keeping the ledger; False if not allowed.

    The one place clock states change. Stopping (met, cancelled) closes the ledger; met and cancelled are
    terminal, so a late event cannot restart a stopped clock.
    """
    if to not in CLOCK_TRANSITIONS[clock.state]:
        return False
    calendar = calendar or policy_calendar(clock.policy)
    now = max(now, clock.running_since or clock.paused_since or clock.started_at)
    if clock.state is ClockState.RUNNING:
        _close_running(clock=clock, end=now, calendar=calendar)
    elif clock.state is ClockState.PAUSED:
        for segment in clock.segments:
            if segment.ended_at is None:
                segment.ended_at = now
        clock.paused_since = None
    if to is ClockState.PAUSED:
        clock.paused_since = now
        clock.segments.append(SlaSegment(kind=SegmentKind.PAUSED, cause=cause, started_at=now))
    elif to is ClockState.RUNNING:
        clock.running_since = now
        clock.segments.append(
            SlaSegment(kind=SegmentKind.RUNNING, cause=cause or CAUSE_RUNNING, started_at=now)
        )
    else:
        clock.stopped_at = now
        if to is ClockState.MET:
            clock.met_at = now
    log.info("sla clock %s (%s) %s -> %s", clock.id, clock.metric.value, clock.state.value, to.value)
    clock.state = to
    _schedule(session=session, clock=clock, calendar=calendar)
    return True


def _close_running(*, clock: SlaClock, end: datetime, calendar: BusinessCalendar) -> None:
    """Count the running stretch ``[running_since, end)`` and write it to the ledger, split into business
    time and time outside business hours."""
    start = clock.running_since or end
    pieces: list[tuple[SegmentKind, datetime, datetime]] = []
    cursor = start
    for piece_start, piece_end in open_intervals(start, end, calendar):
        if cursor < piece_start:
            pieces.append((SegmentKind.OUTSIDE_HOURS, cursor, piece_start))
        pieces.append((SegmentKind.RUNNING, piece_start, piece_end))
        clock.achieved_minutes += (piece_end - piece_start) / timedelta(minutes=1)
        cursor = piece_end
    if cursor < end:
        pieces.append((SegmentKind.OUTSIDE_HOURS, cursor, end))
    current = next((segment for segment in clock.segments if segment.ended_at is None), None)
    cause = current.cause if current is not None else CAUSE_RUNNING
    if current is not None:
        clock.segments.remove(current)
    for kind, piece_start, piece_end in pieces:
        clock.segments.append(
            SlaSegment(
                kind=kind,
                cause=cause if kind is SegmentKind.RUNNING else CAUSE_OUTSIDE_HOURS,
                started_at=piece_start,
                ended_at=piece_end,
            )
        )
    clock.running_since = None


def _schedule(*, session: Session, clock: SlaClock, calendar: BusinessCalendar) -> None:
    """Set ``due_at``/``warn_at``/``next_check_at`` from the ledger and schedule a check at each pending one."""
    if clock.state is not ClockState.RUNNING or clock.running_since is None:
        clock.due_at = clock.warn_at = clock.next_check_at = None
        return
    start = clock.running_since
    remaining = max(0.0, clock.target_minutes - clock.achieved_minutes)
    clock.due_at = add_business_minutes(start, remaining, calendar)
    if clock.warned_at is None:
        warn_after = clock.target_minutes - clock.warn_before_minutes - clock.achieved_minutes
        if clock.warn_before_minutes <= 0:
            clock.warn_at = None
        elif warn_after > 0:
            clock.warn_at = add_business_minutes(start, warn_after, calendar)
        else:  # resumed past the warning point: warn as soon as business time runs
            clock.warn_at = min(next_open(start, calendar), clock.due_at)
    pending = [
        at
        for at, done in ((clock.warn_at, clock.warned_at), (clock.due_at, clock.breached_at))
        if at is not None and done is None
    ]
    clock.next_check_at = min(pending) if pending else None
    for at in pending:
        schedule_check(session, at)


def schedule_check(session: Session, at: datetime) -> None:
    """Check, from the whole second after ``at`` (rq's scheduler keeps whole seconds), every clock then due.

    One job per second, named by it, whatever the number of clocks that fall due in it: the tickets of a burst
    of mail, or of a weekend that all start at Monday's opening, share their checks. The job reads the due
    clocks from the ``next_check_at`` index, so a clock that moved or stopped since is not fired by it.
    """
    second = math.ceil(at.timestamp())
    enqueue_at_after_commit(
        session, datetime.fromtimestamp(second, UTC), CHECK_DUE_JOB, second, job_id=f"sla-due-{second}"
    )


# --- events -----------------------------------------------------------------------------------------------------


def start_clocks_for_new_ticket(*, session: Session, ticket: Ticket, now: datetime) -> list[SlaClock]:
    """Start the first-response and resolution clocks of a new ticket under its policy (none without one)."""
    policy = choose_policy(session=session, ticket=ticket)
    if policy is None:
        return []
    calendar = policy_calendar(policy)
    metrics = [
        metric
        for metric in (SlaMetric.FIRST_RESPONSE, SlaMetric.RESOLUTION)
        if target_minutes(policy=policy, priority=ticket.priority, metric=metric) is not None
    ]
    clocks = []
    for metric in metrics:
        clock = _start_clock(
            session=session, ticket=ticket, policy=policy, metric=metric, cycle=0, now=now, calendar=calendar
        )
        if clock is not None:
            clocks.append(clock)
    return clocks


def on_customer_message(*, session: Session, ticket: Ticket, now: datetime) -> list[SlaClock]:
    """A customer wrote on an existing ticket: paused clocks resume, a reopened ticket gets a new resolution
    clock, and a next-response clock starts unless a response clock is already running. Returns new clocks."""
    clocks = _clocks(session=session, ticket=ticket)
    if not clocks:
        return []
    _resume_paused(session=session, clocks=clocks, now=now)
    started = []
    open_metrics = {clock.metric for clock in clocks if clock.state in OPEN_STATES}
    policy = choose_policy(session=session, ticket=ticket)
    if policy is None:
        return []
    calendar = policy_calendar(policy)
    if not open_metrics & set(RESPONSE_METRICS):
        cycle = 1 + max((c.cycle for c in clocks if c.metric is SlaMetric.NEXT_RESPONSE), default=0)
        started.append(
            _start_clock(
                session=session,
                ticket=ticket,
                policy=policy,
                metric=SlaMetric.NEXT_RESPONSE,
                cycle=cycle,
                now=now,
                calendar=calendar,
            )
        )
    if SlaMetric.RESOLUTION not in open_metrics and any(c.metric is SlaMetric.RESOLUTION for c in clocks):
        cycle = 1 + max(c.cycle for c in clocks if c.metric is SlaMetric.RESOLUTION)
        started.append(
            _start_clock(
                session=session,
                ticket=ticket,
                policy=policy,
                metric=SlaMetric.RESOLUTION,
                cycle=cycle,
                now=now,
                calendar=calendar,
            )
        )
    return [clock for clock in started if clock is not None]


def counts_as_response(interaction: Interaction, policy: SlaPolicy | None = None) -> bool:
    """Whether ``interaction`` answers the customer: an agent's outbound e-mail or portal reply, or a call an
    agent answered when ``policy`` lets calls count. Notes and automated mail (acknowledgements carry no
    agent) do not."""
    if interaction.agent_id is None or interaction.channel not in RESPONSE_CHANNELS:
        return False
    if interaction.channel is Channel.PHONE:
        return policy is None or policy.calls_count_as_response
    return interaction.direction is Direction.OUTBOUND


def on_agent_response(
    *, session: Session, ticket: Ticket, interaction: Interaction, now: datetime
) -> list[SlaClock]:
    """An interaction on ``ticket``: when it counts as a response, open response clocks are met; then the
    clocks follow the ticket's status (a reply leaves it pending, which pauses resolution). Returns met clocks."""
    clocks = _clocks(session=session, ticket=ticket)
    policy = next((clock.policy for clock in clocks if clock.policy is not None), None)
    if not counts_as_response(interaction, policy):
        return []
    met = [
        clock
        for clock in clocks
        if clock.metric in RESPONSE_METRICS
        and transition_clock(session=session, clock=clock, to=ClockState.MET, now=now)
    ]
    sync_clocks_with_status(session=session, ticket=ticket, now=now)
    return met


def on_status_change(
    *,
    session: Session,
    ticket: Ticket,
    old: TicketStatus,
    new: TicketStatus,
    now: datetime,
    cause: str = CAUSE_WAITING_ON_CUSTOMER,
) -> None:
    """The ticket's status changed from ``old`` to ``new``: pause, resume, stop or restart its clocks."""
    if old is new:
        return
    reopened = old in (TicketStatus.RESOLVED, TicketStatus.CLOSED) and new in (
        TicketStatus.NEW,
        TicketStatus.OPEN,
    )
    sync_clocks_with_status(session=session, ticket=ticket, now=now, cause=cause)
    if reopened:
        on_customer_message(session=session, ticket=ticket, now=now)


def sync_clocks_with_status(
    *, session: Session, ticket: Ticket, now: datetime, cause: str = CAUSE_WAITING_ON_CUSTOMER
) -> None:
    """Pending pauses running clocks (``cause``), waiting on a third party pauses them for that cause;
    resolved or closed meets resolution and cancels response clocks; new or open resumes paused clocks."""
    clocks = [clock for clock in _clocks(session=session, ticket=ticket) if clock.state in OPEN_STATES]
    if ticket.status is TicketStatus.THIRD_PARTY:
        cause = CAUSE_WAITING_ON_THIRD_PARTY
    if ticket.status in (TicketStatus.PENDING, TicketStatus.THIRD_PARTY):
        for clock in clocks:
            if clock.state is ClockState.RUNNING:
                transition_clock(session=session, clock=clock, to=ClockState.PAUSED, now=now, cause=cause)
    elif ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        for clock in clocks:
            to = ClockState.MET if clock.metric is SlaMetric.RESOLUTION else ClockState.CANCELLED
            transition_clock(session=session, clock=clock, to=to, now=now)
    else:
        _resume_paused(session=session, clocks=clocks, now=now)


def remaining_business_minutes(clock: SlaClock, now: datetime) -> float | None:
    """Business minutes left until the clock is due (negative once overdue); None when it has no due instant
    (paused, stopped). A paused clock's remaining time is its target less what it achieved."""
    calendar = policy_calendar(clock.policy)
    if clock.state is ClockState.PAUSED:
        return clock.target_minutes - clock.achieved_minutes
    if clock.state is not ClockState.RUNNING or clock.due_at is None:
        return None
    if clock.due_at <= now:
        return -business_minutes_between(clock.due_at, now, calendar)
    return business_minutes_between(now, clock.due_at, calendar)


def recompute_open_clocks(
    *, session: Session, now: datetime, policy: SlaPolicy | None = None, calendar_id: int | None = None
) -> int:
    """After a change to ``policy`` (targets, warning) or to the calendar ``calendar_id``: recount the open
    clocks under them from their ledgers and move their due and warning instants. Returns how many."""
    statement = (
        select(SlaClock)
        .join(SlaPolicy, SlaClock.policy_id == SlaPolicy.id)
        .where(SlaClock.state.in_(OPEN_STATES))
    )
    if policy is not None:
        statement = statement.where(SlaClock.policy_id == policy.id)
    if calendar_id is not None:
        statement = statement.where(SlaPolicy.calendar_id == calendar_id)
    clocks = list(session.scalars(statement))
    for clock in clocks:
        _recompute(session=session, clock=clock)
    return len(clocks)


def recompute_ticket_clocks(*, session: Session, ticket: Ticket) -> None:
    """After a change to the ticket (priority, queue, contact): its open clocks move to the policy that now
    applies, with that policy's targets for the ticket's priority. Time already measured is kept."""
    policy = choose_policy(session=session, ticket=ticket)
    for clock in _clocks(session=session, ticket=ticket):
        if clock.state in OPEN_STATES:
            if policy is not None and clock.policy_id != policy.id:
                clock.policy = policy
            _recompute(session=session, clock=clock)


def _recompute(*, session: Session, clock: SlaClock) -> None:
    policy = clock.policy
    if policy is None:
        return
    calendar = policy_calendar(policy)
    target = target_minutes(policy=policy, priority=clock.ticket.priority, metric=clock.metric)
    if target is not None:
        clock.target_minutes = target
    clock.warn_before_minutes = policy.warn_before_minutes
    # Closed stretches that were not paused count again under the (possibly new) calendar.
    clock.achieved_minutes = sum(
        business_minutes_between(segment.started_at, segment.ended_at, calendar)
        for segment in clock.segments
        if segment.kind is not SegmentKind.PAUSED and segment.ended_at is not None
    )
    _schedule(session=session, clock=clock, calendar=calendar)


# --- warnings and breaches ----------------------------------------------------------------------------------


def check_clock(*, session: Session, clock_id: int, now: datetime, settings: Settings) -> list[str]:
    """Fire the clock's warning and breach if they are due now and not yet fired; returns what fired.

    Safe for stale and duplicate jobs: a stopped or paused clock, or one whose instants moved later, fires
    nothing, and each of warning and breach is claimed by one conditional UPDATE, so it fires once.
    """
    clock = session.get(SlaClock, clock_id, populate_existing=True)
    if clock is None or clock.state is not ClockState.RUNNING:
        return []
    fired = []
    for kind, at_column, done_column in (
        ("warning", SlaClock.warn_at, SlaClock.warned_at),
        ("breach", SlaClock.due_at, SlaClock.breached_at),
    ):
        claimed = session.execute(
            update(SlaClock)
            .where(
                SlaClock.id == clock.id,
                SlaClock.state == ClockState.RUNNING,
                at_column <= now,
                done_column.is_(None),
            )
            .values({done_column.key: now})
            .execution_options(synchronize_session="fetch")
        )
        if claimed.rowcount == 1:
            fired.append(kind)
            escalate(session=session, clock=clock, kind=kind, now=now, settings=settings)
    pending = [
        at
        for at, done in ((clock.warn_at, clock.warned_at), (clock.due_at, clock.breached_at))
        if at is not None and done is None
    ]
    clock.next_check_at = min(pending) if pending else None
    session.flush()
    return fired


def find_due_clocks(
    *, session: Session, now: datetime, grace: timedelta, limit: int = DUE_CLOCKS_PER_QUERY
) -> list[int]:
    """Running clocks whose warning or breach is more than ``grace`` overdue (their job was lost); the index
    on ``next_check_at`` makes this cost the number of such clocks, not the number of open tickets."""
    return list(
        session.scalars(
            select(SlaClock.id)
            .where(SlaClock.next_check_at <= now - grace)
            .order_by(SlaClock.next_check_at, SlaClock.id)
            .limit(limit)
        )
    )


def escalate(*, session: Session, clock: SlaClock, kind: str, now: datetime, settings: Settings) -> None:
    """Carry out the policy's actions for a ``kind`` ("warning" or "breach") of ``clock``, through the outbox."""
    # Imported here: the outbox calls back into this module when an agent replies.
    from centrala.tickets.outbox import SYSTEM_AUTHOR, queue_address_notification, queue_agent_notification
    from centrala.tickets.tickets import add_interaction

    ticket = clock.ticket
    configured = list(clock.policy.escalations) if clock.policy is not None else []
    # A kind the policy lists no action for falls back to telling the assignee.
    actions = [a for a in configured if a.get("on") == kind] or [
        a for a in _DEFAULT_ESCALATIONS if a.get("on") == kind
    ]
    due = clock.due_at.strftime("%Y-%m-%d %H:%M UTC") if clock.due_at else "-"
    metric = clock.metric.value.replace("_", " ")
    subject = f"SLA {kind}: {metric} {'due ' + due if kind == 'warning' else 'target missed'}"
    text = (
        f"Ticket {ticket.number} ({ticket.subject}): the {metric} target of {clock.target_minutes} business "
        f"minutes is {'due at ' + due if kind == 'warning' else 'breached (due ' + due + ')'}."
    )
    log.info("sla clock %s of ticket %s: %s", clock.id, ticket.number, kind)
    for action in actions:
        name = action.get("action")
        if name == "notify_assignee":
            assignee = ticket.assignee
            if assignee is not None and assignee.is_active:
                queue_agent_notification(
                    session=session,
                    ticket=ticket,
                    agent=assignee,
                    subject=subject,
                    text=text,
                    now=now,
                    settings=settings,
                )
            else:
                add_interaction(
                    session=session,
                    ticket=ticket,
                    contact=ticket.contact,
                    channel=Channel.NOTE,
                    direction=Direction.INTERNAL,
                    subject=subject,
                    text=text,
                    author_name=SYSTEM_AUTHOR,
                    occurred_at=now,
                    now=now,
                )
        elif name == "notify_team_lead":
            queue = ticket.queue
            lead = session.get(Agent, queue.lead_agent_id) if queue is not None and queue.lead_agent_id else None
            if lead is not None and lead.is_active:
                queue_agent_notification(
                    session=session, ticket=ticket, agent=lead, subject=subject, text=text, now=now, settings=settings
                )
            else:
                log.warning("ticket %s: no active team lead for its queue to tell of the %s", ticket.number, kind)
        elif name in ("notify_queue", "notify_address"):
            address = action.get("address")
            if name == "notify_queue":
                queue = session.get(Queue, action["queue_id"]) if action.get("queue_id") else ticket.queue
                address = queue.email_address if queue is not None else None
            if address:
                queue_address_notification(
                    session=session,
                    ticket=ticket,
                    address=str(address),
                    subject=subject,
                    text=text,
                    now=now,
                    settings=settings,
                )
        elif name == "raise_priority":
            position = _PRIORITY_ORDER.index(ticket.priority)
            if position + 1 < len(_PRIORITY_ORDER):
                ticket.priority = _PRIORITY_ORDER[position + 1]
                ticket.updated_at = max(ticket.updated_at, now)
                # The higher priority's targets apply to the ticket's open clocks from now on.
                recompute_ticket_clocks(session=session, ticket=ticket)
        elif name == "reassign":
            queue = session.get(Queue, action.get("queue_id")) if action.get("queue_id") else None
            if queue is not None:
                ticket.queue_id = queue.id
                ticket.updated_at = max(ticket.updated_at, now)
        else:
            log.warning("sla policy %s: unknown escalation action %r", clock.policy_id, name)
    session.flush()


# --- helpers --------------------------------------------------------------------------------------------------


_KNOWN_CLOCKS_KEY = "centrala.known_clocks"


@contextmanager
def clocks_looked_up(*, session: Session, ticket_ids: Iterable[int]) -> Iterator[None]:
    """Within the block, the clocks of the tickets ``ticket_ids`` are read from one query made at its start
    instead of one per message: for a batch of inbound mail, the tickets its replies continue.

    What the block knows stays right while nothing is written: the clocks are the session's own objects, so
    their changes show; a clock started on one of these tickets is pending and ``_clocks`` adds it, a clock
    deleted sends that ticket back to the database; any flush ends what the block knows
    (``_forget_clocks_on_flush``).
    """
    wanted = set(ticket_ids)
    if not wanted:
        yield
        return
    known: dict[int, list[SlaClock]] = {ticket_id: [] for ticket_id in wanted}
    with session.no_autoflush:
        for clock in session.scalars(
            select(SlaClock).where(SlaClock.ticket_id.in_(wanted)).order_by(SlaClock.id)
        ):
            known[clock.ticket_id].append(clock)
    session.info[_KNOWN_CLOCKS_KEY] = known
    try:
        yield
    finally:
        session.info.pop(_KNOWN_CLOCKS_KEY, None)


@event.listens_for(Session, "after_flush")
def _forget_clocks_on_flush(session: Session, _flush_context: object) -> None:
    """A flush writes the clocks added or deleted in the session, which ``clocks_looked_up`` does not follow."""
    if session.info.get(_KNOWN_CLOCKS_KEY) is not None:
        session.info[_KNOWN_CLOCKS_KEY] = None


def _clocks(*, session: Session, ticket: Ticket) -> list[SlaClock]:
    """The ticket's clocks in the order they were started: those written (from ``clocks_looked_up`` when it
    read them) and those started in the session and not written yet, without writing anything first. A
    message of a drain's batch that continues a ticket opened, or given a clock, earlier in the same batch used
    to write the whole batch so far to ask; the batch's lookups then ended with that flush."""
    statement = select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)
    if ticket.id is None or any(
        isinstance(row, SlaClock) and row.ticket_id == ticket.id for row in session.deleted
    ):
        return list(session.scalars(statement))
    # Numbered when written, after every clock written before them (a sequence, or past SQLite's largest id).
    started = [row for row in session.new if isinstance(row, SlaClock) and row.ticket_id == ticket.id]
    if inspect(ticket).pending:
        return started
    known = session.info.get(_KNOWN_CLOCKS_KEY)
    if known is not None and ticket.id in known:
        return [*known[ticket.id], *started]
    # What else is pending (a reply's interaction, the ticket's new status, other tickets' clocks) goes out
    # with the caller's next flush instead of one of its own.
    with session.no_autoflush:
        return [*session.scalars(statement), *started]


def _resume_paused(*, session: Session, clocks: Iterable[SlaClock], now: datetime) -> None:
    for clock in clocks:
        if clock.state is ClockState.PAUSED:
            transition_clock(session=session, clock=clock, to=ClockState.RUNNING, now=now)


def _start_clock(
    *,
    session: Session,
    ticket: Ticket,
    policy: SlaPolicy,
    metric: SlaMetric,
    cycle: int,
    now: datetime,
    calendar: BusinessCalendar,
) -> SlaClock | None:
    target = target_minutes(policy=policy, priority=ticket.priority, metric=metric)
    if target is None:
        return None
    if ticket.id is None:
        session.flush()
    # Written with the rest of what the message recorded (a drain's whole batch), not by a flush of its own.
    clock = SlaClock(
        ticket_id=ticket.id,
        policy=policy,
        metric=metric,
        cycle=cycle,
        state=ClockState.RUNNING,
        target_minutes=target,
        warn_before_minutes=policy.warn_before_minutes,
        achieved_minutes=0.0,
        started_at=now,
        running_since=now,
        segments=[SlaSegment(kind=SegmentKind.RUNNING, cause=CAUSE_RUNNING, started_at=now)],
    )
    session.add(clock)
    _schedule(session=session, clock=clock, calendar=calendar)
    log.info("sla clock %s #%d started on ticket %s", metric.value, cycle, ticket.number)
    return clock

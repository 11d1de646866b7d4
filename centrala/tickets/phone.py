"""Calls on the customer record: who is calling, who to ring, the call on the ticket, call-backs, screen-pop.

Services take a session and ``now``; they flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from centrala.core.errors import InvalidInputError
from centrala.core.settings import Settings
from centrala.tickets.contacts import MAX_NAME_LENGTH, WITH_CONTACT_DETAILS
from centrala.tickets.models import (
    Agent,
    AgentAvailability,
    AgentQueue,
    Attachment,
    Channel,
    ClockState,
    Contact,
    ContactPhone,
    Direction,
    Interaction,
    Queue,
    SlaClock,
    SlaMetric,
    Ticket,
    TicketStatus,
)
from centrala.tickets.phone_models import Call, CallbackState, CallerMatch
from centrala.tickets.sla_clocks import (
    on_agent_response,
    on_customer_message,
    remaining_business_minutes,
    start_clocks_for_new_ticket,
)
from centrala.tickets.tickets import add_interaction, note_customer_activity, open_ticket

OPEN_TICKET_STATES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.THIRD_PARTY)
UNANSWERED_OUTCOMES = ("missed", "voicemail", "busy", "failed")
# The suggestions of a screen-pop warn of a clock due within this many business minutes.
SOON_MINUTES = 120
RECENT_INTERACTIONS = 5


# --- who is calling, who is rung -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerMatchResult:
    match: CallerMatch
    contact: Contact | None
    candidates: list[Contact]


def match_caller(
    *, session: Session, number: str | None, caller_name: str | None, now: datetime
) -> CallerMatchResult:
    """The contacts reachable at ``number`` (E.164); an unknown caller gets a provisional contact.

    Several contacts sharing the number are all returned and none is chosen (``contact`` None).
    """
    if not number:
        return CallerMatchResult(CallerMatch.WITHHELD, None, [])
    candidates = list(
        session.scalars(
            select(Contact)
            .where(Contact.id.in_(select(ContactPhone.contact_id).where(ContactPhone.number == number)))
            .order_by(Contact.id)
            .options(*WITH_CONTACT_DETAILS)
        )
    )
    if len(candidates) == 1:
        return CallerMatchResult(CallerMatch.SINGLE, candidates[0], candidates)
    if candidates:
        return CallerMatchResult(CallerMatch.SHARED, None, candidates)
    name = " ".join((caller_name or "").split())[:MAX_NAME_LENGTH]
    contact = Contact(
        name=name or format_number(number),
        is_provisional=True,
        created_at=now,
        updated_at=now,
        phones=[ContactPhone(number=number)],
    )
    session.add(contact)
    session.flush()
    return CallerMatchResult(CallerMatch.PROVISIONAL, contact, [contact])


def format_number(number: str | None) -> str:
    """``+420601123456`` as people write it: ``+420 601 123 456``."""
    if not number:
        return "unknown number"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def agents_to_ring(*, session: Session, queue: Queue | None) -> list[Agent]:
    """The active, available agents of ``queue`` (of every queue when None), in a stable order."""
    statement = select(Agent).where(
        Agent.is_active.is_(True), Agent.availability == AgentAvailability.AVAILABLE
    )
    if queue is not None:
        statement = statement.where(
            Agent.id.in_(select(AgentQueue.agent_id).where(AgentQueue.queue_id == queue.id))
        )
    return list(session.scalars(statement.order_by(Agent.id)))


def agent_for_identity(*, session: Session, identity: str | None) -> Agent | None:
    """The agent behind a dialled leg: the browser client ``agent-<id>`` or the agent's phone number."""
    if not identity:
        return None
    if identity.startswith("agent-") and identity[6:].isdigit():
        return session.get(Agent, int(identity[6:]))
    return session.scalar(select(Agent).where(Agent.phone_number == identity).order_by(Agent.id).limit(1))


def queue_by_name(*, session: Session, name: str | None) -> Queue | None:
    if not name:
        return None
    return session.scalar(select(Queue).where(Queue.name == name))


# --- the call on the ticket -----------------------------------------------------------------------------------


def log_call(*, session: Session, call: Call, now: datetime, settings: Settings) -> None:
    """Put an ended call on the contact's timeline and ticket, once; later news (a recording, a transcription,
    the agent's note) refreshes the same interaction.

    An answered call goes on the contact's most recent open ticket in the call's queue, else opens one (unless
    ``answered_call_opens_ticket`` is off: then it is on the timeline only). A missed call or voicemail opens
    or updates such a ticket and asks for a call-back due by the ticket's SLA response clock.
    """
    if call.outcome is None:
        return
    if call.interaction_id is not None:
        _refresh_interaction(session=session, call=call, now=now)
        if call.outcome in ("missed", "voicemail") and call.direction == "inbound":
            _ask_for_callback(session=session, call=call, now=now, settings=settings)
        return
    contact = _contact_for_logging(session=session, call=call)
    if contact is None:
        return  # a withheld number: the call stays in the caller log only
    answered = call.outcome == "answered"
    inbound = call.direction == "inbound"
    ticket = session.get(Ticket, call.ticket_id) if call.ticket_id else None
    if ticket is None:
        ticket = _open_ticket_of(session=session, contact=contact, queue_id=call.queue_id)
    new_ticket = False
    if ticket is None and inbound and (not answered or settings.answered_call_opens_ticket):
        ticket = open_ticket(
            session=session,
            contact=contact,
            subject=_ticket_subject(call, contact),
            channel=Channel.PHONE,
            now=now,
        )
        ticket.queue_id = call.queue_id
        new_ticket = True
    agent = session.get(Agent, call.agent_id) if call.agent_id else None
    interaction = add_interaction(
        session=session,
        ticket=ticket,
        contact=contact,
        channel=Channel.PHONE,
        direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
        occurred_at=call.started_at or now,
        now=now,
        external_id=call.call_sid,
        subject=_ticket_subject(call, contact),
        text=call_summary(call, agent),
        author_name=(agent.name or agent.email) if agent and not inbound else contact.name,
        agent_id=agent.id if agent and answered else None,
        thread_reason="caller number",
        flag=_match_flag(call),
    )
    session.flush()
    call.interaction_id = interaction.id
    call.ticket_id = ticket.id if ticket else None
    call.contact_id = contact.id
    attach_recording(session=session, call=call)
    if ticket is not None:
        if new_ticket:
            start_clocks_for_new_ticket(session=session, ticket=ticket, now=now)
        elif inbound:
            note_customer_activity(ticket=ticket, now=now)
            on_customer_message(session=session, ticket=ticket, now=now)
        ticket.updated_at = max(ticket.updated_at, now)
        if answered:
            on_agent_response(session=session, ticket=ticket, interaction=interaction, now=now)
    if answered:
        close_callbacks(session=session, contact_id=contact.id, by_call=call, now=now)
    elif inbound and call.outcome in ("missed", "voicemail"):
        _ask_for_callback(session=session, call=call, now=now, settings=settings)


def attach_recording(*, session: Session, call: Call) -> None:
    """Attach the downloaded recording to the call's interaction, once (nothing before both exist)."""
    if call.recording_sha256 is None or call.interaction_id is None:
        return
    interaction = session.get(Interaction, call.interaction_id)
    if interaction is None or any(a.sha256 == call.recording_sha256 for a in interaction.attachments):
        return
    interaction.attachments.append(
        Attachment(
            filename=f"call-{(call.started_at or call.created_at):%Y%m%d-%H%M}-{call.recording_sid or call.id}.mp3",
            content_type="audio/mpeg",
            size=call.recording_size or 0,
            sha256=call.recording_sha256,
        )
    )


def call_summary(call: Call, agent: Agent | None) -> str:
    """The interaction's text: what happened on the call, for the timeline."""
    who = format_number(call.from_number if call.direction == "inbound" else call.to_number)
    lines = []
    if call.direction == "inbound":
        head = f"Call from {who}"
    else:
        head = f"Call to {who}"
    agent_name = (agent.name or agent.email) if agent else None
    if call.outcome == "answered":
        head += f", answered by {agent_name}" if agent_name and call.direction == "inbound" else ", answered"
        head += f"; talked {_duration(call.talk_seconds)}"
    elif call.outcome == "voicemail":
        head += f", voicemail of {_duration(call.recording_duration)}"
    elif call.outcome == "busy":
        head += ", line busy"
    elif call.outcome == "failed":
        head += ", failed"
    else:
        head += ", not answered"
    if call.wait_seconds:
        head += f" (waited {_duration(call.wait_seconds)})"
    lines.append(head + ".")
    if call.transcription_text:
        lines.append(f"Transcription: {call.transcription_text}")
    if call.agent_outcome:
        lines.append(f"Outcome: {call.agent_outcome}")
    if call.note:
        lines.append(f"Note: {call.note}")
    return "\n".join(lines)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "an unknown time"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _refresh_interaction(*, session: Session, call: Call, now: datetime) -> None:
    interaction = session.get(Interaction, call.interaction_id)
    if interaction is None:
        return
    agent = session.get(Agent, call.agent_id) if call.agent_id else None
    interaction.text = call_summary(call, agent)
    if call.outcome == "answered" and agent is not None and interaction.agent_id is None:
        interaction.agent_id = agent.id


def _contact_for_logging(*, session: Session, call: Call) -> Contact | None:
    if call.contact_id is not None:
        return session.get(Contact, call.contact_id)
    if not call.candidate_contact_ids:
        return None
    # A shared number: the candidate with the most recently updated open ticket, else the most recently
    # updated contact. The interaction is flagged so that an agent confirms or moves it.
    candidates = list(session.scalars(select(Contact).where(Contact.id.in_(call.candidate_contact_ids))))
    with_ticket = session.execute(
        select(Ticket.contact_id, func.max(Ticket.updated_at))
        .where(Ticket.contact_id.in_(call.candidate_contact_ids), Ticket.status.in_(OPEN_TICKET_STATES))
        .group_by(Ticket.contact_id)
    ).all()
    latest = {contact_id: updated for contact_id, updated in with_ticket}
    return max(
        candidates, key=lambda c: (latest.get(c.id) is not None, latest.get(c.id) or c.updated_at, c.id)
    )


def _match_flag(call: Call) -> str | None:
    if call.caller_match is CallerMatch.SHARED:
        return f"number shared by {len(call.candidate_contact_ids)} contacts: confirm who called"
    if call.caller_match is CallerMatch.PROVISIONAL:
        return "unknown caller: provisional contact"
    return None


def _open_ticket_of(*, session: Session, contact: Contact, queue_id: int | None) -> Ticket | None:
    same_queue = Ticket.queue_id.is_(None) if queue_id is None else Ticket.queue_id == queue_id
    return session.scalar(
        select(Ticket)
        .where(Ticket.contact_id == contact.id, Ticket.status.in_(OPEN_TICKET_STATES), same_queue)
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(1)
    )


def _ticket_subject(call: Call, contact: Contact) -> str:
    name = contact.name or format_number(call.from_number)
    if call.outcome == "voicemail":
        return f"Voicemail from {name}"
    if call.outcome == "answered":
        return f"Call from {name}" if call.direction == "inbound" else f"Call to {name}"
    return f"Missed call from {name}"


# --- call-backs -------------------------------------------------------------------------------------------------


def _ask_for_callback(*, session: Session, call: Call, now: datetime, settings: Settings) -> None:
    if call.callback_state is not None:
        return
    due = None
    if call.ticket_id is not None:
        due = session.scalar(
            select(func.min(SlaClock.due_at)).where(
                SlaClock.ticket_id == call.ticket_id,
                SlaClock.state == ClockState.RUNNING,
                SlaClock.metric.in_((SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE)),
            )
        )
    call.callback_state = CallbackState.PENDING
    call.callback_due_at = due or now + timedelta(minutes=settings.callback_within_minutes)


def close_callbacks(*, session: Session, contact_id: int, by_call: Call, now: datetime) -> int:
    """An answered call with the contact settles their pending call-backs; returns how many."""
    pending = list(
        session.scalars(
            select(Call).where(
                Call.contact_id == contact_id,
                Call.callback_state == CallbackState.PENDING,
                Call.id != by_call.id,
            )
        )
    )
    for call in pending:
        call.callback_state = CallbackState.DONE
        call.callback_done_at = now
        call.callback_call_id = by_call.id
        call.updated_at = now
    return len(pending)


# --- the screen-pop --------------------------------------------------------------------------------------------


def screen_pop(*, session: Session, call: Call, now: datetime) -> dict[str, object]:
    """What an agent needs before picking up: the caller's contact(s), organisation, open tickets with their
    SLA state, the last interactions, and suggested next steps."""
    ids = call.candidate_contact_ids or ([call.contact_id] if call.contact_id else [])
    contacts = list(
        session.scalars(
            select(Contact).where(Contact.id.in_(ids)).order_by(Contact.id).options(*WITH_CONTACT_DETAILS)
        )
    )
    cards = [contact_card(session=session, contact=contact, now=now) for contact in contacts]
    suggestions: list[dict[str, object]] = []
    if call.caller_match is CallerMatch.SHARED:
        suggestions.append(
            {
                "kind": "confirm_caller",
                "text": f"{len(contacts)} contacts share this number: ask who is calling",
            }
        )
    if call.caller_match is CallerMatch.PROVISIONAL:
        suggestions.append(
            {"kind": "complete_contact", "text": "Unknown caller: ask for their name and e-mail address"}
        )
    for card in cards:
        suggestions.extend(card.pop("_suggestions"))  # type: ignore[arg-type]
    return {
        "call": {
            "call_sid": call.call_sid,
            "direction": call.direction,
            "from_number": call.from_number,
            "from_display": format_number(call.from_number) if call.from_number else call.from_raw,
            "caller_name": call.caller_name,
            "line": call.line_number,
            "queue": call.queue.name if call.queue else None,
            "state": call.state,
            "started_at": call.started_at,
        },
        "match": call.caller_match.value,
        "contacts": cards,
        "suggestions": suggestions,
    }


def contact_card(*, session: Session, contact: Contact, now: datetime) -> dict[str, object]:
    """A customer at a glance: addresses, numbers, organisation, open tickets with SLA time left, the last
    interactions, and (under ``_suggestions``) the next steps an agent should take."""
    tickets = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.contact_id == contact.id, Ticket.status.in_(OPEN_TICKET_STATES))
            .order_by(Ticket.updated_at.desc())
            .options(selectinload(Ticket.queue))
        )
    )
    suggestions: list[dict[str, object]] = []
    ticket_cards = []
    for ticket in tickets:
        clocks = []
        for clock in session.scalars(
            select(SlaClock)
            .where(
                SlaClock.ticket_id == ticket.id, SlaClock.state.in_((ClockState.RUNNING, ClockState.PAUSED))
            )
            .order_by(SlaClock.due_at)
        ):
            remaining = remaining_business_minutes(clock, now)
            clocks.append(
                {
                    "metric": clock.metric.value,
                    "state": clock.state.value,
                    "due_at": clock.due_at,
                    "remaining_business_minutes": remaining,
                    "breached": clock.breached_at is not None,
                }
            )
            if remaining is not None and clock.state is ClockState.RUNNING:
                label = clock.metric.value.replace("_", " ")
                if clock.breached_at is not None or remaining <= 0:
                    text = f"{ticket.number} ({ticket.subject}) is past its {label} target"
                    suggestions.append({"kind": "sla_breached", "ticket": ticket.number, "text": text})
                elif remaining <= SOON_MINUTES:
                    text = f"Open {ticket.number} ({ticket.subject}) breaches its {label} in {round(remaining)} min"
                    suggestions.append({"kind": "sla_due_soon", "ticket": ticket.number, "text": text})
        ticket_cards.append(
            {
                "id": ticket.id,
                "number": ticket.number,
                "subject": ticket.subject,
                "status": ticket.status.value,
                "priority": ticket.priority.value,
                "queue": ticket.queue.name if ticket.queue else None,
                "updated_at": ticket.updated_at,
                "sla": clocks,
            }
        )
    recent = list(
        session.scalars(
            select(Interaction)
            .where(Interaction.contact_id == contact.id)
            .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
            .limit(RECENT_INTERACTIONS)
        )
    )
    for pending in session.scalars(
        select(Call)
        .where(Call.contact_id == contact.id, Call.callback_state == CallbackState.PENDING)
        .order_by(Call.started_at)
    ):
        what = "Voicemail" if pending.outcome == "voicemail" else "Missed call"
        when = _when(pending.started_at, now)
        suggestions.append(
            {"kind": "call_back", "call_sid": pending.call_sid, "text": f"{what} {when} not called back yet"}
        )
    for email in contact.emails:
        if email.undeliverable_at is not None:
            suggestions.append(
                {
                    "kind": "update_email",
                    "text": f"Mail to {email.address} bounced: ask for a current address",
                }
            )
    organization = contact.organization
    return {
        "id": contact.id,
        "name": contact.name,
        "is_provisional": contact.is_provisional,
        "language": contact.language,
        "emails": [email.address for email in contact.emails],
        "phones": [phone.number for phone in contact.phones],
        "organization": (
            {"id": organization.id, "name": organization.name, "kind": organization.kind.value}
            if organization
            else None
        ),
        "open_tickets": ticket_cards,
        "recent_interactions": [
            {
                "id": item.id,
                "channel": item.channel.value,
                "direction": item.direction.value,
                "subject": item.subject,
                "text": item.text[:280],
                "occurred_at": item.occurred_at,
                "ticket_id": item.ticket_id,
            }
            for item in recent
        ],
        "_suggestions": suggestions,
    }


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "earlier"
    days = (now.date() - moment.date()).days
    if days <= 0:
        return f"at {moment:%H:%M} UTC today"
    if days == 1:
        return "from yesterday"
    return f"from {days} days ago"


# --- caller log ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerLog:
    calls: list[Call]
    total: int
    answered: int
    answer_rate: float | None
    average_wait_seconds: float | None
    missed_not_called_back: int


def caller_log(
    *,
    session: Session,
    queue_id: int | None = None,
    agent_id: int | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> CallerLog:
    """Recent calls, newest first, with KPIs over every call that matches the filters."""
    filters = []
    if queue_id is not None:
        filters.append(Call.queue_id == queue_id)
    if agent_id is not None:
        filters.append(Call.agent_id == agent_id)
    if outcome is not None:
        if outcome not in ("answered", *UNANSWERED_OUTCOMES):
            raise InvalidInputError("outcome is one of answered, missed, voicemail, busy, failed")
        filters.append(Call.outcome == outcome)
    if since is not None:
        filters.append(Call.started_at >= since)
    calls = list(
        session.scalars(
            select(Call)
            .where(*filters)
            .order_by(Call.started_at.desc().nulls_last(), Call.id.desc())
            .limit(limit)
            .options(selectinload(Call.contact), selectinload(Call.agent), selectinload(Call.queue))
        )
    )
    inbound_ended = [*filters, Call.direction == "inbound", Call.outcome.is_not(None)]
    total, answered, average_wait = session.execute(
        select(
            func.count(),
            func.count().filter(Call.outcome == "answered"),
            func.avg(Call.wait_seconds),
        ).where(*inbound_ended)
    ).one()
    not_called_back = session.scalar(
        select(func.count()).where(*filters, Call.callback_state == CallbackState.PENDING)
    )
    return CallerLog(
        calls=calls,
        total=total,
        answered=answered,
        answer_rate=(answered / total) if total else None,
        average_wait_seconds=float(average_wait) if average_wait is not None else None,
        missed_not_called_back=not_called_back or 0,
    )

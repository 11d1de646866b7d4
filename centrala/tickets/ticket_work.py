"""What agents do to a ticket besides answering it: tags, type and custom fields, merging two tickets into one,
splitting a message off into a ticket of its own.

Services take a session and ``now``; they flush, never commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.core.settings import Settings
from centrala.core.text import single_line
from centrala.tickets.models import (
    Agent,
    Channel,
    ClockState,
    CustomField,
    CustomFieldKind,
    Direction,
    Interaction,
    OutboundEmail,
    SlaClock,
    Ticket,
    TicketStatus,
    TicketTag,
)
from centrala.tickets.phone_models import Call
from centrala.tickets.sla_clocks import start_clocks_for_new_ticket, transition_clock
from centrala.tickets.status import change_ticket_status
from centrala.tickets.tickets import add_interaction, open_ticket

MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_FIELD_TEXT = 500
_TAG = re.compile(r"^[\w][\w.+-]*$")


# --- tags, type, custom fields -------------------------------------------------------------------------------------


def normalise_tags(raw: Iterable[str]) -> list[str]:
    """Tags as stored: lower-case words, spaces inside a tag become ``-``, no repeats, in the order given.

    Raises:
        InvalidInputError: a tag too long or of other characters than letters, digits, ``.``, ``+``, ``-``, ``_``;
            more than ``MAX_TAGS``.
    """
    tags: list[str] = []
    for item in raw:
        for part in item.split(","):
            tag = "-".join(part.strip().lower().split())
            if not tag:
                continue
            if len(tag) > MAX_TAG_LENGTH:
                raise InvalidInputError(f"the tag {tag[:20]!r}... is longer than {MAX_TAG_LENGTH} characters")
            if not _TAG.match(tag):
                raise InvalidInputError(f"the tag {tag!r} may hold only letters, digits and . + - _")
            if tag not in tags:
                tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidInputError(f"a ticket carries at most {MAX_TAGS} tags")
    return tags


def ticket_tags(ticket: Ticket) -> list[str]:
    return [row.tag for row in ticket.tag_rows]


def set_tags(*, session: Session, ticket: Ticket, tags: Iterable[str]) -> None:
    """Give ``ticket`` exactly these tags (normalised; see ``normalise_tags``)."""
    wanted = normalise_tags(tags)
    ticket.tag_rows = [row for row in ticket.tag_rows if row.tag in wanted] + [
        TicketTag(tag=tag) for tag in wanted if tag not in ticket_tags(ticket)
    ]
    session.flush()


def add_tags(*, session: Session, ticket: Ticket, tags: Iterable[str]) -> None:
    set_tags(session=session, ticket=ticket, tags=[*ticket_tags(ticket), *tags])


def field_definitions(*, session: Session, entity: str) -> list[CustomField]:
    """The custom fields an admin defined for ``entity`` ("ticket" or "contact"), in their order."""
    return list(
        session.scalars(
            select(CustomField)
            .where(CustomField.entity == entity)
            .order_by(CustomField.position, CustomField.id)
        )
    )


def clean_custom_fields(
    *, definitions: Iterable[CustomField], given: Mapping[str, str], current: Mapping[str, object]
) -> dict[str, object]:
    """The custom field values to store: ``current`` with every defined field in ``given`` checked and set (an
    empty value removes it). Keys nobody defined are ignored; values of fields no longer defined are kept.

    Raises:
        InvalidInputError: a value that does not fit its field, naming the field.
    """
    values = dict(current)
    for field in definitions:
        if field.key not in given:
            continue
        raw = given[field.key].strip()
        if not raw:
            values.pop(field.key, None)
            continue
        values[field.key] = _field_value(field, raw)
    return values


def _field_value(field: CustomField, raw: str) -> object:
    if field.kind is CustomFieldKind.NUMBER:
        try:
            number = float(raw.replace(",", "."))
        except ValueError:
            raise InvalidInputError(f"{field.label}: {raw!r} is not a number") from None
        return int(number) if number.is_integer() else number
    if field.kind is CustomFieldKind.DATE:
        try:
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            raise InvalidInputError(f"{field.label}: write the date as YYYY-MM-DD, e.g. 2026-11-23") from None
    if field.kind is CustomFieldKind.CHOICE:
        if raw not in field.choices:
            raise InvalidInputError(f"{field.label}: choose one of {', '.join(field.choices)}")
        return raw
    if len(raw) > MAX_FIELD_TEXT:
        raise InvalidInputError(f"{field.label}: at most {MAX_FIELD_TEXT} characters")
    return raw


_KEY = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


def define_custom_field(
    *, session: Session, entity: str, key: str, label: str, kind: str, choices: Iterable[str] = ()
) -> CustomField:
    """Add a custom field to tickets or contacts.

    Raises:
        InvalidInputError: an unknown entity or kind, a malformed key, a blank label, a choice field without choices.
        ConflictError: the entity has a field with this key.
    """
    if entity not in ("ticket", "contact"):
        raise InvalidInputError("custom fields belong to tickets or contacts")
    key = key.strip().lower()
    if not _KEY.match(key):
        raise InvalidInputError(
            "a field's key is a lower-case word: letters, digits and _, starting with a letter"
        )
    label = " ".join(label.split())
    if not label or len(label) > 100:
        raise InvalidInputError("a field needs a label of at most 100 characters")
    try:
        field_kind = CustomFieldKind(kind)
    except ValueError:
        raise InvalidInputError(f"a field is one of: {', '.join(k.value for k in CustomFieldKind)}") from None
    options = [item.strip() for item in choices if item.strip()]
    if field_kind is CustomFieldKind.CHOICE and not options:
        raise InvalidInputError("a choice field needs its choices, one per line")
    if session.scalar(select(CustomField.id).where(CustomField.entity == entity, CustomField.key == key)):
        raise ConflictError(f"{entity}s already have a field {key!r}")
    position = len(field_definitions(session=session, entity=entity))
    field = CustomField(
        entity=entity, key=key, label=label, kind=field_kind, choices=options, position=position
    )
    session.add(field)
    session.flush()
    return field


# --- merge and split -----------------------------------------------------------------------------------------------


def merge_tickets(
    *, session: Session, keep: Ticket, drop: Ticket, agent: Agent, now: datetime, settings: Settings
) -> int:
    """Merge ``drop`` into ``keep``: its timeline, outbound mail, calls and tags move to ``keep``; ``drop`` is
    closed and marked merged (replies to it keep arriving on ``keep``), its SLA clocks are cancelled; a note on
    each says what happened. Returns how many timeline entries moved.

    Raises:
        InvalidInputError: the same ticket twice.
        ConflictError: either ticket was merged already.
    """
    if keep.id == drop.id:
        raise InvalidInputError("a ticket cannot be merged into itself")
    if keep.merged_into_id is not None or drop.merged_into_id is not None:
        raise ConflictError("one of these tickets was already merged into another")
    moved = session.execute(
        update(Interaction).where(Interaction.ticket_id == drop.id).values(ticket_id=keep.id)
    ).rowcount
    session.execute(update(OutboundEmail).where(OutboundEmail.ticket_id == drop.id).values(ticket_id=keep.id))
    session.execute(update(Call).where(Call.ticket_id == drop.id).values(ticket_id=keep.id))
    session.expire(keep, ["interactions"])
    session.expire(drop, ["interactions"])
    add_tags(session=session, ticket=keep, tags=ticket_tags(drop))
    for clock in session.scalars(
        select(SlaClock).where(
            SlaClock.ticket_id == drop.id, SlaClock.state.in_((ClockState.RUNNING, ClockState.PAUSED))
        )
    ):
        transition_clock(
            session=session, clock=clock, to=ClockState.CANCELLED, now=now, cause="ticket merged"
        )
    drop_needed_work = drop.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED)
    drop.merged_into_id = keep.id
    change_ticket_status(session=session, ticket=drop, status=TicketStatus.CLOSED, now=now, settings=settings)
    who = agent.name or agent.email
    _note(
        session, drop, agent, now, f"{who} merged this ticket into {keep.number}; its history is there now."
    )
    _note(
        session,
        keep,
        agent,
        now,
        f"{who} merged {drop.number} ({drop.subject}) into this ticket: {moved} entries moved here.",
    )
    if keep.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED) and drop_needed_work:
        change_ticket_status(
            session=session, ticket=keep, status=TicketStatus.OPEN, now=now, settings=settings
        )
    keep.updated_at = max(keep.updated_at, now)
    session.flush()
    return moved


def split_interaction(
    *, session: Session, interaction: Interaction, agent: Agent, now: datetime, subject: str = ""
) -> Ticket:
    """Move one timeline entry into a new ticket of the same contact, queue and priority: a customer who raised
    a second matter in a reply gets it handled (and measured) on its own. Returns the new ticket.

    Raises:
        InvalidInputError: the entry is on no ticket, or is not the customer's (a note, our reply).
        ConflictError: it is the only entry of its ticket (nothing would be left to split from).
    """
    source = interaction.ticket
    if source is None:
        raise InvalidInputError("this entry is on no ticket")
    if interaction.direction is not Direction.INBOUND:
        raise InvalidInputError("only a customer's message can become a ticket of its own")
    others = session.scalar(
        select(Interaction.id)
        .where(
            Interaction.ticket_id == source.id,
            Interaction.id != interaction.id,
            Interaction.channel != Channel.NOTE,
        )
        .limit(1)
    )
    if others is None:
        raise ConflictError("this is the ticket's only message: there is nothing to split it from")
    title = single_line(subject) or interaction.subject or f"Split from {source.number}"
    ticket = open_ticket(
        session=session,
        contact=interaction.contact,
        subject=title,
        channel=interaction.channel,
        now=now,
        mailbox=source.mailbox,
    )
    ticket.queue_id, ticket.priority, ticket.case_type = source.queue_id, source.priority, source.case_type
    ticket.assignee_id = agent.id
    interaction.ticket = ticket
    session.flush()
    # The customer has been waiting since they wrote it, not since an agent noticed the second matter.
    waiting_since = interaction.occurred_at if interaction.direction is Direction.INBOUND else now
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=min(waiting_since, now))
    who = agent.name or agent.email
    _note(session, source, agent, now, f"{who} split a message into {ticket.number} ({ticket.subject}).")
    _note(session, ticket, agent, now, f"{who} split this ticket off {source.number}.")
    source.updated_at = max(source.updated_at, now)
    session.flush()
    return ticket


def _note(session: Session, ticket: Ticket, agent: Agent, now: datetime, text: str) -> None:
    add_interaction(
        session=session,
        ticket=ticket,
        contact=ticket.contact,
        channel=Channel.NOTE,
        direction=Direction.INTERNAL,
        occurred_at=now,
        now=now,
        text=text,
        author_name=agent.name or agent.email,
        agent_id=agent.id,
    )

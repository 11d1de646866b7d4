"""Canned replies with variables, and macros: a canned reply that also sets the ticket's status or priority and
adds tags when the agent sends it.

A template is written for a customer, so it sees only what a customer could read on their own case, through a
sandboxed Jinja2 environment: ``{{ contact.first_name }}``, ``{{ ticket.number }}``, ``{{ agent.name }}`` and
the rest of ``VARIABLES``. An unknown variable is an error when the template is saved, never a blank in a mail.
"""

from __future__ import annotations

from datetime import datetime

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.core.settings import Settings
from centrala.tickets.models import Agent, ReplyTemplate, Ticket, TicketPriority, TicketStatus
from centrala.tickets.status import change_ticket_status
from centrala.tickets.ticket_work import add_tags, normalise_tags

MAX_BODY = 20_000

# What a template may say, shown to whoever writes one.
VARIABLES = {
    "contact.name": "the customer's full name",
    "contact.first_name": "the customer's first name",
    "contact.email": "the address the reply goes to",
    "organization.name": "the customer's organisation (empty when none)",
    "ticket.number": "e.g. T-1042",
    "ticket.subject": "the ticket's subject",
    "ticket.status": "e.g. open",
    "ticket.priority": "e.g. high",
    "agent.name": "your name",
    "agent.first_name": "your first name",
    "agent.email": "your address",
}

_environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _first_name(name: str) -> str:
    return name.split()[0] if name.split() else ""


def template_context(*, ticket: Ticket | None, agent: Agent | None) -> dict[str, dict[str, str]]:
    """The values of ``VARIABLES`` for one ticket and agent (sample values when either is None)."""
    contact = ticket.contact if ticket is not None else None
    contact_name = contact.name if contact is not None else "Jana Nováková"
    agent_name = (agent.name or agent.email) if agent is not None else "Petr Dvořák"
    return {
        "contact": {
            "name": contact_name,
            "first_name": _first_name(contact_name),
            "email": contact.emails[0].address if contact is not None and contact.emails else "jana@example.cz",
        },
        "organization": {
            "name": contact.organization.name if contact is not None and contact.organization else "",
        },
        "ticket": {
            "number": ticket.number if ticket is not None else "T-1042",
            "subject": ticket.subject if ticket is not None else "Invoice 2026-118",
            "status": ticket.status.value if ticket is not None else "open",
            "priority": ticket.priority.value if ticket is not None else "normal",
        },
        "agent": {
            "name": agent_name,
            "first_name": _first_name(agent_name),
            "email": agent.email if agent is not None else "petr@example.com",
        },
    }


def render_template(body: str, *, ticket: Ticket | None, agent: Agent | None) -> str:
    """The template's text with its variables filled in.

    Raises:
        InvalidInputError: a syntax error or a variable that is not one of ``VARIABLES``.
    """
    try:
        return _environment.from_string(body).render(template_context(ticket=ticket, agent=agent))
    except TemplateError as error:
        known = ", ".join("{{ " + name + " }}" for name in VARIABLES)
        raise InvalidInputError(f"the template cannot be filled in ({error.message}); it may use {known}") from None


def save_template(
    *,
    session: Session,
    template: ReplyTemplate | None,
    name: str,
    body: str,
    set_status: str,
    set_priority: str,
    add_tags: str,
    now: datetime,
) -> ReplyTemplate:
    """Create (``template`` None) or change a template, checked by filling it in with sample values.

    Raises:
        InvalidInputError: a blank name or body, a body that cannot be filled in, an unknown status or priority,
            a malformed tag.
        ConflictError: another template has this name.
    """
    name = " ".join(name.split())
    if not name or len(name) > 100:
        raise InvalidInputError("a template needs a name of at most 100 characters")
    if not body.strip():
        raise InvalidInputError("a template needs some text")
    if len(body) > MAX_BODY:
        raise InvalidInputError(f"a template is at most {MAX_BODY:,} characters")
    render_template(body, ticket=None, agent=None)
    try:
        status = TicketStatus(set_status) if set_status else None
        priority = TicketPriority(set_priority) if set_priority else None
    except ValueError:
        raise InvalidInputError("choose a status and priority from the lists") from None
    tags = normalise_tags([add_tags])
    clash = session.scalar(select(ReplyTemplate.id).where(ReplyTemplate.name == name))
    if clash is not None and (template is None or clash != template.id):
        raise ConflictError(f"a template named {name!r} exists")
    if template is None:
        template = ReplyTemplate(name=name)
        session.add(template)
    template.name, template.body, template.set_status, template.set_priority = name, body, status, priority
    template.add_tags, template.updated_at = tags, now
    session.flush()
    return template


def apply_macro(
    *, session: Session, template: ReplyTemplate, ticket: Ticket, now: datetime, settings: Settings
) -> list[str]:
    """Do what the template says besides its text: set the priority and status, add tags. Returns what changed,
    for the agent's confirmation."""
    changes = []
    if template.set_priority is not None and template.set_priority is not ticket.priority:
        from centrala.tickets.sla_clocks import recompute_ticket_clocks

        ticket.priority = template.set_priority
        session.flush()
        recompute_ticket_clocks(session=session, ticket=ticket)
        changes.append(f"priority {template.set_priority.value}")
    if template.add_tags:
        add_tags(session=session, ticket=ticket, tags=template.add_tags)
        changes.append("tags " + ", ".join(template.add_tags))
    if template.set_status is not None and change_ticket_status(
        session=session, ticket=ticket, status=template.set_status, now=now, settings=settings
    ):
        changes.append(f"status {template.set_status.value.replace('_', ' ')}")
    return changes

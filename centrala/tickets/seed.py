"""Demo data for a new installation, so that ``make run`` shows something on first start."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.tickets.agent_sessions import set_password
from centrala.tickets.agents import create_agent
from centrala.tickets.contacts import create_contact
from centrala.tickets.models import (
    Agent,
    AgentRole,
    BusinessCalendarRow,
    Contact,
    Organization,
    OrganizationDomain,
    Queue,
    SlaPolicy,
)

DEMO_ADMIN_EMAIL = "admin@localhost"

_DEMO_CONTACTS = [
    ("Jana Nováková", ["jana.novakova@example.cz"], ["+420 601 123 456"], "cs"),
    ("Piotr Wiśniewski", ["piotr.wisniewski@example.pl"], ["+48 512 345 678"], "pl"),
    ("Оксана Коваленко", ["oksana.kovalenko@example.com.ua"], ["+380 67 123 4567"], "uk"),
    ("Emily Clarke", ["emily.clarke@acme.example"], ["+44 20 7946 0958"], "en"),
]


# Business minutes: answer within a working morning, again within a working day, resolve within a working week.
DEMO_SLA_TARGETS = {"default": {"first_response": 240, "next_response": 480, "resolution": 2400}}


def demo_sla_policy(*, region: str, timezone: str, now: datetime) -> SlaPolicy:
    """The default SLA policy of a new installation, over office hours (weekdays 08:00-17:00, the region's
    public holidays off). Admins change or replace it through the SLA API."""
    import holidays

    calendar = BusinessCalendarRow(
        name="Office hours",
        timezone=timezone,
        weekly_hours={str(day): [["08:00", "17:00"]] for day in range(5)},
        holidays_country=region if region in holidays.list_supported_countries() else None,
        extra_holidays=[],
        updated_at=now,
    )
    return SlaPolicy(
        name="Standard",
        is_default=True,
        calendar=calendar,
        targets=DEMO_SLA_TARGETS,
        warn_before_minutes=30,
        updated_at=now,
    )


def seed_demo_data(
    *, session: Session, now: datetime, region: str, timezone: str = "UTC", only_if_empty: bool = True
) -> tuple[str, str, str] | None:
    """Create a queue, an organisation, demo contacts, a default SLA policy and an admin agent; returns the
    admin's e-mail, API token and console password (random, shown once).

    With ``only_if_empty`` nothing happens (None) when the database already has agents or contacts.
    """
    if only_if_empty and (
        session.scalar(select(Agent.id).limit(1)) is not None
        or session.scalar(select(Contact.id).limit(1)) is not None
    ):
        return None
    session.add(Queue(name="Support", email_address="support@localhost"))
    session.add(demo_sla_policy(region=region, timezone=timezone, now=now))
    session.add(
        Organization(name="ACME Ltd", created_at=now, domains=[OrganizationDomain(domain="acme.example")])
    )
    session.flush()
    for name, emails, phones, language in _DEMO_CONTACTS:
        create_contact(
            session=session, name=name, emails=emails, phones=phones, language=language, now=now, region=region
        )
    agent, token = create_agent(
        session=session, email=DEMO_ADMIN_EMAIL, name="Demo Admin", role=AgentRole.ADMIN, now=now
    )
    password = secrets.token_urlsafe(12)
    set_password(agent=agent, password=password)
    return DEMO_ADMIN_EMAIL, token, password

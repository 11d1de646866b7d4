"""What agents do to tickets besides answering: tags, custom fields, templates and macros, merging and splitting,
teams, named API tokens and duplicate-contact suggestions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from centrala.core.errors import AuthenticationError, ConflictError, InvalidInputError
from centrala.core.settings import get_settings
from centrala.tickets.agents import (
    authenticate_token,
    create_api_token,
    may_work_ticket,
    queue_ids_of,
    revoke_api_token,
    team_queue_ids_of,
)
from centrala.tickets.merge import duplicate_suggestions, names_look_alike
from centrala.tickets.models import (
    AgentRole,
    Channel,
    ClockState,
    Direction,
    Interaction,
    SlaClock,
    SlaMetric,
    Team,
    TeamMember,
    TeamQueue,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.reply_templates import apply_macro, render_template, save_template
from centrala.tickets.sla_clocks import start_clocks_for_new_ticket
from centrala.tickets.ticket_work import (
    clean_custom_fields,
    define_custom_field,
    merge_tickets,
    normalise_tags,
    set_tags,
    split_interaction,
    ticket_tags,
)
from centrala.tickets.tickets import find_email_thread
from tests.factories import NOW, make_agent, make_contact, make_queue, make_ticket


def _entry(session, ticket, *, text, at, direction=Direction.INBOUND, external_id=None):
    item = Interaction(
        ticket=ticket,
        contact=ticket.contact,
        channel=Channel.EMAIL,
        direction=direction,
        text=text,
        subject=ticket.subject,
        external_id=external_id,
        occurred_at=at,
        created_at=at,
    )
    session.add(item)
    session.flush()
    return item


# --- tags and custom fields -----------------------------------------------------------------------------------


def test_tags_are_lower_case_words_without_repeats():
    assert normalise_tags(["Invoice, VIP callback", "invoice", " "]) == ["invoice", "vip-callback"]
    with pytest.raises(InvalidInputError, match="only letters"):
        normalise_tags(["<script>"])
    with pytest.raises(InvalidInputError, match="at most 20"):
        normalise_tags([",".join(f"t{n}" for n in range(21))])


def test_setting_tags_keeps_exactly_those_given(session):
    ticket = make_ticket(session)
    set_tags(session=session, ticket=ticket, tags=["invoice", "vip"])
    set_tags(session=session, ticket=ticket, tags=["vip", "refund"])
    session.expire_all()
    assert ticket_tags(ticket) == ["refund", "vip"]


def test_custom_fields_are_checked_against_their_definition(session):
    number = define_custom_field(
        session=session, entity="ticket", key="order_number", label="Order", kind="number"
    )
    when = define_custom_field(
        session=session, entity="ticket", key="delivered", label="Delivered", kind="date"
    )
    choice = define_custom_field(
        session=session,
        entity="ticket",
        key="carrier",
        label="Carrier",
        kind="choice",
        choices=["PPL", "DPD"],
    )
    fields = [number, when, choice]
    values = clean_custom_fields(
        definitions=fields,
        current={"old": "kept"},
        given={"order_number": "118", "delivered": "2026-11-20", "carrier": "DPD", "unknown": "ignored"},
    )
    assert values == {"old": "kept", "order_number": 118, "delivered": "2026-11-20", "carrier": "DPD"}
    assert "order_number" not in clean_custom_fields(
        definitions=fields, current=values, given={"order_number": ""}
    )
    with pytest.raises(InvalidInputError, match="Order: 'abc' is not a number"):
        clean_custom_fields(definitions=fields, current={}, given={"order_number": "abc"})
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        clean_custom_fields(definitions=fields, current={}, given={"delivered": "20.11.2026"})
    with pytest.raises(InvalidInputError, match="choose one of PPL, DPD"):
        clean_custom_fields(definitions=fields, current={}, given={"carrier": "UPS"})
    with pytest.raises(ConflictError):
        define_custom_field(session=session, entity="ticket", key="carrier", label="Again", kind="text")
    with pytest.raises(InvalidInputError, match="needs its choices"):
        define_custom_field(session=session, entity="contact", key="tier", label="Tier", kind="choice")


# --- templates and macros -----------------------------------------------------------------------------------------


def test_a_template_fills_in_the_customer_ticket_and_agent(session):
    agent, _ = make_agent(session, name="Petr Dvořák")
    ticket = make_ticket(
        session, contact=make_contact(session, name="Jana Nováková", emails=["jana@example.cz"])
    )
    text = render_template(
        "Dobrý den, {{ contact.first_name }},\nk {{ ticket.number }}: ...\n{{ agent.name }}",
        ticket=ticket,
        agent=agent,
    )
    assert text == f"Dobrý den, Jana,\nk {ticket.number}: ...\nPetr Dvořák"


def test_a_template_with_an_unknown_variable_or_code_is_refused_when_saved(session):
    common = {
        "session": session,
        "template": None,
        "set_status": "",
        "set_priority": "",
        "add_tags": "",
        "now": NOW,
    }
    with pytest.raises(InvalidInputError, match="contact.first_name"):
        save_template(name="Typo", body="Hi {{ contact.firstname }}", **common)
    with pytest.raises(InvalidInputError):
        save_template(name="Escape", body="{{ ''.__class__.__mro__[1].__subclasses__() }}", **common)


def test_a_macro_sets_status_priority_and_tags(session):
    settings = get_settings()
    ticket = make_ticket(session, status=TicketStatus.OPEN)
    macro = save_template(
        session=session,
        template=None,
        name="Refund done",
        body="Refunded.",
        set_status="resolved",
        set_priority="low",
        add_tags="refund",
        now=NOW,
    )
    changes = apply_macro(session=session, template=macro, ticket=ticket, now=NOW, settings=settings)
    assert changes == ["priority low", "tags refund", "status resolved"]
    assert (ticket.status, ticket.priority, ticket_tags(ticket)) == (
        TicketStatus.RESOLVED,
        TicketPriority.LOW,
        ["refund"],
    )
    with pytest.raises(ConflictError):
        save_template(
            session=session,
            template=None,
            name="Refund done",
            body="x",
            set_status="",
            set_priority="",
            add_tags="",
            now=NOW,
        )


# --- merge and split ----------------------------------------------------------------------------------------


def test_merging_moves_the_history_closes_the_other_and_threads_its_replies_here(session):
    settings = get_settings()
    agent, _ = make_agent(session)
    contact = make_contact(session, name="Jana", emails=["jana@example.cz"])
    keep = make_ticket(session, contact=contact, subject="Faktura", status=TicketStatus.OPEN)
    drop = make_ticket(session, contact=contact, subject="Faktura znovu", status=TicketStatus.OPEN)
    _entry(session, keep, text="first", at=NOW)
    _entry(session, drop, text="second", at=NOW + timedelta(minutes=5), external_id="second@example.cz")
    set_tags(session=session, ticket=drop, tags=["invoice"])
    session.add(
        SlaClock(
            ticket_id=drop.id,
            metric=SlaMetric.FIRST_RESPONSE,
            target_minutes=60,
            started_at=NOW,
            running_since=NOW,
            due_at=NOW + timedelta(hours=1),
        )
    )
    session.flush()

    moved = merge_tickets(
        session=session, keep=keep, drop=drop, agent=agent, now=NOW + timedelta(hours=1), settings=settings
    )

    session.expire_all()
    assert moved == 1
    assert [item.text for item in keep.interactions if item.channel is Channel.EMAIL] == ["first", "second"]
    assert (drop.status, drop.merged_into_id) == (TicketStatus.CLOSED, keep.id)
    assert ticket_tags(keep) == ["invoice"]
    [clock] = session.scalars(select(SlaClock).where(SlaClock.ticket_id == drop.id)).all()
    assert clock.state is ClockState.CANCELLED
    assert any("merged" in item.text for item in drop.interactions if item.channel is Channel.NOTE)
    # A reply carrying the merged ticket's number in its subject lands on the ticket it lives on in.
    match = find_email_thread(
        session=session,
        referenced_ids=[],
        subject=f"Re: [#{drop.number}] Faktura znovu",
        sender=contact,
        sender_address="jana@example.cz",
    )
    assert match.ticket.id == keep.id
    with pytest.raises(ConflictError):
        merge_tickets(session=session, keep=keep, drop=drop, agent=agent, now=NOW, settings=settings)
    with pytest.raises(InvalidInputError):
        merge_tickets(session=session, keep=keep, drop=keep, agent=agent, now=NOW, settings=settings)


def test_splitting_a_message_opens_a_ticket_measured_from_when_the_customer_wrote(session):
    from tests.tickets.test_sla_clocks import make_policy

    make_policy(session)
    agent, _ = make_agent(session)
    queue = make_queue(session, name="Hotline")
    ticket = make_ticket(session, subject="Faktura", queue=queue, priority=TicketPriority.HIGH)
    _entry(session, ticket, text="Faktura nesedí", at=NOW)
    second = _entry(session, ticket, text="A ještě: heslo nefunguje", at=NOW + timedelta(minutes=10))

    created = split_interaction(
        session=session,
        interaction=second,
        agent=agent,
        now=NOW + timedelta(hours=2),
        subject="Heslo nefunguje",
    )

    session.expire_all()
    assert created.id != ticket.id
    assert (created.subject, created.queue_id, created.priority, created.assignee_id) == (
        "Heslo nefunguje",
        queue.id,
        TicketPriority.HIGH,
        agent.id,
    )
    assert [item.text for item in created.interactions if item.channel is Channel.EMAIL] == [
        "A ještě: heslo nefunguje"
    ]
    assert [item.text for item in ticket.interactions if item.channel is Channel.EMAIL] == ["Faktura nesedí"]
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == created.id)).all()
    assert clocks and {clock.started_at for clock in clocks} == {NOW + timedelta(minutes=10)}
    only = ticket.interactions[0]
    with pytest.raises(ConflictError, match="only message"):
        split_interaction(
            session=session,
            interaction=next(i for i in created.interactions if i.channel is Channel.EMAIL),
            agent=agent,
            now=NOW,
        )
    assert only.ticket_id == ticket.id


# --- teams -----------------------------------------------------------------------------------------------------


def test_an_agent_works_the_queues_of_their_teams_and_a_supervisor_reports_on_theirs(session):
    agent, _ = make_agent(session)
    lead, _ = make_agent(session, role=AgentRole.SUPERVISOR)
    billing, hotline, other = (make_queue(session, name=name) for name in ("Billing", "Hotline", "Other"))
    team = Team(name="Finance", created_at=NOW)
    session.add(team)
    session.flush()
    session.add_all(
        [
            TeamMember(team_id=team.id, agent_id=agent.id),
            TeamMember(team_id=team.id, agent_id=lead.id),
            TeamQueue(team_id=team.id, queue_id=billing.id),
            TeamQueue(team_id=team.id, queue_id=hotline.id),
        ]
    )
    session.flush()
    assert queue_ids_of(session=session, agent=agent) == sorted([billing.id, hotline.id])
    assert may_work_ticket(session=session, agent=agent, ticket=make_ticket(session, queue=billing))
    assert not may_work_ticket(session=session, agent=agent, ticket=make_ticket(session, queue=other))
    assert queue_ids_of(session=session, agent=lead) is None  # supervisors work every ticket
    assert team_queue_ids_of(session=session, agent=lead) == sorted([billing.id, hotline.id])


# --- API tokens ---------------------------------------------------------------------------------------------


def test_a_named_token_works_until_revoked_and_records_its_use(session):
    agent, first_token = make_agent(session)
    row, secret = create_api_token(session=session, agent=agent, name="CRM sync", now=NOW)
    assert row.token_hash != secret and secret not in str(row.__dict__)
    assert authenticate_token(session=session, token=secret, now=NOW + timedelta(minutes=5)).id == agent.id
    assert row.last_used_at == NOW + timedelta(minutes=5)
    assert authenticate_token(session=session, token=first_token).id == agent.id
    revoke_api_token(session=session, token=row, now=NOW + timedelta(hours=1))
    with pytest.raises(AuthenticationError):
        authenticate_token(session=session, token=secret)
    with pytest.raises(InvalidInputError):
        create_api_token(session=session, agent=agent, name="   ", now=NOW)


# --- duplicate contacts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "alike"),
    [
        ("Jana Nováková", "Nováková Jana", True),
        ("Jana Nováková", "jana novakova", True),
        ("Jana Nováková", "Jana Novákova", True),
        ("Jana Nováková", "Jana Novotná", False),
        ("Petr", "Pavel", False),
    ],
)
def test_names_that_look_alike(first, second, alike):
    assert names_look_alike(first, second) is alike


def test_duplicates_by_similar_name_and_by_the_same_mailbox_at_another_domain(session):
    jana = make_contact(session, name="Jana Nováková", emails=["jana.novakova@gmail.example"])
    reversed_name = make_contact(session, name="Nováková Jana", emails=["jn@firma.example"])
    work_address = make_contact(session, name="J. N.", emails=["jana.novakova@firma.example"])
    make_contact(session, name="Jana Dvořáková", emails=["jana@other.example"])
    found = duplicate_suggestions(session=session, contact=jana)
    assert {contact.id for contact in found} == {reversed_name.id, work_address.id}


def test_a_split_ticket_starts_clocks_only_under_a_policy(session):
    """Without an SLA policy nothing is measured, and splitting still works."""
    agent, _ = make_agent(session)
    ticket = make_ticket(session)
    _entry(session, ticket, text="one", at=NOW)
    second = _entry(session, ticket, text="two", at=NOW)
    created = split_interaction(session=session, interaction=second, agent=agent, now=NOW)
    assert start_clocks_for_new_ticket(session=session, ticket=created, now=NOW) == []

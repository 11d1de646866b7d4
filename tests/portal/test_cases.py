"""The customer's cases in the portal: scope (IDOR), thread, replies as inbound messages, close/reopen,
ratings, and languages."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.settings import get_settings
from centrala.tickets.csat import request_survey
from centrala.tickets.models import (
    Channel,
    ClockState,
    CsatSurvey,
    Direction,
    Interaction,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    TicketStatus,
)
from centrala.tickets.sla_clocks import start_clocks_for_new_ticket, transition_clock
from centrala.tickets.status import change_ticket_status
from tests.factories import make_agent, make_contact, make_interaction, make_organization, make_ticket
from tests.portal.conftest import csrf_of, sign_in


def _customer_with_case(session, name: str, organization=None, is_manager: bool = False, language: str = "en"):
    contact = make_contact(session, name=name, organization=organization, language=language)
    contact.is_org_manager = is_manager
    ticket = make_ticket(session, contact=contact, subject=f"{name}'s secret case")
    message = make_interaction(
        session, ticket=ticket, text=f"{name} private text", attachments=[(f"{name}-file.pdf", "application/pdf", 10)]
    )
    return contact, ticket, message


def test_customer_a_finds_nothing_of_customer_b_on_any_route(portal_client, session):
    a, a_ticket, _ = _customer_with_case(session, "Alice")
    b, b_ticket, b_message = _customer_with_case(session, "Bob")
    b_attachment = b_message.attachments[0]
    resolved = change_ticket_status(
        session=session, ticket=b_ticket, status=TicketStatus.RESOLVED, now=clock.now(), settings=get_settings()
    )
    assert resolved
    session.commit()
    sign_in(portal_client, session, a, clock.now())
    token = csrf_of(portal_client.get("/portal/tickets").text)
    gets = [
        "/portal/tickets", f"/portal/tickets/{b_ticket.number}", f"/portal/tickets/{b_ticket.number}/rating",
        f"/portal/attachments/{b_attachment.id}", f"/portal/tickets/{b_ticket.id}", "/portal/tickets/new",
    ]
    for path in gets:
        response = portal_client.get(path)
        assert "Bob" not in response.text and b_ticket.number not in response.text, path
        if path != "/portal/tickets" and path != "/portal/tickets/new":
            assert response.status_code == 404, path
    posts = {
        f"/portal/tickets/{b_ticket.number}/replies": {"message": "hi"},
        f"/portal/tickets/{b_ticket.number}/close": {},
        f"/portal/tickets/{b_ticket.number}/reopen": {},
        f"/portal/tickets/{b_ticket.number}/rating": {"rating": "1"},
    }
    for path, data in posts.items():
        response = portal_client.post(path, data={"csrf": token, **data})
        assert response.status_code == 404 and "Bob" not in response.text, path
    # A miss answers exactly like someone else's case.
    missing = portal_client.get("/portal/tickets/T-99999999")
    foreign = portal_client.get(f"/portal/tickets/{b_ticket.number}")
    assert missing.status_code == foreign.status_code == 404 and missing.text == foreign.text
    session.expire_all()
    assert b_ticket.status is TicketStatus.RESOLVED
    assert session.scalar(select(CsatSurvey.rating).where(CsatSurvey.ticket_id == b_ticket.id)) is None
    assert [i.text for i in b_ticket.interactions] == ["Bob private text"]


def test_organisation_manager_sees_colleagues_cases_but_a_colleague_does_not(portal_client, session):
    organization = make_organization(session, name="Acme")
    manager, _, _ = _customer_with_case(session, "Manager", organization, is_manager=True)
    colleague, colleague_ticket, _ = _customer_with_case(session, "Colleague", organization)
    _, stranger_ticket, _ = _customer_with_case(session, "Stranger")
    session.commit()
    sign_in(portal_client, session, manager, clock.now())
    listing = portal_client.get("/portal/tickets").text
    assert colleague_ticket.number in listing and stranger_ticket.number not in listing
    assert portal_client.get(f"/portal/tickets/{colleague_ticket.number}").status_code == 200
    portal_client.cookies.clear()
    sign_in(portal_client, session, colleague, clock.now())
    assert "Manager" not in portal_client.get("/portal/tickets").text


def test_thread_hides_notes_and_shows_attachments_as_downloads(portal_client, session):
    contact, ticket, message = _customer_with_case(session, "Alice")
    agent, _ = make_agent(session)
    make_interaction(session, ticket=ticket, channel=Channel.NOTE, direction=Direction.INTERNAL,
                     text="internal: customer is difficult", agent=agent)
    session.commit()
    sign_in(portal_client, session, contact, clock.now())
    BlobStore(get_settings().blob_dir).put(b"Alice-file.pdf")
    page = portal_client.get(f"/portal/tickets/{ticket.number}").text
    assert "Alice private text" in page and "internal:" not in page
    attachment = message.attachments[0]
    assert f"/portal/attachments/{attachment.id}" in page


def test_portal_reply_is_an_inbound_interaction_and_restarts_the_response_clock(portal_client, session):
    session.add(SlaPolicy(name="Default portal test", is_default=True, targets={"default": {
        "first_response": 60, "next_response": 120, "resolution": 600}}, updated_at=clock.now()))
    contact = make_contact(session, language="en")
    ticket = make_ticket(session, contact=contact, status=TicketStatus.OPEN, created_at=clock.now())
    # An agent answered: the first response is met and the ticket waits on the customer.
    for started in start_clocks_for_new_ticket(session=session, ticket=ticket, now=clock.now()):
        if started.metric is SlaMetric.FIRST_RESPONSE:
            transition_clock(session=session, clock=started, to=ClockState.MET, now=clock.now())
    change_ticket_status(session=session, ticket=ticket, status=TicketStatus.PENDING, now=clock.now(),
                         settings=get_settings())
    session.commit()
    sign_in(portal_client, session, contact, clock.now())
    assert "We will answer by" not in portal_client.get("/portal/tickets").text
    page = portal_client.get(f"/portal/tickets/{ticket.number}").text
    submission = re.search(r'name="submission" value="([^"]+)"', page).group(1)
    form = {"csrf": csrf_of(page), "message": "Here is the photo.", "submission": submission}
    files = [("files", ("photo.png", b"\x89PNG fake", "image/png"))]
    first = portal_client.post(f"/portal/tickets/{ticket.number}/replies", data=form, files=files)
    again = portal_client.post(f"/portal/tickets/{ticket.number}/replies", data=form, files=files)
    assert first.status_code == again.status_code == 200
    session.expire_all()
    replies = session.scalars(select(Interaction).where(Interaction.ticket_id == ticket.id)).all()
    assert len(replies) == 1, "a form sent twice records one message"
    reply = replies[0]
    assert (reply.channel, reply.direction, reply.contact_id) == (Channel.PORTAL, Direction.INBOUND, contact.id)
    assert [a.filename for a in reply.attachments] == ["photo.png"]
    assert ticket.status is TicketStatus.OPEN
    running = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket.id,
                                                     SlaClock.state == ClockState.RUNNING)).all()
    assert SlaMetric.NEXT_RESPONSE in {clock_.metric for clock_ in running}
    assert "We will answer by" in portal_client.get("/portal/tickets").text


def test_new_case_close_and_reopen(portal_client, session):
    contact = make_contact(session, language="en")
    session.commit()
    sign_in(portal_client, session, contact, clock.now())
    page = portal_client.get("/portal/tickets/new").text
    response = portal_client.post("/portal/tickets", data={
        "csrf": csrf_of(page), "subject": "Broken kettle", "message": "It leaks.", "case_type": "return",
    }, follow_redirects=False)
    assert response.status_code == 303
    number = response.headers["location"].rsplit("/", 1)[1]
    token = csrf_of(portal_client.get(response.headers["location"]).text)
    portal_client.post(f"/portal/tickets/{number}/close", data={"csrf": token})
    assert "Closed" in portal_client.get(f"/portal/tickets/{number}").text
    portal_client.post(f"/portal/tickets/{number}/reopen", data={"csrf": token})
    case = portal_client.get(f"/portal/tickets/{number}").text
    assert "In progress" in case and "Return" in case


def test_rating_once_per_resolution_and_shown_to_agents(portal_client, session, client):
    contact = make_contact(session, language="en")
    ticket = make_ticket(session, contact=contact, status=TicketStatus.OPEN)
    change_ticket_status(session=session, ticket=ticket, status=TicketStatus.RESOLVED, now=clock.now(),
                         settings=get_settings())
    _, agent_token = make_agent(session)
    session.commit()
    sign_in(portal_client, session, contact, clock.now())
    assert f"/portal/tickets/{ticket.number}/rating" in portal_client.get("/portal/tickets").text
    token = csrf_of(portal_client.get(f"/portal/tickets/{ticket.number}/rating").text)
    first = portal_client.post(f"/portal/tickets/{ticket.number}/rating",
                               data={"csrf": token, "rating": "4", "comment": "Quick, thanks"})
    assert first.status_code == 200 and "4 of 5" in first.text
    second = portal_client.post(f"/portal/tickets/{ticket.number}/rating", data={"csrf": token, "rating": "1"})
    assert second.status_code == 409
    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers={"Authorization": f"Bearer {agent_token}"}).json()
    assert [(s["cycle"], s["rating"], s["comment"]) for s in detail["csat"]] == [(1, 4, "Quick, thanks")]
    now = clock.now()
    report = client.get("/api/v1/reports/csat", params={
        "since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(days=1)).isoformat()},
        headers={"Authorization": f"Bearer {agent_token}"}).json()
    assert report["answered"] >= 1 and report["counts"]["4"] >= 1


def test_resolving_again_asks_again(session):
    ticket = make_ticket(session, status=TicketStatus.OPEN)
    settings = get_settings()
    for status in (TicketStatus.RESOLVED, TicketStatus.OPEN, TicketStatus.RESOLVED):
        change_ticket_status(session=session, ticket=ticket, status=status, now=clock.now(), settings=settings)
    cycles = session.scalars(select(CsatSurvey.cycle).where(CsatSurvey.ticket_id == ticket.id)).all()
    assert sorted(cycles) == [1, 2]
    assert request_survey  # the service behind status changes


def test_language_from_contact_then_accept_language_and_switchable(portal_client, session):
    assert "Přihlásit se" in portal_client.get("/portal", headers={"Accept-Language": "cs-CZ,cs;q=0.9"}).text
    assert "Zaloguj się" in portal_client.get("/portal", headers={"Accept-Language": "de, pl;q=0.5"}).text
    contact = make_contact(session, language="uk")
    make_ticket(session, contact=contact)
    session.commit()
    sign_in(portal_client, session, contact, clock.now())
    page = portal_client.get("/portal/tickets", headers={"Accept-Language": "pl"}).text
    assert "Мої звернення" in page
    portal_client.post("/portal/language", data={"csrf": csrf_of(page), "language": "cs", "next": "/portal/tickets"})
    switched = portal_client.get("/portal/tickets").text
    assert "Moje požadavky" in switched and 'lang="cs"' in switched
    session.expire_all()
    assert contact.language == "cs"


def test_catalogues_cover_every_message_and_compiled_files_match():
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    from centrala.portal.i18n import TRANSLATIONS_DIR

    with open(TRANSLATIONS_DIR / "messages.pot", "rb") as handle:
        template = {message.id for message in read_po(handle) if message.id}
    for language in ("cs", "pl", "uk"):
        folder = TRANSLATIONS_DIR / language / "LC_MESSAGES"
        with open(folder / "messages.po", "rb") as handle:
            po = {m.id: m.string for m in read_po(handle) if m.id}
        with open(folder / "messages.mo", "rb") as handle:
            mo = {m.id: m.string for m in read_mo(handle) if m.id}
        assert template <= {key for key, value in po.items() if value}, language
        assert po == mo, f"{language}: messages.mo is stale; run pybabel compile"


def test_dates_and_numbers_follow_the_locale():
    from datetime import UTC, datetime

    from centrala.portal.i18n import Formatter

    moment = datetime(2025, 3, 3, 8, 30, tzinfo=UTC)
    assert Formatter("cs", "Europe/Prague").datetime(moment, "short").startswith("03.03.25")
    assert Formatter("en", "Europe/Prague").datetime(moment, "short").startswith("3/3/25")
    assert Formatter("pl", "Europe/Prague").size(1536 * 1024) == "1,5 MB"

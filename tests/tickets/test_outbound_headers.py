"""No input reaching an outbound mail adds a header: replies from the API, the console and the portal, and the
names and subjects customers give us, which our acknowledgements and replies put into Subject and To.

Each test composes the real message and reads its bytes (``OutboundEmail.raw``) back with the parser.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from centrala.core import clock
from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundStatus
from centrala.ingest.process import process_inbound_email
from centrala.tickets.models import Contact, OutboundEmail, OutboundKind, Ticket
from tests.console.conftest import web  # noqa: F401 - the console's HTTPS client fixture
from tests.console.test_web import PASSWORD, sign_in
from tests.factories import make_agent, make_contact, make_ticket
from tests.portal.conftest import portal_client  # noqa: F401 - the portal's client fixture

INTRUDER = "intruder@evil.example"
# Ways to end a header line and start another, raw and disguised.
INJECTIONS = {
    "crlf": f"Hello\r\nBcc: {INTRUDER}",
    "lf": f"Hello\nBcc: {INTRUDER}",
    "cr": f"Hello\rBcc: {INTRUDER}",
    "blank-line": "Hello\r\n\r\nA body of the intruder's choosing",
    "folded": f"Hello\r\n Bcc: {INTRUDER}",
    "percent-encoded": f"Hello%0d%0aBcc: {INTRUDER}",
    "encoded-word-q": f"=?utf-8?Q?Hello=0D=0ABcc:_{INTRUDER}?=",
    "encoded-word-b": "=?utf-8?B?" + base64.b64encode(f"Hello\r\nBcc: {INTRUDER}".encode()).decode() + "?=",
    "line-separator": f"Hello\u2028Bcc: {INTRUDER}",
    "paragraph-separator": f"Hello\u2029Bcc: {INTRUDER}",
    "next-line": f"Hello\u0085Bcc: {INTRUDER}",
    "vertical-tab": f"Hello\x0bBcc: {INTRUDER}",
    "form-feed": f"Hello\x0cBcc: {INTRUDER}",
    "file-separator": f"Hello\x1cBcc: {INTRUDER}",
    "nul": f"Hello\x00Bcc: {INTRUDER}",
}
_FIELD = re.compile(rb"^[A-Za-z0-9-]+: ")


def assert_headers_intact(raw: bytes, *, recipient: str) -> email.message.EmailMessage:
    """The composed bytes: every header line a field or its folding, one recipient, no Bcc, no intruder."""
    head, separator, _body = raw.partition(b"\r\n\r\n")
    assert separator, "no end of the header section"
    lines = head.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines), "a bare CR or LF in the headers"
    for line in lines:
        assert _FIELD.match(line) or line[:1] in (b" ", b"\t"), f"not a header line: {line!r}"
        assert not line.lower().startswith(b"bcc"), line
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        assert "bcc" not in {name.lower() for name in part}
    assert message.get_all("Cc") is None
    [to] = message.get_all("To")
    assert [address.addr_spec for address in to.addresses] == [recipient]
    for name in ("Subject", "To", "From", "Reply-To"):
        for value in message.get_all(name) or ():
            # Decoded (RFC 2047 too), no header value of ours holds a line break a reader could act on.
            assert not any(c in str(value) for c in "\r\n\u2028\u2029\x85"), (name, str(value))
    return message


def outbound_of(session, ticket: Ticket, kind: OutboundKind) -> list[OutboundEmail]:
    session.expire_all()
    return list(
        session.scalars(
            select(OutboundEmail)
            .where(OutboundEmail.ticket_id == ticket.id, OutboundEmail.kind == kind)
            .order_by(OutboundEmail.id)
        )
    )


def assert_sent_cleanly(
    session, ticket: Ticket, kind: OutboundKind, recipient: str
) -> email.message.EmailMessage:
    [outbound] = outbound_of(session, ticket, kind)
    assert (
        outbound.recipient == recipient and outbound.to_addresses == [recipient] and not outbound.cc_addresses
    )
    return assert_headers_intact(outbound.raw, recipient=recipient)


@pytest.fixture()
def auth(session) -> dict[str, str]:
    _agent, token = make_agent(session, email="petr@centrala.test", name="Petr Dvořák")
    return {"Authorization": f"Bearer {token}"}


# --- what agents write ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=list(INJECTIONS))
def test_api_reply_text_and_html_stay_in_the_body(client, session, auth, payload):
    ticket = make_ticket(session)
    response = client.post(
        f"/api/v1/tickets/{ticket.id}/replies",
        json={"text": f"Dear customer, {payload}", "html": f"<p>{payload}</p>"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    message = assert_sent_cleanly(session, ticket, OutboundKind.REPLY, ticket.contact.emails[0].address)
    assert "Dear customer, " in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=list(INJECTIONS))
def test_console_reply_text_stays_in_the_body(web, session, payload):  # noqa: F811 - the imported fixture
    agent, _ = make_agent(session, email="alena@centrala.test", name="Alena Svobodová")
    from centrala.tickets.agent_sessions import set_password

    set_password(agent=agent, password=PASSWORD)
    ticket = make_ticket(session)
    session.commit()
    assert sign_in(web).status_code == 303
    page = web.get(f"/console/tickets/{ticket.number}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = web.post(f"/console/tickets/{ticket.number}/reply", data={"csrf": csrf, "text": payload})
    assert response.status_code == 303, response.text
    assert_sent_cleanly(session, ticket, OutboundKind.REPLY, ticket.contact.emails[0].address)


@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=list(INJECTIONS))
def test_console_split_subject_cannot_reach_the_reply_headers(web, session, auth, client, payload):  # noqa: F811 - the imported fixture
    from centrala.tickets.agent_sessions import set_password
    from tests.factories import make_interaction

    agent, _ = make_agent(session, email="alena@centrala.test", name="Alena Svobodová")
    set_password(agent=agent, password=PASSWORD)
    ticket = make_ticket(session)
    make_interaction(session, ticket=ticket, text="first matter")
    second = make_interaction(session, ticket=ticket, text="second matter")
    session.commit()
    assert sign_in(web).status_code == 303
    page = web.get(f"/console/tickets/{ticket.number}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = web.post(
        f"/console/tickets/{ticket.number}/split",
        data={"csrf": csrf, "interaction_id": second.id, "subject": payload},
    )
    assert response.status_code == 303, response.text
    session.expire_all()
    created = session.scalars(select(Ticket).where(Ticket.id != ticket.id).order_by(Ticket.id.desc())).first()
    assert created is not None
    reply = client.post(f"/api/v1/tickets/{created.id}/replies", json={"text": "About that."}, headers=auth)
    assert reply.status_code == 201, reply.text
    assert_sent_cleanly(session, created, OutboundKind.REPLY, created.contact.emails[0].address)


# --- what customers give us ----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=list(INJECTIONS))
def test_contact_name_from_the_api_cannot_add_headers_to_a_reply(client, session, auth, payload):
    created = client.post(
        "/api/v1/contacts", json={"name": payload, "emails": ["mallory@example.org"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    contact = session.get(Contact, created.json()["id"])
    ticket = make_ticket(session, contact=contact)
    reply = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Hello."}, headers=auth)
    assert reply.status_code == 201, reply.text
    assert_sent_cleanly(session, ticket, OutboundKind.REPLY, "mallory@example.org")


def _portal_signed_in(portal_client, session):  # noqa: F811 - the imported fixture
    from tests.portal.conftest import sign_in as portal_sign_in

    contact = make_contact(session, language="en", emails=["mallory@example.org"])
    session.commit()
    portal_sign_in(portal_client, session, contact, clock.now())
    return contact


@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=list(INJECTIONS))
def test_portal_case_subject_and_message_cannot_add_headers(portal_client, client, session, auth, payload):  # noqa: F811 - the imported fixture
    from tests.portal.conftest import csrf_of

    contact = _portal_signed_in(portal_client, session)
    page = portal_client.get("/portal/tickets/new").text
    response = portal_client.post(
        "/portal/tickets",
        data={"csrf": csrf_of(page), "subject": payload, "message": payload, "case_type": "question"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    number = response.headers["location"].split("?")[0].rsplit("/", 1)[1]
    session.expire_all()
    ticket = session.scalars(select(Ticket).where(Ticket.contact_id == contact.id)).one()
    assert ticket.number == number
    assert not any(c in ticket.subject for c in "\r\n\u2028\u2029\x85\x00")
    for outbound in session.scalars(select(OutboundEmail).where(OutboundEmail.ticket_id == ticket.id)):
        assert_headers_intact(outbound.raw, recipient=outbound.recipient)
    reply = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Hello."}, headers=auth)
    assert reply.status_code == 201, reply.text
    assert_sent_cleanly(session, ticket, OutboundKind.REPLY, "mallory@example.org")

    # The customer answers in the portal with the same text; the agent answers again.
    case = portal_client.get(f"/portal/tickets/{number}").text
    submission = re.search(r'name="submission" value="([^"]+)"', case).group(1)
    answered = portal_client.post(
        f"/portal/tickets/{number}/replies",
        data={"csrf": csrf_of(case), "message": payload, "submission": submission},
    )
    assert answered.status_code == 200, answered.text
    again = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Again."}, headers=auth)
    assert again.status_code == 201, again.text
    for outbound in outbound_of(session, ticket, OutboundKind.REPLY):
        assert_headers_intact(outbound.raw, recipient="mallory@example.org")


# Display names and subjects as a hostile sender writes them in the raw mail, for a Bcc to ``who``.
RAW_HEADER_INJECTIONS = {
    "encoded-word-crlf": lambda who: (
        b"=?utf-8?B?" + base64.b64encode(f"Hello\r\nBcc: {who}".encode()) + b"?="
    ),
    "encoded-word-q-crlf": lambda who: b"=?utf-8?Q?Hello=0D=0ABcc:_" + who.encode() + b"?=",
    "encoded-word-line-separator": lambda who: (
        b"=?utf-8?B?" + base64.b64encode(f"Hello\u2028Bcc: {who}".encode()) + b"?="
    ),
    "encoded-word-nul": lambda who: b"=?utf-8?Q?Hello=00Bcc:_" + who.encode() + b"?=",
    "encoded-word-vertical-tab": lambda who: b"=?iso-8859-2?Q?Hello=0BBcc:_" + who.encode() + b"?=",
    "raw-utf8-line-separator": lambda who: f"Hello\u2028Bcc: {who}".encode(),
    "raw-next-line": lambda who: f"Hello\u0085Bcc: {who}".encode(),
    "bare-cr": lambda who: b"Hello\rBcc: " + who.encode(),
}


@pytest.mark.parametrize("payload", RAW_HEADER_INJECTIONS.values(), ids=list(RAW_HEADER_INJECTIONS))
def test_inbound_name_and_subject_cannot_add_headers_to_the_acknowledgement(session, blobs, payload):
    # In the name without the intruder's "@": a From naming two addresses is quarantined, never acknowledged.
    raw = (
        b"From: " + payload("intruder") + b" <mallory@example.org>\r\nTo: support@localhost\r\n"
        b"Subject: " + payload(INTRUDER) + b"\r\n"
        b"Message-ID: <inject@example.org>\r\nDate: Fri, 20 Nov 2026 09:30:00 +0000\r\n\r\nPlease help.\r\n"
    )
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    recorded = record_inbound_email(
        session=session,
        raw=raw,
        mailbox="support@localhost",
        mail_from="mallory@example.org",
        rcpt_tos=["support@localhost"],
        now=now,
        blobs=blobs,
    )
    outcome = process_inbound_email(
        session=session, inbound_id=recorded.id, now=now, blobs=blobs, settings=get_settings()
    )
    session.flush()
    if outcome.status == InboundStatus.QUARANTINED:
        # A From whose name decodes to a line break is not one clear author: kept raw, nobody mailed.
        assert outcome.reason == "no usable sender address in From"
        assert b"=0D=0A" in payload(INTRUDER) or b"Hello\r\n" in base64.b64decode(payload(INTRUDER)[10:-2])
        assert session.scalars(select(OutboundEmail)).all() == []
        return
    assert outcome.status == InboundStatus.PROCESSED, outcome
    ticket = session.get(Ticket, outcome.ticket_id)
    assert "Hello" in ticket.subject
    message = assert_sent_cleanly(session, ticket, OutboundKind.ACKNOWLEDGEMENT, "mallory@example.org")
    assert "Hello" in str(message["Subject"])

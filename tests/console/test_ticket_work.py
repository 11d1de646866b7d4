"""Working a ticket in the console beyond a plain reply: type, tags and custom fields, templates and macros,
attachments, merge and split, presence of colleagues; teams and API tokens; and the rule that an agent reaches
no ticket of another team's queue through any console or API route."""

from __future__ import annotations

import email
import email.policy
import re

from fastapi.routing import APIRoute
from sqlalchemy import select

from centrala.core.blobs import BlobStore
from centrala.core.settings import get_settings
from centrala.tickets.agent_sessions import set_password
from centrala.tickets.models import (
    AgentQueue,
    AgentRole,
    ApiToken,
    Attachment,
    CaseType,
    Channel,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    Team,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.phone_models import Call
from centrala.tickets.ticket_work import define_custom_field, ticket_tags
from tests.console.test_web import PASSWORD, csrf_of, sign_in
from tests.factories import NOW, make_agent, make_contact, make_queue, make_ticket


def _agent(session, email_address: str, name: str, role: AgentRole = AgentRole.AGENT):
    agent, token = make_agent(session, email=email_address, name=name, role=role)
    set_password(agent=agent, password=PASSWORD)
    session.flush()
    return agent, token


def _customer_ticket(session, queue, *, texts=("Faktura nesedí",), address="jana@example.cz"):
    contact = make_contact(session, name="Jana Nováková", emails=[address])
    ticket = make_ticket(session, contact=contact, subject="Faktura", queue=queue, status=TicketStatus.OPEN)
    for number, text in enumerate(texts):
        session.add(
            Interaction(
                ticket=ticket,
                contact=contact,
                channel=Channel.EMAIL,
                direction=Direction.INBOUND,
                text=text,
                subject="Faktura",
                author_name="Jana Nováková",
                external_id=f"m{number}-{ticket.id}@example.cz",
                occurred_at=NOW,
                created_at=NOW,
            )
        )
    session.flush()
    return ticket


def test_type_tags_and_custom_fields_are_saved_and_filtered_on(web, session):
    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    define_custom_field(
        session=session, entity="ticket", key="order_number", label="Order number", kind="number"
    )
    ticket = _customer_ticket(session, queue)
    sign_in(web)
    csrf = csrf_of(web.get(f"/console/tickets/{ticket.number}").text)
    form = {
        "csrf": csrf,
        "status": "open",
        "priority": "high",
        "case_type": "complaint",
        "queue_id": str(queue.id),
        "tags": "Invoice, VIP",
        "field:order_number": "2026118",
    }

    saved = web.post(f"/console/tickets/{ticket.number}/update", data=form)

    assert saved.status_code == 303 and "Saved" in web.get(saved.headers["location"]).text
    session.expire_all()
    ticket = session.get(Ticket, ticket.id)
    assert (ticket.case_type, ticket.priority, ticket_tags(ticket), ticket.custom_fields) == (
        CaseType.COMPLAINT,
        TicketPriority.HIGH,
        ["invoice", "vip"],
        {"order_number": 2026118},
    )
    listed = web.get("/console/tickets", params={"tag": "VIP", "type": "complaint"}).text
    assert ticket.number in listed
    assert ticket.number not in web.get("/console/tickets", params={"tag": "refund"}).text
    refused = web.post(f"/console/tickets/{ticket.number}/update", data={**form, "field:order_number": "abc"})
    assert "Order number: &#39;abc&#39; is not a number" in web.get(refused.headers["location"]).text


def test_a_macro_reply_with_attachments_goes_out_as_one_mail_and_does_what_the_macro_says(web, session):
    _agent(session, "vera@centrala.test", "Věra", AgentRole.SUPERVISOR)
    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    ticket = _customer_ticket(session, queue)

    sign_in(web, "vera@centrala.test")
    page = web.get("/console/templates").text
    created = web.post(
        "/console/templates",
        data={
            "csrf": csrf_of(page),
            "name": "Opravená faktura",
            "body": "Dobrý den, {{ contact.first_name }},\nv příloze je opravená faktura k {{ ticket.number }}.\n"
            "{{ agent.first_name }}",
            "set_status": "resolved",
            "add_tags": "invoice",
        },
    )
    assert created.status_code == 303
    typo = web.post(
        "/console/templates", data={"csrf": csrf_of(page), "name": "Typo", "body": "{{ contact.nme }}"}
    )
    assert typo.status_code == 422 and "contact.first_name" in typo.text

    sign_in(web)  # the agent uses it
    template_id = re.search(
        r'<option value="(\d+)"[^>]*>Opravená faktura', web.get(f"/console/tickets/{ticket.number}").text
    ).group(1)
    page = web.get(f"/console/tickets/{ticket.number}", params={"template": template_id}).text
    assert f"Dobrý den, Jana,\nv příloze je opravená faktura k {ticket.number}.\nAlena" in page
    assert "also sets status resolved" in page

    pdf = b"%PDF-1.4 corrected invoice\n" * 200
    sent = web.post(
        f"/console/tickets/{ticket.number}/reply",
        data={"csrf": csrf_of(page), "template_id": template_id, "text": "Dobrý den, Jano, posílám fakturu."},
        files=[
            ("files", ("faktura-118.pdf", pdf, "application/pdf")),
            ("files", ("rozpis.csv", b"item;price\nA;10\n", "text/csv")),
        ],
    )

    assert sent.status_code == 303
    assert "status resolved" in web.get(sent.headers["location"]).text
    session.expire_all()
    kinds = {
        row.kind: row
        for row in session.scalars(select(OutboundEmail).where(OutboundEmail.ticket_id == ticket.id))
    }
    assert set(kinds) == {
        OutboundKind.REPLY,
        OutboundKind.SURVEY,
    }  # resolved by the macro: the rating request
    outbound = kinds[OutboundKind.REPLY]
    message = email.message_from_bytes(outbound.raw, policy=email.policy.default)
    files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert files == {"faktura-118.pdf": pdf, "rozpis.csv": "item;price\nA;10\n"}
    ticket = session.get(Ticket, ticket.id)
    assert (ticket.status, ticket_tags(ticket)) == (TicketStatus.RESOLVED, ["invoice"])
    stored = session.scalars(
        select(Attachment).where(Attachment.interaction_id == outbound.interaction_id)
    ).all()
    assert sorted(item.filename for item in stored) == ["faktura-118.pdf", "rozpis.csv"]
    pdf_row = next(item for item in stored if item.filename == "faktura-118.pdf")
    download = web.get(f"/console/attachments/{pdf_row.id}")
    assert download.status_code == 200 and download.content == pdf
    assert download.headers["content-disposition"].startswith("attachment")


def test_merge_and_split_from_the_ticket_page(web, session):
    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    keep = _customer_ticket(session, queue, texts=("Faktura nesedí", "A heslo taky nefunguje"))
    drop = make_ticket(session, contact=keep.contact, subject="Faktura podruhé", queue=queue)
    session.add(
        Interaction(
            ticket=drop,
            contact=keep.contact,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            text="Píšu znovu kvůli faktuře",
            occurred_at=NOW,
            created_at=NOW,
        )
    )
    foreign = make_ticket(session, subject="Other team", queue=make_queue(session, name="Billing"))
    session.flush()
    sign_in(web)
    csrf = csrf_of(web.get(f"/console/tickets/{drop.number}").text)

    refused = web.post(f"/console/tickets/{drop.number}/merge", data={"csrf": csrf, "into": foreign.number})
    assert f"There is no ticket {foreign.number} you can work" in web.get(refused.headers["location"]).text
    merged = web.post(f"/console/tickets/{drop.number}/merge", data={"csrf": csrf, "into": keep.number})
    assert merged.headers["location"].startswith(f"/console/tickets/{keep.number}")
    page = web.get(merged.headers["location"]).text
    assert "Píšu znovu kvůli faktuře" in page and f"{drop.number} merged into this ticket" in page
    assert (
        f'merged into <a href="/console/tickets/{keep.number}">'
        in web.get(f"/console/tickets/{drop.number}").text
    )

    second = session.scalar(select(Interaction).where(Interaction.text == "A heslo taky nefunguje"))
    split = web.post(
        f"/console/tickets/{keep.number}/split",
        data={"csrf": csrf, "interaction_id": str(second.id), "subject": "Heslo"},
    )
    assert split.status_code == 303
    session.expire_all()
    created = session.get(Ticket, session.get(Interaction, second.id).ticket_id)
    assert (
        created.id not in (keep.id, drop.id)
        and created.subject == "Heslo"
        and created.assignee_id == agent.id
    )
    assert split.headers["location"].startswith(f"/console/tickets/{created.number}")


def test_an_agent_sees_who_else_is_viewing_or_typing_on_the_ticket(web, session):
    first, _ = _agent(session, "alena@centrala.test", "Alena")
    second, _ = _agent(session, "bohdan@centrala.test", "Bohdan")
    queue = make_queue(session, name="Hotline")
    session.add_all(
        [AgentQueue(agent_id=first.id, queue_id=queue.id), AgentQueue(agent_id=second.id, queue_id=queue.id)]
    )
    ticket = _customer_ticket(session, queue)
    url = f"/console/tickets/{ticket.number}/presence"

    sign_in(web, "alena@centrala.test")
    csrf = csrf_of(web.get(f"/console/tickets/{ticket.number}").text)
    assert web.post(url, data={"csrf": csrf, "state": "typing"}).json() == {"others": []}
    assert web.post(url, data={"csrf": "forged", "state": "typing"}).status_code == 403

    sign_in(web, "bohdan@centrala.test")
    page = web.get(f"/console/tickets/{ticket.number}").text
    assert "Alena is typing on this ticket" in page
    assert web.post(url, data={"csrf": csrf_of(page)}).json() == {
        "others": [{"name": "Alena", "state": "typing"}]
    }

    sign_in(web, "alena@centrala.test")
    csrf = csrf_of(web.get(f"/console/tickets/{ticket.number}").text)
    assert web.post(url, data={"csrf": csrf, "state": "viewing"}).json() == {
        "others": [{"name": "Bohdan", "state": "viewing"}]
    }
    web.post(url, data={"csrf": csrf, "state": "left"})
    sign_in(web, "bohdan@centrala.test")
    assert "Alena is" not in web.get(f"/console/tickets/{ticket.number}").text


def test_an_admin_puts_an_agent_in_a_team_and_the_agent_then_works_its_queue(web, session):
    _agent(session, "admin@centrala.test", "Admin", AgentRole.ADMIN)
    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    billing = make_queue(session, name="Billing")
    ticket = _customer_ticket(session, billing)

    sign_in(web, "alena@centrala.test")
    assert web.get(f"/console/tickets/{ticket.number}").status_code == 404
    assert web.get("/console/admin").status_code == 403

    sign_in(web, "admin@centrala.test")
    csrf = csrf_of(web.get("/console/admin").text)
    web.post("/console/admin/teams", data={"csrf": csrf, "name": "Finance"})
    team = session.scalar(select(Team).where(Team.name == "Finance"))
    saved = web.post(
        f"/console/admin/teams/{team.id}",
        data={"csrf": csrf, "member": [str(agent.id)], "queue": [str(billing.id)]},
    )
    assert "Team Finance: 1 members, 1 queues." in web.get(saved.headers["location"]).text

    sign_in(web, "alena@centrala.test")
    assert web.get(f"/console/tickets/{ticket.number}").status_code == 200
    assert ticket.number in web.get("/console").text


def test_api_tokens_are_shown_once_work_and_stop_when_revoked(web, session):
    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    other, _ = _agent(session, "bohdan@centrala.test", "Bohdan")
    sign_in(web, "bohdan@centrala.test")
    csrf = csrf_of(web.get("/console/account").text)
    web.post("/console/account/tokens", data={"csrf": csrf, "name": "Bohdan's script"})
    others_token = session.scalar(select(ApiToken).where(ApiToken.agent_id == other.id))

    sign_in(web)
    page = web.get("/console/account").text
    assert "Bohdan&#39;s script" not in page  # an agent sees only their own tokens
    created = web.post("/console/account/tokens", data={"csrf": csrf_of(page), "name": "CRM sync"})
    secret = re.search(r'class="mono secret" readonly value="([^"]+)"', created.text).group(1)
    assert secret not in web.get("/console/account").text  # shown once
    bearer = {"Authorization": f"Bearer {secret}"}
    assert web.get("/api/v1/tickets", headers=bearer).status_code == 200
    assert (
        web.post(
            f"/console/account/tokens/{others_token.id}/revoke", data={"csrf": csrf_of(page)}
        ).status_code
        == 404
    )
    row = session.scalar(select(ApiToken).where(ApiToken.agent_id == agent.id))
    web.post(f"/console/account/tokens/{row.id}/revoke", data={"csrf": csrf_of(page)})
    assert web.get("/api/v1/tickets", headers=bearer).status_code == 401


# --- no route leads to another team's ticket ---------------------------------------------------------------

TICKET_PARAMETERS = {"reference", "ticket_id"}
FORMS = {
    "reply": {"text": "hello"},
    "note": {"text": "hello"},
    "update": {"status": "closed", "priority": "low"},
    "merge": {"into": "{other}"},
    "split": {"interaction_id": "{interaction}"},
    "presence": {"state": "viewing"},
}
BODIES = {"replies": {"text": "hello"}, "status": {"status": "closed"}, "": {"priority": "low"}}


def _ticket_routes():
    from centrala.console import manage, web
    from centrala.ingest import phone_api
    from centrala.tickets import api, attachments, sla_api

    for router in (
        web.router,
        manage.router,
        api.router,
        attachments.router,
        sla_api.router,
        phone_api.router,
    ):
        for route in router.routes:
            if isinstance(route, APIRoute):
                yield route


def test_an_agent_reaches_no_ticket_of_another_teams_queue_through_any_route(web, session):
    agent, token = _agent(session, "alena@centrala.test", "Alena")
    mine = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=mine.id))
    own = _customer_ticket(session, mine)
    foreign = _customer_ticket(
        session,
        make_queue(session, name="Billing"),
        texts=("secret", "more secret"),
        address="olga@example.ua",
    )
    entry = foreign.interactions[0]
    blob = BlobStore(get_settings().blob_dir).put(b"private file")
    attachment = Attachment(
        interaction_id=entry.id, filename="private.pdf", content_type="application/pdf", size=12, sha256=blob
    )
    call = Call(
        call_sid="CA" + "f" * 32, ticket_id=foreign.id, recording_sha256=blob, created_at=NOW, updated_at=NOW
    )
    session.add_all([attachment, call])
    session.flush()
    sign_in(web)
    csrf = csrf_of(web.get("/console").text)
    bearer = {"Authorization": f"Bearer {token}"}
    exercised = set()

    for route in _ticket_routes():
        names = set(re.findall(r"{(\w+)}", route.path))
        if names & TICKET_PARAMETERS:
            path = re.sub(r"{(reference|ticket_id)}", foreign.number, route.path)
        elif names == {"attachment_id"}:
            path = route.path.replace("{attachment_id}", str(attachment.id))
        elif names == {"call_id"} and "recording" in route.path:
            path = route.path.replace("{call_id}", str(call.id))
        else:
            continue
        for method in route.methods - {"HEAD"}:
            action = route.path.rstrip("/").rsplit("/", 1)[-1]
            if route.path.startswith("/console"):
                data = {
                    key: value.format(other=own.number, interaction=entry.id)
                    for key, value in FORMS.get(action, {}).items()
                }
                response = web.request(
                    method, path, data={**data, "csrf": csrf} if method == "POST" else None
                )
            else:
                body = BODIES.get(action if action != "{ticket_id}" else "", {})
                response = web.request(method, path, headers=bearer, json=body if method != "GET" else None)
            assert response.status_code == 404, (
                method,
                route.path,
                response.status_code,
                response.text[:200],
            )
            assert "secret" not in response.text and "private file" not in response.text
            exercised.add((method, route.path))

    expected = {
        ("GET", "/console/tickets/{reference}"),
        ("POST", "/console/tickets/{reference}/reply"),
        ("POST", "/console/tickets/{reference}/merge"),
        ("POST", "/console/tickets/{reference}/split"),
        ("POST", "/console/tickets/{reference}/presence"),
        ("GET", "/console/attachments/{attachment_id}"),
        ("GET", "/console/calls/{call_id}/recording"),
        ("GET", "/api/v1/tickets/{ticket_id}"),
        ("PATCH", "/api/v1/tickets/{ticket_id}"),
        ("POST", "/api/v1/tickets/{ticket_id}/replies"),
        ("POST", "/api/v1/tickets/{ticket_id}/status"),
        ("GET", "/api/v1/attachments/{attachment_id}"),
    }
    assert expected <= exercised
    # Lists and search leave it out as well, and merging someone else's ticket into mine is refused.
    assert foreign.number not in web.get("/console/tickets").text
    assert foreign.number not in web.get("/console/search", params={"q": "secret"}).text
    assert all(item["id"] != foreign.id for item in web.get("/api/v1/tickets", headers=bearer).json())
    assert "secret" not in web.get(f"/api/v1/contacts/{foreign.contact_id}", headers=bearer).text
    merge_in = web.post(f"/console/tickets/{own.number}/merge", data={"csrf": csrf, "into": foreign.number})
    assert "you can work" in web.get(merge_in.headers["location"]).text
    session.expire_all()
    assert session.get(Ticket, foreign.id).status is TicketStatus.OPEN
    assert session.scalars(select(OutboundEmail)).all() == []


def test_the_timeline_shows_calls_with_their_recording_and_sla_events_in_order(web, session):
    from datetime import timedelta

    from centrala.tickets.models import ClockState, SlaClock, SlaMetric

    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    ticket = _customer_ticket(session, queue)
    voicemail = Interaction(
        ticket=ticket,
        contact=ticket.contact,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        text="Call from +420 601 123 456, voicemail of 0:12.\nTranscription: Prosím zavolejte mi zpět.",
        occurred_at=NOW + timedelta(minutes=30),
        created_at=NOW + timedelta(minutes=30),
    )
    session.add(voicemail)
    session.flush()
    recording = BlobStore(get_settings().blob_dir).put(b"ID3 fake mp3 bytes")
    session.add(
        Call(
            call_sid="CA" + "a" * 32,
            ticket_id=ticket.id,
            interaction_id=voicemail.id,
            outcome="voicemail",
            recording_sha256=recording,
            recording_duration=12,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    session.add(
        SlaClock(
            ticket_id=ticket.id,
            metric=SlaMetric.FIRST_RESPONSE,
            state=ClockState.RUNNING,
            target_minutes=20,
            started_at=NOW,
            running_since=NOW,
            due_at=NOW + timedelta(minutes=20),
            breached_at=NOW + timedelta(minutes=20),
        )
    )
    session.flush()
    sign_in(web)

    page = web.get(f"/console/tickets/{ticket.number}").text

    started = page.index("SLA first response started: 20 business minutes")
    breached = page.index("SLA first response breached")
    assert page.index("Faktura nesedí") < started < breached < page.index("Prosím zavolejte mi zpět.")
    call = session.scalar(select(Call).where(Call.interaction_id == voicemail.id))
    assert f'<audio controls preload="none" src="/console/calls/{call.id}/recording"' in page
    listened = web.get(f"/console/calls/{call.id}/recording")
    assert listened.status_code == 200 and listened.content == b"ID3 fake mp3 bytes"


def test_the_ticket_list_pages_through_fifty_at_a_time_keeping_its_filters(web, session):
    from datetime import timedelta

    agent, _ = _agent(session, "alena@centrala.test", "Alena")
    contact = make_contact(session, name="Jana", emails=["jana@example.cz"])
    tickets = [
        make_ticket(
            session,
            contact=contact,
            subject=f"Case {n}",
            status=TicketStatus.OPEN,
            updated_at=NOW + timedelta(minutes=n),
        )
        for n in range(60)
    ]
    make_ticket(session, contact=contact, subject="Closed one", status=TicketStatus.CLOSED)
    session.flush()
    sign_in(web)

    first = web.get("/console/tickets", params={"status": "open"}).text
    shown = set(re.findall(r'href="/console/tickets/(T-\d+)"', first))
    assert shown == {ticket.number for ticket in tickets[10:]}  # the 50 most recently updated
    older = re.search(r'<a href="([^"]+)" rel="next">', first).group(1).replace("&amp;", "&")
    assert "status=open" in older and "page=2" in older
    second = web.get(older).text
    assert set(re.findall(r'href="/console/tickets/(T-\d+)"', second)) == {t.number for t in tickets[:10]}
    assert 'rel="next"' not in second and 'rel="prev"' in second

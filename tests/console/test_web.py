"""The agent console over HTTPS: sign-in, sessions, CSRF, security headers, work lists, the e-mail quarantine
(with a real message quarantined by the worker's processing) and the caller log."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.process import process_inbound_email
from centrala.tickets.agent_sessions import set_password
from centrala.tickets.models import AgentQueue, AgentSession, TicketStatus
from centrala.tickets.phone_models import Call, CallbackState, CallerMatch
from tests.factories import NOW, make_agent, make_contact, make_queue, make_ticket

PASSWORD = "correct horse battery staple"
CORPUS = Path(__file__).resolve().parents[1] / "mail" / "corpus"


@pytest.fixture()
def agent(session):
    agent, _ = make_agent(session, email="alena@centrala.test", name="Alena Svobodová")
    set_password(agent=agent, password=PASSWORD)
    session.flush()
    return agent


def login_token(web: TestClient) -> str:
    page = web.get("/console/login")
    return re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)


def sign_in(web: TestClient, email: str = "alena@centrala.test", password: str = PASSWORD, **headers: str):
    token = login_token(web)
    return web.post(
        "/console/login",
        data={"email": email, "password": password, "login_token": token, "next": "/console"},
        headers=headers,
    )


def csrf_of(page_html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page_html).group(1)


# --- sign-in ------------------------------------------------------------------------------------------------------


def test_pages_send_a_signed_out_browser_to_sign_in(web):
    response = web.get("/console/quarantine")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fquarantine"


def test_sign_in_sets_a_host_only_secure_session_cookie_stored_hashed(web, session, agent):
    response = sign_in(web)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-centrala_console=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    stored = session.scalars(select(AgentSession)).one()
    assert stored.token_hash != value and value not in stored.token_hash
    home = web.get("/console")
    assert home.status_code == 200 and "Alena Svobodová" in home.text


@pytest.mark.parametrize(
    "email, password", [("alena@centrala.test", "wrong password!!"), ("nobody@x.test", PASSWORD)]
)
def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(web, agent, email, password):
    response = sign_in(web, email=email, password=password)
    assert response.status_code == 401
    assert "That e-mail address and password do not match an active agent." in response.text
    assert "__Host-centrala_console" not in response.headers.get("set-cookie", "")


def test_a_deactivated_agent_cannot_sign_in_and_loses_their_session(web, session, agent):
    sign_in(web)
    agent.is_active = False
    session.flush()
    assert web.get("/console").status_code == 303
    assert sign_in(web).status_code == 401


def test_sign_in_is_rate_limited_per_address(web, agent):
    for _ in range(10):
        assert sign_in(web, password="wrong password!!").status_code == 401
    limited = sign_in(web)
    assert limited.status_code == 429 and "Too many attempts" in limited.text


def test_sign_in_accepts_the_null_origin_browsers_send_under_no_referrer(web, agent):
    # Chromium sends "Origin: null" for our own forms because our pages say Referrer-Policy: no-referrer.
    assert sign_in(web, **{"Origin": "null", "Sec-Fetch-Site": "same-origin"}).status_code == 303


def test_sign_in_refuses_a_cross_site_form_and_a_foreign_next(web, agent):
    assert sign_in(web, Origin="https://evil.example").status_code == 403
    assert sign_in(web, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    token = login_token(web)
    response = web.post(
        "/console/login",
        data={
            "email": "alena@centrala.test",
            "password": PASSWORD,
            "login_token": token,
            "next": "https://evil.example/console",
        },
    )
    assert response.headers["location"] == "/console"


def test_signing_in_again_rotates_the_session_and_signing_out_revokes_it(web, session, agent):
    name = "__Host-centrala_console"
    sign_in(web)
    first = web.cookies.get(name)
    sign_in(web)
    second = web.cookies.get(name)
    assert first != second
    web.cookies.clear()
    web.cookies.set(name, first)
    assert web.get("/console").status_code == 303  # the old session ended at the new sign-in

    web.cookies.clear()
    web.cookies.set(name, second)
    home = web.get("/console")
    assert home.status_code == 200
    assert web.post("/console/logout", data={"csrf": "not the token"}).status_code == 403
    out = web.post("/console/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    web.cookies.clear()
    web.cookies.set(name, second)
    assert web.get("/console").status_code == 303


def test_a_session_expires_after_a_long_pause(web, session, agent, monkeypatch):
    sign_in(web)
    later = clock.now() + timedelta(hours=13)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert web.get("/console").status_code == 303


def test_pages_carry_security_headers(web, agent):
    sign_in(web)
    page = web.get("/console")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert web.get("/console/static/console.css").status_code == 200
    assert web.get("/console/static/live.js").status_code == 200
    web.cookies.clear()
    assert web.get("/console/live").status_code == 401  # the live stream needs a session too


# --- work lists ---------------------------------------------------------------------------------------------------


def test_home_lists_my_tickets_the_unassigned_in_my_queues_and_those_waiting(web, session, agent):
    mine_queue = make_queue(session, name="Hotline")
    other_queue = make_queue(session, name="Billing")
    session.add(AgentQueue(agent_id=agent.id, queue_id=mine_queue.id))
    make_ticket(session, subject="Assigned to Alena", assignee=agent, status=TicketStatus.OPEN)
    make_ticket(session, subject="Unassigned hotline case", queue=mine_queue)
    make_ticket(session, subject="Unassigned billing case", queue=other_queue)
    make_ticket(session, subject="Waiting for photos", queue=mine_queue, status=TicketStatus.PENDING)
    session.flush()
    sign_in(web)
    page = web.get("/console").text
    assert "Assigned to Alena" in page
    assert "Unassigned hotline case" in page
    assert "Unassigned billing case" not in page  # not one of her queues
    assert "Waiting for photos" in page


# --- quarantine ---------------------------------------------------------------------------------------------------


def test_the_quarantine_lists_a_real_quarantined_message_serves_its_bytes_and_replays_it(web, session, agent):
    raw = (CORPUS / "flanker" / "attached-pdf.eml").read_bytes()
    settings = get_settings()
    recorded = record_inbound_email(
        session=session,
        raw=raw,
        mailbox="support@localhost",
        mail_from="x@example.org",
        rcpt_tos=["support@localhost"],
        now=NOW,
        blobs=BlobStore(settings.blob_dir),
    )
    outcome = process_inbound_email(
        session=session,
        inbound_id=recorded.id,
        now=NOW,
        blobs=BlobStore(settings.blob_dir),
        settings=settings,
    )
    assert outcome.status is InboundStatus.QUARANTINED
    session.flush()
    sign_in(web)

    page = web.get("/console/quarantine")
    assert page.status_code == 200
    assert f'<td class="mono">{recorded.id}</td>' in page.text
    assert outcome.reason in page.text

    download = web.get(f"/console/quarantine/{recorded.id}/raw")
    assert download.content == raw
    assert download.headers["content-disposition"] == f'attachment; filename="inbound-{recorded.id}.eml"'
    assert download.headers["x-content-type-options"] == "nosniff"

    cross_site = web.post(
        f"/console/quarantine/{recorded.id}/replay",
        data={"csrf": csrf_of(page.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    replayed = web.post(f"/console/quarantine/{recorded.id}/replay", data={"csrf": csrf_of(page.text)})
    assert replayed.status_code == 303
    assert session.get(InboundEmail, recorded.id).status is InboundStatus.RECEIVED
    after = web.get(replayed.headers["location"]).text
    assert f"Inbound e-mail {recorded.id} is queued to be processed again." in after
    again = web.post(f"/console/quarantine/{recorded.id}/replay", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 409


# --- calls --------------------------------------------------------------------------------------------------------


def test_the_caller_log_shows_calls_and_pending_call_backs(web, session, agent):
    contact = make_contact(session, name="Jan Novák", phones=["+420601123456"])
    session.add(
        Call(
            call_sid="CA" + "1" * 32,
            direction="inbound",
            from_number="+420601123456",
            state="completed",
            outcome="missed",
            contact_id=contact.id,
            caller_match=CallerMatch.SINGLE,
            callback_state=CallbackState.PENDING,
            callback_due_at=NOW + timedelta(hours=1),
            wait_seconds=25,
            started_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    session.flush()
    sign_in(web)
    page = web.get("/console/calls").text
    assert "+420 601 123 456" in page and "Jan Novák" in page
    assert "pending, due" in page
    assert "<dd>0 %</dd>" in page  # one inbound call, not answered


# --- one ticket ---------------------------------------------------------------------------------------------------


def test_the_ticket_page_shows_the_timeline_and_takes_a_reply_a_note_and_changes(web, session, agent):
    from centrala.tickets.models import Channel, Interaction, OutboundEmail, TicketPriority

    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    contact = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"])
    ticket = make_ticket(session, contact=contact, subject="Faktura nesedí", queue=queue)
    session.add(
        Interaction(
            ticket=ticket,
            contact=contact,
            channel=Channel.EMAIL,
            direction="inbound",
            author_name="Jana Nováková",
            subject="Faktura nesedí",
            text="Dobrý den, <b>faktura</b>",
            thread_reason="new ticket",
            occurred_at=NOW,
            created_at=NOW,
        )
    )
    session.flush()
    sign_in(web)

    page = web.get(f"/console/tickets/{ticket.number}")
    assert page.status_code == 200
    assert "Dobrý den, &lt;b&gt;faktura&lt;/b&gt;" in page.text  # text is escaped, never markup
    csrf = csrf_of(page.text)

    replied = web.post(f"/console/tickets/{ticket.number}/reply", data={"text": "Opravíme ji.", "csrf": csrf})
    assert replied.status_code == 303
    [outbound] = session.scalars(select(OutboundEmail)).all()
    assert outbound.recipient == "jana@example.cz"
    noted = web.post(f"/console/tickets/{ticket.number}/note", data={"text": "Ověřit u účetní", "csrf": csrf})
    assert noted.status_code == 303
    changed = web.post(
        f"/console/tickets/{ticket.number}/update",
        data={
            "status": "third_party",
            "priority": "high",
            "assignee_id": str(agent.id),
            "queue_id": str(queue.id),
            "csrf": csrf,
        },
    )
    assert changed.status_code == 303
    session.expire_all()
    ticket = session.get(type(ticket), ticket.id)
    assert (ticket.status, ticket.priority, ticket.assignee_id) == (
        TicketStatus.THIRD_PARTY,
        TicketPriority.HIGH,
        agent.id,
    )
    page = web.get(changed.headers["location"]).text
    assert "Saved." in page and "Opravíme ji." in page and "Ověřit u účetní" in page and "queued" in page
    assert (
        web.post(f"/console/tickets/{ticket.number}/note", data={"text": "x", "csrf": "forged"}).status_code
        == 403
    )


def test_an_agent_cannot_open_a_ticket_of_another_queue_by_any_route(web, session, agent):
    other = make_queue(session, name="Billing")
    ticket = make_ticket(session, subject="Someone else's", queue=other)
    session.flush()
    sign_in(web)
    csrf = csrf_of(web.get("/console").text)
    assert web.get(f"/console/tickets/{ticket.number}").status_code == 404
    assert web.get(f"/console/tickets/{ticket.id}").status_code == 404
    for action, data in (
        ("reply", {"text": "hi"}),
        ("note", {"text": "hi"}),
        ("update", {"status": "closed", "priority": "low"}),
    ):
        response = web.post(f"/console/tickets/{ticket.number}/{action}", data={**data, "csrf": csrf})
        assert response.status_code == 404, action
    session.expire_all()
    assert session.get(type(ticket), ticket.id).status is TicketStatus.NEW
    assert "Someone else" not in web.get("/console/tickets/T-99999999").text


def test_the_contact_card_shows_everything_of_the_customer_but_tickets_of_other_queues(web, session, agent):
    from centrala.tickets.models import Channel, Interaction

    mine, theirs = make_queue(session, name="Hotline"), make_queue(session, name="Legal")
    session.add(AgentQueue(agent_id=agent.id, queue_id=mine.id))
    contact = make_contact(session, name="Jan Novák", emails=["jan@example.cz"], phones=["+420601123456"])
    contact.segment = "vip"
    visible = make_ticket(session, contact=contact, subject="Reklamace pračky", queue=mine)
    hidden = make_ticket(session, contact=contact, subject="Soudní spor", queue=theirs)
    for ticket, text in ((visible, "Pračka netočí"), (hidden, "Žaloba podána")):
        session.add(
            Interaction(
                ticket=ticket,
                contact=contact,
                channel=Channel.EMAIL,
                direction="inbound",
                subject=ticket.subject,
                text=text,
                occurred_at=NOW,
                created_at=NOW,
            )
        )
    session.add(
        Call(
            call_sid="CA" + "2" * 32,
            direction="inbound",
            from_number="+420601123456",
            state="completed",
            outcome="voicemail",
            contact_id=contact.id,
            caller_match=CallerMatch.SINGLE,
            callback_state=CallbackState.PENDING,
            started_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    session.flush()
    sign_in(web)

    page = web.get(f"/console/contacts/{contact.id}").text
    assert "jan@example.cz" in page and "+420 601 123 456" in page and "segment vip" in page
    assert "Reklamace pračky" in page and "Pračka netočí" in page
    assert "Soudní spor" not in page and "Žaloba podána" not in page  # a queue she does not work
    assert hidden.number in page  # the ticket exists, shown as such
    assert "Voicemail" in page and "not called back yet" in page


def test_search_from_the_console_finds_the_customer_and_their_words(web, session, agent):
    from centrala.tickets.models import Channel, Interaction

    queue = make_queue(session, name="Hotline")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    contact = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"])
    ticket = make_ticket(session, contact=contact, subject="Faktura", queue=queue)
    session.add(
        Interaction(
            ticket=ticket,
            contact=contact,
            channel=Channel.EMAIL,
            direction="inbound",
            text="Faktura za <script>lednici</script>",
            occurred_at=NOW,
            created_at=NOW,
        )
    )
    session.flush()
    sign_in(web)
    page = web.get("/console/search", params={"q": "lednici"}).text
    assert ticket.number in page and "&lt;script&gt;lednici" in page
    assert "Jana Nováková" in web.get("/console/search", params={"q": "jana@example.cz"}).text
    assert "at most 200 characters" in web.get("/console/search", params={"q": "x" * 300}).text


def test_all_tickets_filter_and_bulk_assign_and_close_only_what_the_agent_may_work(web, session, agent):
    from centrala.tickets.models import TicketPriority

    mine, theirs = make_queue(session, name="Hotline"), make_queue(session, name="Legal")
    session.add(AgentQueue(agent_id=agent.id, queue_id=mine.id))
    urgent = make_ticket(session, subject="Urgent one", queue=mine, priority=TicketPriority.URGENT)
    normal = make_ticket(session, subject="Normal one", queue=mine)
    foreign = make_ticket(session, subject="Legal one", queue=theirs, priority=TicketPriority.URGENT)
    session.flush()
    sign_in(web)

    page = web.get("/console/tickets", params={"priority": "urgent"}).text
    assert "Urgent one" in page and "Normal one" not in page and "Legal one" not in page
    csrf = csrf_of(page)
    response = web.post(
        "/console/tickets/bulk",
        data={
            "action": "assign_me",
            "ticket": [urgent.id, normal.id, foreign.id],
            "back": "priority=urgent&done=old",
            "csrf": csrf,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/tickets?priority=urgent&done=2+ticket")
    closed = web.post(
        "/console/tickets/bulk", data={"action": "close", "ticket": [normal.id, foreign.id], "csrf": csrf}
    )
    assert "1+ticket" in closed.headers["location"]
    session.expire_all()
    assert session.get(type(urgent), urgent.id).assignee_id == agent.id
    assert session.get(type(normal), normal.id).status is TicketStatus.CLOSED
    assert session.get(type(foreign), foreign.id).assignee_id is None
    assert session.get(type(foreign), foreign.id).status is TicketStatus.NEW
    mine_only = web.get("/console/tickets", params={"assignee": "me", "status": ["new", "open"]}).text
    assert "Urgent one" in mine_only and "Normal one" not in mine_only


def test_an_agent_merges_a_provisional_caller_into_the_customer_and_undoes_it(web, session, agent):
    jana = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"], phones=["+420601123456"])
    caller = make_contact(session, name="Jana", emails=[], phones=["+420601123456"])
    caller.is_provisional = True
    session.flush()
    sign_in(web)
    page = web.get(f"/console/contacts/{jana.id}").text
    assert "Possibly the same person" in page and f'name="other_id" value="{caller.id}"' in page
    merged = web.post(f"/console/contacts/{jana.id}/merge", data={"other_id": caller.id, "csrf": csrf_of(page)})
    assert merged.status_code == 303
    session.expire_all()
    assert session.get(type(caller), caller.id).merged_into_id == jana.id
    page = web.get(f"/console/contacts/{jana.id}").text
    assert "Undo the merge" in page
    undo_action = re.search(r'action="(/console/merges/\d+/undo)"', page).group(1)
    undone = web.post(undo_action, data={"csrf": csrf_of(page)})
    assert undone.status_code == 303 and undone.headers["location"] == f"/console/contacts/{caller.id}"
    session.expire_all()
    assert session.get(type(caller), caller.id).merged_into_id is None
    again = web.post(f"/console/contacts/{jana.id}/merge", data={"other_id": jana.id, "csrf": csrf_of(page)})
    assert again.status_code == 422 and "cannot be merged into itself" in again.text

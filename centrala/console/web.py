"""The agent console's pages: sign-in, work lists, the e-mail quarantine and the caller log.

Server-rendered (Jinja2), no script. Every page needs a signed-in agent (a server-side session behind a
``__Host-`` cookie: Secure, HttpOnly, SameSite=Lax); every POST carries the session's CSRF token and must come
from our own origin (``Origin`` and ``Sec-Fetch-Site``). Pages are never cached and may not be framed.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from centrala.console.charts import bar_chart
from centrala.console.worklists import (
    TicketFilter,
    can_work,
    filtered_tickets,
    work_lists,
    workable_ticket_ids,
)
from centrala.core import clock
from centrala.core.db import get_read_sessionmaker
from centrala.core.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from centrala.core.forms import comes_from_our_pages
from centrala.core.live import event_stream_response
from centrala.core.queue import get_redis
from centrala.core.settings import Settings
from centrala.tickets import queries, reports
from centrala.tickets.agent_sessions import (
    SignedIn,
    check_credentials,
    csrf_matches,
    load_session,
    revoke_session,
    start_session,
)
from centrala.tickets.agents import queue_ids_of
from centrala.tickets.api import SessionDep, SettingsDep
from centrala.tickets.merge import duplicate_suggestions, merge_contacts, undo_merge
from centrala.tickets.models import (
    Agent,
    AgentRole,
    Channel,
    ContactMerge,
    CsatSurvey,
    Direction,
    Organization,
    Queue,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.outbox import queue_reply
from centrala.tickets.phone import caller_log, contact_card, format_number
from centrala.tickets.phone_models import Call
from centrala.tickets.replies import MAX_REPLY_TEXT
from centrala.tickets.search import search
from centrala.tickets.sla_clocks import recompute_ticket_clocks, remaining_business_minutes
from centrala.tickets.status import change_ticket_status
from centrala.tickets.tickets import add_interaction

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-centrala_console"
LOGIN_COOKIE = "__Host-centrala_login"
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_SECONDS = 15 * 60
HERE = Path(__file__).parent

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True
)
router = APIRouter(prefix="/console", include_in_schema=False)
static = StaticFiles(directory=HERE / "static")


class QuarantinedMail(Protocol):
    """A message the workers could not turn into an interaction, as the quarantine page lists it."""

    id: int
    received_at: datetime
    mailbox: str
    mail_from: str
    size: int
    reason: str | None
    message_id: str | None


class Quarantine(Protocol):
    """Where quarantined mail comes from (the inbound ledger, wired in by ``app.py``)."""

    def list(self, session: Session, limit: int) -> Sequence[QuarantinedMail]: ...

    def raw(self, session: Session, settings: Settings, inbound_id: int) -> bytes | None: ...

    def replay(self, session: Session, inbound_id: int) -> bool: ...


def get_quarantine(request: Request) -> Quarantine:
    return request.app.state.quarantine  # type: ignore[no-any-return]


QuarantineDep = Annotated[Quarantine, Depends(get_quarantine)]


class SignInRequired(Exception):
    """No live console session: the browser is sent to the sign-in page."""


def security_headers(response: Response, settings: Settings) -> None:
    """Headers of every console page: no script, no framing, no referrer, no caching."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    if settings.public_url.startswith("https://"):
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


def render(
    request: Request, settings: Settings, name: str, status_code: int = 200, **context: object
) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, format_number=format_number, **context)
    response = HTMLResponse(html, status_code=status_code)
    security_headers(response, settings)
    return response


def signed_in(request: Request, session: SessionDep) -> SignedIn:
    """The signed-in agent of this request; raises SignInRequired."""
    current = load_session(
        session=session,
        token=request.cookies.get(SESSION_COOKIE),
        now=clock.now(),
        touch=request.method == "POST",
    )
    if current is None:
        raise SignInRequired
    return current


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a POST comes from our own pages (see ``core.forms``)."""
    return comes_from_our_pages(request, settings.public_origin)


def error_page(request: Request, settings: Settings, status_code: int, detail: str) -> HTMLResponse:
    """An error as a console page (the API's errors are JSON)."""
    titles = {404: "Not found", 403: "Refused", 409: "Conflict", 422: "Check the form", 503: "Try again shortly"}
    return render(request, settings, "message.html", status_code=status_code,
                  title=titles.get(status_code, "Something went wrong"), message=detail)


def _forbidden(request: Request, settings: Settings) -> HTMLResponse:
    return render(
        request,
        settings,
        "message.html",
        status_code=403,
        title="Refused",
        message="This form did not come from this console, or it expired. Reload the page and try again.",
    )


def _check_post(
    request: Request, settings: Settings, current: SignedIn, csrf: str | None
) -> HTMLResponse | None:
    if not same_origin(request, settings) or not csrf_matches(current, csrf):
        return _forbidden(request, settings)
    return None


# --- sign-in ------------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, settings: SettingsDep, next: str = "/console") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, settings, "login.html", login_token=token, next=_safe_next(next), error=None)
    response.set_cookie(
        LOGIN_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/", max_age=3600
    )
    return response


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    login_token: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=500)] = "/console",
) -> Response:
    cookie = request.cookies.get(LOGIN_COOKIE) or ""
    if not same_origin(request, settings) or not secrets.compare_digest(cookie, login_token):
        return _forbidden(request, settings)
    client = request.client.host if request.client else "unknown"
    if not _allow_attempt(f"email:{email.strip().lower()}") or not _allow_attempt(f"client:{client}"):
        return render(
            request,
            settings,
            "login.html",
            status_code=429,
            login_token=login_token,
            next=_safe_next(next),
            error="Too many attempts. Wait a quarter of an hour and try again.",
        )
    agent = check_credentials(session=session, email=email, password=password)
    if agent is None:
        session.commit()
        return render(
            request,
            settings,
            "login.html",
            status_code=401,
            login_token=login_token,
            next=_safe_next(next),
            error="That e-mail address and password do not match an active agent.",
        )
    now = clock.now()
    revoke_session(session=session, token=request.cookies.get(SESSION_COOKIE), now=now)
    token = start_session(
        session=session, agent=agent, now=now, user_agent=request.headers.get("user-agent", "")
    )
    session.commit()
    log.info("agent %s signed in to the console", agent.id)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="lax", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    revoke_session(session=session, token=request.cookies.get(SESSION_COOKIE), now=clock.now())
    session.commit()
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def _safe_next(target: str) -> str:
    """Only our own console pages: never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or "\\" in target:
        return "/console"
    return target


def _allow_attempt(key: str) -> bool:
    """Count a sign-in attempt under ``key``; False once over the limit in the window. Without Redis, allow."""
    try:
        client = get_redis()
        name = f"centrala:console-login:{key}"
        count = client.incr(name)
        if count == 1:
            client.expire(name, LOGIN_WINDOW_SECONDS)
        return int(count) <= LOGIN_ATTEMPTS
    except (redis.RedisError, OSError) as error:
        log.warning("sign-in rate limit unavailable: %s", error)
        return True


# --- pages --------------------------------------------------------------------------------------------------------


@router.get("")
def home(request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep) -> HTMLResponse:
    lists = work_lists(session=session, agent=current.agent)
    return render(request, settings, "home.html", current=current, lists=lists, now=clock.now())


@router.get("/quarantine")
def quarantine(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    source: QuarantineDep,
    replayed: int | None = None,
) -> HTMLResponse:
    rows = source.list(session, 200)
    return render(request, settings, "quarantine.html", current=current, rows=rows, replayed=replayed)


@router.get("/quarantine/{inbound_id}/raw")
def quarantine_raw(
    session: SessionDep, settings: SettingsDep, current: SignedInDep, source: QuarantineDep, inbound_id: int
) -> Response:
    raw = source.raw(session, settings, inbound_id)
    if raw is None:
        raise NotFoundError(f"no inbound e-mail {inbound_id}")
    response = Response(
        raw,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="inbound-{inbound_id}.eml"'},
    )
    security_headers(response, settings)
    return response


@router.post("/quarantine/{inbound_id}/replay")
def quarantine_replay(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    source: QuarantineDep,
    inbound_id: int,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    if not source.replay(session, inbound_id):
        return render(
            request,
            settings,
            "message.html",
            status_code=409,
            title="Not in quarantine",
            message=f"Inbound e-mail {inbound_id} is not in quarantine (any more).",
        )
    session.commit()
    log.info("agent %s replayed quarantined inbound e-mail %s", current.agent.id, inbound_id)
    return RedirectResponse(f"/console/quarantine?replayed={inbound_id}", status_code=303)


# --- all tickets, filtered; bulk actions ---------------------------------------------------------------------------


@router.get("/tickets")
def tickets_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep,
    status: Annotated[list[str] | None, Query()] = None, priority: str = "", queue: str = "",
    organization: str = "", assignee: str = "", done: str | None = None,
) -> HTMLResponse:
    statuses = tuple(TicketStatus(value) for value in (status or []) if value in set(TicketStatus))
    filters = TicketFilter(
        statuses=statuses,
        priority=priority if priority in set(TicketPriority) else None,
        queue_id=int(queue) if queue.isdigit() else None,
        organization_id=int(organization) if organization.isdigit() else None,
        assignee_id=current.agent.id if assignee == "me" else (int(assignee) if assignee.isdigit() else None),
    )
    items = filtered_tickets(session=session, agent=current.agent, filters=filters)
    return render(
        request, settings, "tickets.html", current=current, items=items, filters=filters, assignee=assignee,
        statuses=list(TicketStatus), priorities=list(TicketPriority),
        queues=session.scalars(select(Queue).order_by(Queue.name)).all(),
        # Only what the choice shows: building hundreds of full rows each time cost more than the list's query.
        organizations=session.execute(
            select(Organization.id, Organization.name).order_by(Organization.name)
        ).all(),
        done=done, query=str(request.url.query),
    )


@router.post("/tickets/bulk")
def tickets_bulk(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep,
    action: Annotated[str, Form(max_length=20)], ticket: Annotated[list[int] | None, Form()] = None,
    back: Annotated[str, Form(max_length=2000)] = "", csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Assign the chosen tickets to me, or close them; tickets the agent may not work are left alone."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    if action not in ("assign_me", "close"):
        return error_page(request, settings, 422, "Choose to assign the tickets to you or to close them.")
    now, changed = clock.now(), 0
    for ticket_id in (ticket or [])[:200]:
        found = session.get(Ticket, ticket_id)
        if found is None or not can_work(session=session, agent=current.agent, ticket=found):
            continue
        if action == "assign_me":
            found.assignee_id = current.agent.id
            found.updated_at = max(found.updated_at, now)
        else:
            change_ticket_status(session=session, ticket=found, status=TicketStatus.CLOSED, now=now, settings=settings)
        changed += 1
    session.commit()
    # Back to the same filters (only the list's own parameters, never a URL).
    kept = [(key, value) for key, value in parse_qsl(back) if key in ("status", "priority", "queue", "organization",
                                                                       "assignee")]
    message = f"{changed} ticket(s) {'assigned to you' if action == 'assign_me' else 'closed'}."
    return RedirectResponse("/console/tickets?" + urlencode([*kept, ("done", message)]), status_code=303)


# --- one ticket ---------------------------------------------------------------------------------------------------


def _ticket_for(session: Session, agent: Agent, reference: str) -> Ticket:
    """The ticket an agent may work, else NotFoundError (a foreign ticket looks the same as a missing one)."""
    try:
        ticket = queries.get_ticket_or_raise(session=session, reference=reference, with_interactions=True)
    except NotFoundError:
        raise NotFoundError("no such ticket") from None
    if not can_work(session=session, agent=agent, ticket=ticket):
        raise NotFoundError("no such ticket")
    return ticket


@router.get("/tickets/{reference}")
def ticket_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    done: str | None = None, error: str | None = None,
) -> HTMLResponse:
    ticket = _ticket_for(session, current.agent, reference)
    now = clock.now()
    clocks = [(sla_clock, remaining_business_minutes(sla_clock, now)) for sla_clock in ticket.sla_clocks]
    return render(
        request, settings, "ticket.html", current=current, ticket=ticket, clocks=clocks,
        agents=session.scalars(select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.name)).all(),
        queues=session.scalars(select(Queue).order_by(Queue.name)).all(),
        statuses=list(TicketStatus), priorities=list(TicketPriority), done=done, error=error,
    )


@router.post("/tickets/{reference}/reply")
def ticket_reply(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    text: Annotated[str, Form(max_length=MAX_REPLY_TEXT)] = "", csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    ticket = _ticket_for(session, current.agent, reference)
    try:
        queue_reply(session=session, ticket=ticket, agent=current.agent, text=text, html=None, now=clock.now(),
                    settings=settings)
    except InvalidInputError as error:
        session.rollback()
        return _back(ticket, error=str(error))
    session.commit()
    return _back(ticket, done="Reply queued; its delivery state shows on the timeline.")


@router.post("/tickets/{reference}/note")
def ticket_note(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    text: Annotated[str, Form(max_length=MAX_REPLY_TEXT)] = "", csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    ticket = _ticket_for(session, current.agent, reference)
    if not text.strip():
        return _back(ticket, error="An internal note needs some text.")
    now = clock.now()
    add_interaction(
        session=session, ticket=ticket, contact=ticket.contact, channel=Channel.NOTE, direction=Direction.INTERNAL,
        occurred_at=now, now=now, text=text.strip(), author_name=current.agent.name or current.agent.email,
        agent_id=current.agent.id,
    )
    ticket.updated_at = max(ticket.updated_at, now)
    session.commit()
    return _back(ticket, done="Note added (customers never see notes).")


@router.post("/tickets/{reference}/update")
def ticket_update(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    status: Annotated[TicketStatus, Form()], priority: Annotated[TicketPriority, Form()],
    assignee_id: Annotated[str, Form(max_length=20)] = "", queue_id: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    ticket = _ticket_for(session, current.agent, reference)
    now = clock.now()
    assignee = session.get(Agent, int(assignee_id)) if assignee_id.isdigit() else None
    queue = session.get(Queue, int(queue_id)) if queue_id.isdigit() else None
    moved = priority is not ticket.priority or (queue.id if queue else None) != ticket.queue_id
    ticket.priority, ticket.assignee, ticket.queue = priority, assignee, queue
    session.flush()
    if moved:
        recompute_ticket_clocks(session=session, ticket=ticket)
    change_ticket_status(session=session, ticket=ticket, status=status, now=now, settings=settings)
    ticket.updated_at = max(ticket.updated_at, now)
    session.commit()
    return _back(ticket, done="Saved.")


def _back(ticket: Ticket, *, done: str | None = None, error: str | None = None) -> RedirectResponse:
    query = urlencode({key: value for key, value in (("done", done), ("error", error)) if value})
    return RedirectResponse(f"/console/tickets/{ticket.number}" + (f"?{query}" if query else ""), status_code=303)


# --- reports ----------------------------------------------------------------------------------------------------

# Which column of each report to draw: (label column, value column).
CHARTED = {"volume": (0, 2), "queues": (0, 1), "agents": (0, 2), "sla": (0, 5), "calls": (0, 1), "csat": (0, 1),
           "pareto": (1, 2)}


def _report_period(days: int) -> tuple[datetime, datetime]:
    until = clock.now()
    return until - timedelta(days=max(1, min(days, 366))), until


def _supervisor(current: SignedIn) -> None:
    if current.agent.role not in (AgentRole.SUPERVISOR, AgentRole.ADMIN):
        raise PermissionDeniedError("reports are for supervisors and admins")


@router.get("/reports")
def reports_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, days: int = 30
) -> HTMLResponse:
    _supervisor(current)
    since, until = _report_period(days)
    charted = []
    for report in reports.all_reports(session=session, since=since, until=until):
        label, value = CHARTED.get(report.name, (0, len(report.header) - 1))
        charted.append((report, bar_chart(report.rows, label=label, value=value, title=report.title)))
    return render(request, settings, "reports.html", current=current, charted=charted, days=days, since=since,
                  until=until)


@router.get("/reports/{name}.csv")
def report_csv(
    session: SessionDep, settings: SettingsDep, current: SignedInDep, name: str, days: int = 30
) -> Response:
    _supervisor(current)
    since, until = _report_period(days)
    report = next((r for r in reports.all_reports(session=session, since=since, until=until) if r.name == name), None)
    if report is None:
        raise NotFoundError(f"no report {name!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(report.header)
    writer.writerows([_csv_cell(cell) for cell in row] for row in report.rows)
    response = Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{report.name}-{days}d.csv"'})
    security_headers(response, settings)
    return response


def _csv_cell(value: object) -> object:
    """Cells a spreadsheet would run as a formula (CSV injection) start with a quote instead."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --- search -----------------------------------------------------------------------------------------------------


@router.get("/search")
def search_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, q: str = ""
) -> HTMLResponse:
    results, error = None, None
    if q.strip():
        try:
            results = search(session=session, query=q, region=settings.default_region,
                             queue_ids=queue_ids_of(session=session, agent=current.agent))
        except InvalidInputError as failure:
            error = str(failure)
    return render(request, settings, "search.html", current=current, q=q, results=results, error=error)


# --- the customer -------------------------------------------------------------------------------------------------


@router.get("/contacts/{contact_id}")
def contact_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, contact_id: int
) -> HTMLResponse:
    """The customer at a glance: every address and number, organisation, segment, every ticket (those the agent
    may open are links), calls, ratings and the whole timeline, with next steps."""
    contact = queries.get_contact_or_raise(session=session, contact_id=contact_id)
    card = contact_card(session=session, contact=contact, now=clock.now())
    suggestions = card.pop("_suggestions")
    tickets = session.scalars(
        select(Ticket).where(Ticket.contact_id == contact.id).order_by(Ticket.updated_at.desc())
    ).all()
    workable = workable_ticket_ids(session=session, agent=current.agent, tickets=tickets)
    calls_of_contact = session.scalars(
        select(Call).where(Call.contact_id == contact.id).order_by(Call.started_at.desc()).limit(50)
    ).all()
    ratings = session.scalars(
        select(CsatSurvey)
        .join(Ticket, CsatSurvey.ticket_id == Ticket.id)
        .where(Ticket.contact_id == contact.id, CsatSurvey.rating.is_not(None))
        .order_by(CsatSurvey.answered_at.desc())
    ).all()
    timeline = [item for item in queries.list_contact_timeline(session=session, contact_id=contact.id)
                if item.ticket_id is None or item.ticket_id in workable]
    merges = session.scalars(
        select(ContactMerge)
        .where(or_(ContactMerge.kept_contact_id == contact.id, ContactMerge.merged_contact_id == contact.id))
        .order_by(ContactMerge.created_at.desc())
    ).all()
    return render(request, settings, "contact.html", current=current, contact=contact, card=card,
                  suggestions=suggestions, tickets=tickets, workable=workable, calls=calls_of_contact,
                  ratings=ratings, timeline=timeline, merges=merges,
                  duplicates=duplicate_suggestions(session=session, contact=contact) if not contact.merged_into_id else [])


@router.post("/contacts/{contact_id}/merge")
def contact_merge(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, contact_id: int,
    other_id: Annotated[int, Form()], csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Merge the other contact into this one (its addresses, numbers, tickets, timeline and calls move here)."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    keep = queries.get_contact_or_raise(session=session, contact_id=contact_id)
    drop = queries.get_contact_or_raise(session=session, contact_id=other_id)
    merge_contacts(session=session, keep=keep, drop=drop, agent=current.agent, now=clock.now())
    session.commit()
    log.info("agent %s merged contact %s into %s", current.agent.id, other_id, contact_id)
    return RedirectResponse(f"/console/contacts/{contact_id}", status_code=303)


@router.post("/merges/{merge_id}/undo")
def contact_merge_undo(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, merge_id: int,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    entry = session.get(ContactMerge, merge_id)
    if entry is None:
        raise NotFoundError(f"no merge {merge_id}")
    undo_merge(session=session, entry=entry, now=clock.now())
    session.commit()
    log.info("agent %s undid contact merge %s", current.agent.id, merge_id)
    return RedirectResponse(f"/console/contacts/{entry.merged_contact_id}", status_code=303)


@router.get("/live")
def live(request: Request, settings: SettingsDep) -> Response:
    """The signed-in agent's live events (server-sent events): the screen-pop of a call ringing them.

    Authenticated with a database session closed before streaming starts: a stream lasts for hours.
    """
    with get_read_sessionmaker()() as session:
        current = load_session(
            session=session, token=request.cookies.get(SESSION_COOKIE), now=clock.now(), touch=False
        )
        agent_id = current.agent.id if current is not None else None
    if agent_id is None:
        return Response("sign in first\n", status_code=401, media_type="text/plain")
    response = event_stream_response(request, settings, agent_id)
    security_headers(response, settings)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/calls")
def calls(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    outcome: str | None = None,
) -> HTMLResponse:
    chosen = outcome if outcome in ("answered", "missed", "voicemail", "busy", "failed") else None
    report = caller_log(session=session, outcome=chosen, limit=100)
    return render(request, settings, "calls.html", current=current, report=report, outcome=chosen)


def when(moment: datetime | None) -> str:
    """A moment as agents read it in a list."""
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


templates.filters["when"] = when

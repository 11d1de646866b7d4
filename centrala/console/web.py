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
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from centrala.console.charts import bar_chart
from centrala.console.worklists import (
    PAGE_SIZE,
    TicketFilter,
    can_work,
    filtered_tickets,
    work_lists,
    workable_ticket_ids,
)
from centrala.core import clock, presence
from centrala.core.blobs import BlobStore
from centrala.core.db import get_read_sessionmaker
from centrala.core.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from centrala.core.forms import comes_from_our_pages
from centrala.core.ids import MAX_ID
from centrala.core.live import event_stream_response
from centrala.core.queue import get_redis
from centrala.core.settings import Settings
from centrala.mail.compose import OutboundAttachment
from centrala.tickets import queries, reports
from centrala.tickets.agent_sessions import (
    SignedIn,
    check_credentials,
    csrf_matches,
    load_session,
    revoke_session,
    start_session,
)
from centrala.tickets.agents import queue_ids_of, team_queue_ids_of
from centrala.tickets.api import SessionDep, SettingsDep
from centrala.tickets.attachments import attachment_response
from centrala.tickets.merge import duplicate_suggestions, merge_contacts, undo_merge
from centrala.tickets.models import (
    Agent,
    AgentRole,
    Attachment,
    CaseType,
    Channel,
    ContactMerge,
    CsatSurvey,
    Direction,
    Interaction,
    Organization,
    Queue,
    ReplyTemplate,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.outbox import queue_reply
from centrala.tickets.phone import caller_log, contact_card, format_number
from centrala.tickets.phone_models import Call
from centrala.tickets.replies import MAX_REPLY_TEXT
from centrala.tickets.reply_templates import VARIABLES, apply_macro, render_template
from centrala.tickets.search import search
from centrala.tickets.sla_clocks import recompute_ticket_clocks, remaining_business_minutes
from centrala.tickets.status import change_ticket_status
from centrala.tickets.ticket_work import (
    clean_custom_fields,
    field_definitions,
    merge_tickets,
    normalise_tags,
    set_tags,
    split_interaction,
    ticket_tags,
)
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
    organization: str = "", assignee: str = "", done: str | None = None, type: str = "", tag: str = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    statuses = tuple(TicketStatus(value) for value in (status or []) if value in set(TicketStatus))
    filters = TicketFilter(
        statuses=statuses,
        priority=priority if priority in set(TicketPriority) else None,
        queue_id=int(queue) if queue.isdigit() else None,
        organization_id=int(organization) if organization.isdigit() else None,
        assignee_id=current.agent.id if assignee == "me" else (int(assignee) if assignee.isdigit() else None),
        case_type=type if type in set(CaseType) else None,
        tag="-".join(tag.strip().lower().split())[:50] or None,
    )
    # One row more than a page says whether there is a next one.
    items = filtered_tickets(session=session, agent=current.agent, filters=filters, limit=PAGE_SIZE + 1,
                             offset=(page - 1) * PAGE_SIZE)
    more, items = len(items) > PAGE_SIZE, items[:PAGE_SIZE]
    paging = [(key, value) for key, value in request.query_params.multi_items() if key not in ("page", "done")]
    return render(
        request, settings, "tickets.html", current=current, items=items, filters=filters, assignee=assignee,
        statuses=list(TicketStatus), priorities=list(TicketPriority), case_types=list(CaseType),
        queues=session.scalars(select(Queue).order_by(Queue.name)).all(),
        # Only what the choice shows: building hundreds of full rows each time cost more than the list's query.
        organizations=session.execute(
            select(Organization.id, Organization.name).order_by(Organization.name)
        ).all(),
        done=done, query=str(request.url.query), page=page, more=more,
        previous_url="/console/tickets?" + urlencode([*paging, ("page", page - 1)]) if page > 1 else None,
        next_url="/console/tickets?" + urlencode([*paging, ("page", page + 1)]) if more else None,
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
    kept = [(key, value) for key, value in parse_qsl(back)
            if key in ("status", "priority", "queue", "organization", "assignee", "type", "tag")]
    message = f"{changed} ticket(s) {'assigned to you' if action == 'assign_me' else 'closed'}."
    return RedirectResponse("/console/tickets?" + urlencode([*kept, ("done", message)]), status_code=303)


# --- one ticket ---------------------------------------------------------------------------------------------------

MAX_REPLY_FILES = 10


def _ticket_for(session: Session, agent: Agent, reference: str) -> Ticket:
    """The ticket an agent may work, else NotFoundError (a foreign ticket looks the same as a missing one)."""
    try:
        ticket = queries.get_ticket_or_raise(session=session, reference=reference, with_interactions=True)
    except NotFoundError:
        raise NotFoundError("no such ticket") from None
    if not can_work(session=session, agent=agent, ticket=ticket):
        raise NotFoundError("no such ticket")
    return ticket


def _timeline(ticket: Ticket, calls: dict[int, Call]) -> list[tuple[datetime, str, object]]:
    """The ticket's entries and its SLA events in time order: ("entry", interaction) and ("sla", text)."""
    items: list[tuple[datetime, str, object]] = [
        (item.occurred_at, "entry", (item, calls.get(item.id))) for item in ticket.interactions
    ]
    for sla_clock in ticket.sla_clocks:
        name = sla_clock.metric.value.replace("_", " ") + (f" #{sla_clock.cycle}" if sla_clock.cycle else "")
        events = [
            (sla_clock.started_at, f"SLA {name} started: {sla_clock.target_minutes} business minutes"),
            (sla_clock.warned_at, f"SLA {name}: warning, due {when(sla_clock.due_at)}"),
            (sla_clock.breached_at, f"SLA {name} breached"),
            (sla_clock.met_at, f"SLA {name} met"),
            (sla_clock.stopped_at if sla_clock.met_at is None else None, f"SLA {name} {sla_clock.state.value}"),
        ]
        items.extend((moment, "sla", text) for moment, text in events if moment is not None)
    items.sort(key=lambda item: (item[0], item[1] != "entry"))
    return items


@router.get("/tickets/{reference}")
def ticket_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    done: str | None = None, error: str | None = None, template: int | None = None,
) -> HTMLResponse:
    ticket = _ticket_for(session, current.agent, reference)
    now = clock.now()
    clocks = [(sla_clock, remaining_business_minutes(sla_clock, now)) for sla_clock in ticket.sla_clocks]
    calls = {call.interaction_id: call for call in session.scalars(select(Call).where(Call.ticket_id == ticket.id))
             if call.interaction_id is not None}
    chosen = session.get(ReplyTemplate, template) if template else None
    draft, draft_error = "", None
    if chosen is not None:
        try:
            draft = render_template(chosen.body, ticket=ticket, agent=current.agent)
        except InvalidInputError as failure:
            draft_error = str(failure)
    try:
        others = presence.present(ticket_id=ticket.id)
    except (redis.RedisError, OSError):
        others = []
    return render(
        request, settings, "ticket.html", current=current, ticket=ticket, clocks=clocks,
        timeline=_timeline(ticket, calls),
        agents=session.scalars(select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.name)).all(),
        queues=session.scalars(select(Queue).order_by(Queue.name)).all(),
        statuses=list(TicketStatus), priorities=list(TicketPriority), case_types=list(CaseType),
        tags=ticket_tags(ticket), fields=field_definitions(session=session, entity="ticket"),
        templates=session.scalars(select(ReplyTemplate).order_by(ReplyTemplate.name)).all(),
        chosen=chosen, draft=draft, draft_error=draft_error, variables=VARIABLES,
        others=[item for item in others if item.agent_id != current.agent.id],
        merged_into=session.get(Ticket, ticket.merged_into_id) if ticket.merged_into_id else None,
        done=done, error=error,
    )


async def _read_uploads(files: list[UploadFile] | None, limit: int) -> list[OutboundAttachment]:
    """The files attached to a reply, read into memory (within the mail size limit); empty file inputs are
    ignored.

    Raises:
        InvalidInputError: too many files, or more bytes than a mail may carry.
    """
    chosen = [upload for upload in (files or []) if upload.filename]
    if len(chosen) > MAX_REPLY_FILES:
        raise InvalidInputError(f"attach at most {MAX_REPLY_FILES} files to one reply")
    attachments, total = [], 0
    for upload in chosen:
        data = await upload.read(limit - total + 1)
        total += len(data)
        if total > limit:
            raise InvalidInputError(f"the attachments are larger than the {limit // (1024 * 1024)} MiB a mail may carry")
        attachments.append(OutboundAttachment(
            filename=upload.filename or "attachment", content_type=upload.content_type or "application/octet-stream",
            data=data,
        ))
    return attachments


@router.post("/tickets/{reference}/reply")
async def ticket_reply(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    text: Annotated[str, Form(max_length=MAX_REPLY_TEXT)] = "", csrf: Annotated[str, Form(max_length=100)] = "",
    template_id: Annotated[str, Form(max_length=20)] = "",
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Send the agent's e-mail reply with its attachments; a reply written from a macro also does what the macro
    says (status, priority, tags)."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    ticket = _ticket_for(session, current.agent, reference)
    macro = session.get(ReplyTemplate, int(template_id)) if template_id.isdigit() else None
    now = clock.now()
    try:
        # The mail carries the attachments base64-encoded, a third larger than the files.
        attachments = await _read_uploads(files, settings.max_message_bytes * 3 // 4)
        queue_reply(session=session, ticket=ticket, agent=current.agent, text=text, html=None, now=now,
                    settings=settings, attachments=attachments)
        changes = apply_macro(session=session, template=macro, ticket=ticket, now=now, settings=settings) if macro else []
    except InvalidInputError as error:
        session.rollback()
        return _back(ticket, error=str(error))
    session.commit()
    done = "Reply queued; its delivery state shows on the timeline."
    if changes:
        done += f" {macro.name}: {'; '.join(changes)}."  # type: ignore[union-attr]
    return _back(ticket, done=done)


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
async def ticket_update(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
) -> Response:
    """Save the ticket's status, priority, assignee, queue, type, tags and custom fields in one go."""
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    refused = _check_post(request, settings, current, values.get("csrf", ""))
    if refused is not None:
        return refused
    ticket = _ticket_for(session, current.agent, reference)
    try:
        status = TicketStatus(values.get("status", ticket.status.value))
        priority = TicketPriority(values.get("priority", ticket.priority.value))
        case_type = CaseType(values["case_type"]) if values.get("case_type") else None
    except ValueError:
        return _back(ticket, error="Choose the status, priority and type from the lists.")
    assignee_id, queue_id = values.get("assignee_id", ""), values.get("queue_id", "")
    assignee = session.get(Agent, int(assignee_id)) if assignee_id.isdigit() else None
    queue = session.get(Queue, int(queue_id)) if queue_id.isdigit() else None
    definitions = field_definitions(session=session, entity="ticket")
    try:
        tags = normalise_tags([values.get("tags", "")])
        custom = clean_custom_fields(
            definitions=definitions, current=ticket.custom_fields,
            given={key.removeprefix("field:"): value for key, value in values.items() if key.startswith("field:")},
        )
    except InvalidInputError as error:
        return _back(ticket, error=str(error))
    now = clock.now()
    moved = priority is not ticket.priority or (queue.id if queue else None) != ticket.queue_id
    ticket.priority, ticket.assignee, ticket.queue, ticket.case_type = priority, assignee, queue, case_type
    ticket.custom_fields = custom
    set_tags(session=session, ticket=ticket, tags=tags)
    session.flush()
    if moved:
        recompute_ticket_clocks(session=session, ticket=ticket)
    change_ticket_status(session=session, ticket=ticket, status=status, now=now, settings=settings)
    ticket.updated_at = max(ticket.updated_at, now)
    session.commit()
    return _back(ticket, done="Saved.")


@router.post("/tickets/{reference}/merge")
def ticket_merge(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    into: Annotated[str, Form(max_length=32)] = "", csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Merge this ticket into another the agent may work (given by its number): the history moves there."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    drop = _ticket_for(session, current.agent, reference)
    try:
        keep = _ticket_for(session, current.agent, into.strip())
    except NotFoundError:
        return _back(drop, error=f"There is no ticket {into.strip() or '(none given)'} you can work.")
    try:
        moved = merge_tickets(session=session, keep=keep, drop=drop, agent=current.agent, now=clock.now(),
                              settings=settings)
    except (InvalidInputError, ConflictError) as error:
        session.rollback()
        return _back(drop, error=str(error))
    session.commit()
    log.info("agent %s merged ticket %s into %s", current.agent.id, drop.id, keep.id)
    return _back(keep, done=f"{drop.number} merged into this ticket ({moved} entries moved).")


@router.post("/tickets/{reference}/split")
def ticket_split(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    interaction_id: Annotated[int, Form()], subject: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Move one message of this ticket into a new ticket (a second matter raised in a reply)."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    source = _ticket_for(session, current.agent, reference)
    interaction = session.get(Interaction, interaction_id)
    if interaction is None or interaction.ticket_id != source.id:
        return _back(source, error="That message is not on this ticket (any more).")
    try:
        created = split_interaction(session=session, interaction=interaction, agent=current.agent, now=clock.now(),
                                    subject=subject)
    except (InvalidInputError, ConflictError) as error:
        session.rollback()
        return _back(source, error=str(error))
    session.commit()
    return _back(created, done=f"Split off {source.number}: this is a new ticket, assigned to you.")


@router.post("/tickets/{reference}/presence")
def ticket_presence(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, reference: str,
    state: Annotated[str, Form(max_length=10)] = "viewing", csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """The page reports that its agent is viewing or typing; the answer names the other agents on the ticket."""
    if not same_origin(request, settings) or not csrf_matches(current, csrf):
        return JSONResponse({"error": "refused"}, status_code=403)
    ticket = _ticket_for(session, current.agent, reference)
    name = current.agent.name or current.agent.email
    try:
        if state == "left":
            presence.leave(ticket_id=ticket.id, agent_id=current.agent.id)
            others = []
        else:
            others = presence.report_presence(ticket_id=ticket.id, agent_id=current.agent.id, name=name, state=state)
    except (redis.RedisError, OSError):
        return JSONResponse({"others": [], "unavailable": True})
    response = JSONResponse({"others": [{"name": item.name, "state": item.state} for item in others]})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/attachments/{attachment_id}")
def attachment_download(
    session: SessionDep, settings: SettingsDep, current: SignedInDep, attachment_id: int
) -> Response:
    """A file of a message on a ticket the agent may work (always downloaded, never shown as a page)."""
    attachment = session.get(Attachment, attachment_id) if 0 < attachment_id <= MAX_ID else None
    ticket = attachment.interaction.ticket if attachment is not None else None
    if attachment is None or (ticket is not None and not can_work(session=session, agent=current.agent,
                                                                  ticket=ticket)):
        raise NotFoundError("no such attachment")
    return attachment_response(attachment, BlobStore(settings.blob_dir))


@router.get("/calls/{call_id}/recording")
def call_recording(session: SessionDep, settings: SettingsDep, current: SignedInDep, call_id: int) -> Response:
    """The call's recording (voicemail or recorded call), to listen to in the browser."""
    call = session.get(Call, call_id) if 0 < call_id <= MAX_ID else None
    ticket = session.get(Ticket, call.ticket_id) if call is not None and call.ticket_id else None
    if call is None or call.recording_sha256 is None or (
        ticket is not None and not can_work(session=session, agent=current.agent, ticket=ticket)
    ):
        raise NotFoundError("no such recording")
    response = Response(BlobStore(settings.blob_dir).get(call.recording_sha256), media_type="audio/mpeg")
    security_headers(response, settings)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _back(ticket: Ticket, *, done: str | None = None, error: str | None = None) -> RedirectResponse:
    query = urlencode({key: value for key, value in (("done", done), ("error", error)) if value})
    return RedirectResponse(f"/console/tickets/{ticket.number}" + (f"?{query}" if query else ""), status_code=303)


# --- reports ----------------------------------------------------------------------------------------------------

# Which column of each report to draw: (label column, value column).
CHARTED = {"volume": (0, 2), "queues": (0, 1), "types": (1, 2), "agents": (0, 2), "teams": (0, 2), "sla": (0, 5), "calls": (0, 1), "csat": (0, 1),
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
    scope = team_queue_ids_of(session=session, agent=current.agent)
    for report in reports.all_reports(session=session, since=since, until=until, queue_ids=scope):
        label, value = CHARTED.get(report.name, (0, len(report.header) - 1))
        charted.append((report, bar_chart(report.rows, label=label, value=value, title=report.title)))
    scoped = None if scope is None else session.scalars(select(Queue.name).where(Queue.id.in_(scope))).all()
    return render(request, settings, "reports.html", current=current, charted=charted, days=days, since=since,
                  until=until, scoped=scoped)


@router.get("/reports/{name}.csv")
def report_csv(
    session: SessionDep, settings: SettingsDep, current: SignedInDep, name: str, days: int = 30
) -> Response:
    _supervisor(current)
    since, until = _report_period(days)
    scope = team_queue_ids_of(session=session, agent=current.agent)
    report = next(
        (r for r in reports.all_reports(session=session, since=since, until=until, queue_ids=scope) if r.name == name),
        None,
    )
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
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, contact_id: int,
    field_error: str | None = None,
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
                  fields=field_definitions(session=session, entity="contact"), field_error=field_error,
                  suggestions=suggestions, tickets=tickets, workable=workable, calls=calls_of_contact,
                  ratings=ratings, timeline=timeline, merges=merges,
                  duplicates=duplicate_suggestions(session=session, contact=contact) if not contact.merged_into_id else [])


@router.post("/contacts/{contact_id}/fields")
async def contact_fields(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep, contact_id: int
) -> Response:
    """Save the contact's custom fields."""
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    refused = _check_post(request, settings, current, values.get("csrf", ""))
    if refused is not None:
        return refused
    contact = queries.get_contact_or_raise(session=session, contact_id=contact_id)
    try:
        contact.custom_fields = clean_custom_fields(
            definitions=field_definitions(session=session, entity="contact"), current=contact.custom_fields,
            given={key.removeprefix("field:"): value for key, value in values.items() if key.startswith("field:")},
        )
    except InvalidInputError as error:
        return RedirectResponse(f"/console/contacts/{contact.id}?" + urlencode({"field_error": str(error)}),
                                status_code=303)
    contact.updated_at = clock.now()
    session.commit()
    return RedirectResponse(f"/console/contacts/{contact.id}", status_code=303)


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

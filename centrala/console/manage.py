"""The console's set-up pages: reply templates and macros, teams, custom fields, and each agent's API tokens.

Every agent uses templates and manages their own tokens; supervisors and admins write templates; admins manage
teams and custom fields and may revoke anyone's token.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from centrala.console.web import SignedInDep, _check_post, error_page, render
from centrala.core import clock
from centrala.core.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from centrala.core.settings import Settings
from centrala.tickets.agent_sessions import SignedIn
from centrala.tickets.agents import create_api_token, revoke_api_token
from centrala.tickets.api import SessionDep, SettingsDep
from centrala.tickets.models import (
    Agent,
    AgentRole,
    ApiToken,
    CustomFieldKind,
    Queue,
    ReplyTemplate,
    Team,
    TeamMember,
    TeamQueue,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.reply_templates import VARIABLES, save_template
from centrala.tickets.ticket_work import define_custom_field, field_definitions

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


def _require(current: SignedIn, *roles: AgentRole) -> None:
    if current.agent.role not in roles:
        raise PermissionDeniedError("this page is for " + " and ".join(f"{role.value}s" for role in roles))


# --- templates and macros --------------------------------------------------------------------------------------


@router.get("/templates")
def templates_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    edit: int | None = None,
    done: str | None = None,
) -> HTMLResponse:
    return _templates_page(
        request,
        session,
        settings,
        current,
        editing=session.get(ReplyTemplate, edit) if edit else None,
        done=done,
    )


def _templates_page(
    request: Request,
    session: Session,
    settings: Settings,
    current: SignedIn,
    *,
    editing: ReplyTemplate | None,
    done: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    """The templates with the form to write one, refilled with ``form`` after ``error``."""
    return render(
        request,
        settings,
        "templates.html",
        status_code=422 if error else 200,
        current=current,
        rows=session.scalars(select(ReplyTemplate).order_by(ReplyTemplate.name)).all(),
        variables=VARIABLES,
        editing=editing,
        statuses=list(TicketStatus),
        priorities=list(TicketPriority),
        done=done,
        error=error,
        form=form or {},
        may_write=current.agent.role in (AgentRole.SUPERVISOR, AgentRole.ADMIN),
    )


@router.post("/templates")
def template_save(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    name: Annotated[str, Form(max_length=200)] = "",
    body: Annotated[str, Form(max_length=40_000)] = "",
    set_status: Annotated[str, Form(max_length=20)] = "",
    set_priority: Annotated[str, Form(max_length=20)] = "",
    add_tags: Annotated[str, Form(max_length=1000)] = "",
    template_id: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Create a template, or change the one named by ``template_id``."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    _require(current, AgentRole.SUPERVISOR, AgentRole.ADMIN)
    existing = session.get(ReplyTemplate, int(template_id)) if template_id.isdigit() else None
    if template_id and existing is None:
        raise NotFoundError("no such template")
    try:
        saved = save_template(
            session=session,
            template=existing,
            name=name,
            body=body,
            set_status=set_status,
            set_priority=set_priority,
            add_tags=add_tags,
            now=clock.now(),
        )
    except (InvalidInputError, ConflictError) as error:
        session.rollback()
        return _templates_page(
            request,
            session,
            settings,
            current,
            editing=existing,
            error=str(error),
            form={
                "name": name,
                "body": body,
                "set_status": set_status,
                "set_priority": set_priority,
                "add_tags": add_tags,
            },
        )
    session.commit()
    return RedirectResponse(
        "/console/templates?" + urlencode({"done": f"Template “{saved.name}” saved."}), status_code=303
    )


@router.post("/templates/{template_id}/delete")
def template_delete(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    template_id: int,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    _require(current, AgentRole.SUPERVISOR, AgentRole.ADMIN)
    template = session.get(ReplyTemplate, template_id)
    if template is None:
        raise NotFoundError("no such template")
    session.delete(template)
    session.commit()
    return RedirectResponse("/console/templates?done=Template+deleted", status_code=303)


# --- admin: teams and custom fields -------------------------------------------------------------------------


@router.get("/admin")
def admin_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    done: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    _require(current, AgentRole.ADMIN)
    return render(
        request,
        settings,
        "admin.html",
        current=current,
        done=done,
        error=error,
        teams=session.scalars(select(Team).order_by(Team.name)).all(),
        agents=session.scalars(select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.name)).all(),
        queues=session.scalars(select(Queue).order_by(Queue.name)).all(),
        ticket_fields=field_definitions(session=session, entity="ticket"),
        contact_fields=field_definitions(session=session, entity="contact"),
        kinds=list(CustomFieldKind),
    )


def _admin_back(*, done: str | None = None, error: str | None = None) -> RedirectResponse:
    query = urlencode({key: value for key, value in (("done", done), ("error", error)) if value})
    return RedirectResponse("/console/admin" + (f"?{query}" if query else ""), status_code=303)


@router.post("/admin/teams")
def team_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    name: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    _require(current, AgentRole.ADMIN)
    name = " ".join(name.split())
    if not name or len(name) > 100:
        return _admin_back(error="A team needs a name of at most 100 characters.")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        return _admin_back(error=f"There is a team named {name} already.")
    session.add(Team(name=name, created_at=clock.now()))
    session.commit()
    return _admin_back(done=f"Team {name} created; now choose its members and queues.")


@router.post("/admin/teams/{team_id}")
def team_update(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    team_id: int,
    member: Annotated[list[int] | None, Form()] = None,
    queue: Annotated[list[int] | None, Form()] = None,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Set the team's members and queues to exactly those ticked."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    _require(current, AgentRole.ADMIN)
    team = session.get(Team, team_id)
    if team is None:
        raise NotFoundError("no such team")
    members = set(session.scalars(select(Agent.id).where(Agent.id.in_(member or []))))
    queues = set(session.scalars(select(Queue.id).where(Queue.id.in_(queue or []))))
    session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
    session.execute(delete(TeamQueue).where(TeamQueue.team_id == team.id))
    session.add_all([TeamMember(team_id=team.id, agent_id=agent_id) for agent_id in sorted(members)])
    session.add_all([TeamQueue(team_id=team.id, queue_id=queue_id) for queue_id in sorted(queues)])
    session.commit()
    log.info(
        "agent %s set team %s: %d members, %d queues", current.agent.id, team.id, len(members), len(queues)
    )
    return _admin_back(done=f"Team {team.name}: {len(members)} members, {len(queues)} queues.")


@router.post("/admin/fields")
def field_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    entity: Annotated[str, Form(max_length=16)] = "ticket",
    key: Annotated[str, Form(max_length=100)] = "",
    label: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=16)] = "text",
    choices: Annotated[str, Form(max_length=5000)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    _require(current, AgentRole.ADMIN)
    try:
        field = define_custom_field(
            session=session, entity=entity, key=key, label=label, kind=kind, choices=choices.splitlines()
        )
    except (InvalidInputError, ConflictError) as error:
        session.rollback()
        return _admin_back(error=str(error))
    session.commit()
    return _admin_back(done=f"Field {field.label} added to {entity}s.")


# --- the agent's own account: API tokens ----------------------------------------------------------------------


@router.get("/account")
def account_page(
    request: Request, session: SessionDep, settings: SettingsDep, current: SignedInDep
) -> HTMLResponse:
    return _account_page(request, session, settings, current)


def _account_page(
    request: Request,
    session: Session,
    settings: Settings,
    current: SignedIn,
    *,
    created: ApiToken | None = None,
    secret: str | None = None,
) -> HTMLResponse:
    """The tokens the agent may see (an admin: everyone's), live ones first; ``secret`` shown once after making
    ``created``."""
    statement = select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc())
    if current.agent.role is not AgentRole.ADMIN:
        statement = statement.where(ApiToken.agent_id == current.agent.id)
    return render(
        request,
        settings,
        "account.html",
        current=current,
        tokens=session.scalars(statement).all(),
        secret=secret,
        created=created,
        error=None,
    )


@router.post("/account/tokens")
def token_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    name: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Make a token for the signed-in agent and show it once, on this response only (never stored)."""
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    try:
        created, secret = create_api_token(session=session, agent=current.agent, name=name, now=clock.now())
    except InvalidInputError as error:
        session.rollback()
        return error_page(request, settings, 422, str(error))
    session.commit()
    log.info("agent %s created API token %s", current.agent.id, created.id)
    return _account_page(request, session, settings, current, created=created, secret=secret)


@router.post("/account/tokens/{token_id}/revoke")
def token_revoke(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    current: SignedInDep,
    token_id: int,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refused = _check_post(request, settings, current, csrf)
    if refused is not None:
        return refused
    token = session.get(ApiToken, token_id)
    if token is None or (token.agent_id != current.agent.id and current.agent.role is not AgentRole.ADMIN):
        raise NotFoundError("no such token")
    revoke_api_token(session=session, token=token, now=clock.now())
    session.commit()
    log.info("agent %s revoked API token %s", current.agent.id, token.id)
    return RedirectResponse("/console/account", status_code=303)

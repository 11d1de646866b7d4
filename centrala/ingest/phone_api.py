"""Calls in the API: the caller log with its KPIs, one call, the screen-pop, notes, click-to-call, agents'
availability and queues, and the live event stream (server-sent events) that pushes screen-pops."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_read_sessionmaker
from centrala.core.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from centrala.core.ids import BodyId, PathId, QueryId
from centrala.core.live import event_stream_response
from centrala.ingest.calls import lock_call
from centrala.telephony.client import TwilioClient, make_twilio_client
from centrala.tickets.agents import authenticate_token
from centrala.tickets.api import CurrentAgentDep, SessionDep, SettingsDep, get_current_agent
from centrala.tickets.contacts import normalise_phone
from centrala.tickets.models import (
    Agent,
    AgentAvailability,
    AgentQueue,
    AgentRole,
    Contact,
    Queue,
    Ticket,
    format_ticket_number,
)
from centrala.tickets.phone import CallerLog, caller_log, format_number, log_call, screen_pop
from centrala.tickets.phone_models import Call, CallbackState, CallerMatch

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_current_agent)], tags=["calls"])
live_router = APIRouter(prefix="/api/v1", tags=["calls"])
_bearer = HTTPBearer(auto_error=False, description="An agent's API token")

CallSid = Annotated[str, Path(pattern=r"^CA[0-9a-fA-F]{32}$", description="Twilio's CallSid")]

_fake_clients: dict[int, TwilioClient] = {}


def get_twilio_client(settings: SettingsDep) -> TwilioClient:
    """The Twilio REST client (a dependency, so that tests can see what was asked of it).

    The fake backend's client lives as long as the settings, so the requests it recorded can be inspected.
    """
    if settings.twilio_backend == "fake":
        return _fake_clients.setdefault(id(settings), make_twilio_client(backend="fake"))
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    return make_twilio_client(
        backend="twilio",
        account_sid=settings.twilio_account_sid,
        auth_token=token,
        api_host=settings.twilio_api_host,
    )


TwilioDep = Annotated[TwilioClient, Depends(get_twilio_client)]


# --- shapes -----------------------------------------------------------------------------------------------------


class CallbackRead(BaseModel):
    state: CallbackState
    due_at: datetime | None
    done_at: datetime | None


class CallRead(BaseModel):
    call_sid: str
    direction: str
    from_number: str | None
    to_number: str | None
    caller_display: str = Field(description="The other party's number as people write it")
    line: str | None
    queue: str | None
    agent_id: int | None
    agent_name: str | None
    state: str
    outcome: str | None = Field(
        description="answered, missed, voicemail, busy or failed, once the call ended"
    )
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    ring_seconds: int | None
    wait_seconds: int | None
    talk_seconds: int | None
    recording_duration: int | None
    recording_download: str | None = Field(description="Our download URL of the recording, once stored")
    transcription: str | None
    caller_match: CallerMatch
    contact_id: int | None
    contact_name: str | None
    candidate_contact_ids: list[int]
    ticket_id: int | None
    ticket_number: str | None
    note: str
    agent_outcome: str | None
    callback: CallbackRead | None

    @classmethod
    def from_call(cls, call: Call) -> CallRead:
        other = call.from_number if call.direction == "inbound" else call.to_number
        return cls(
            call_sid=call.call_sid,
            direction=call.direction,
            from_number=call.from_number,
            to_number=call.to_number,
            caller_display=format_number(other) if other else (call.from_raw or "unknown"),
            line=call.line_number,
            queue=call.queue.name if call.queue else None,
            agent_id=call.agent_id,
            agent_name=(call.agent.name or call.agent.email) if call.agent else None,
            state=call.state,
            outcome=call.outcome,
            started_at=call.started_at,
            answered_at=call.answered_at,
            ended_at=call.ended_at,
            ring_seconds=call.ring_seconds,
            wait_seconds=call.wait_seconds,
            talk_seconds=call.talk_seconds,
            recording_duration=call.recording_duration,
            recording_download=f"/api/v1/calls/{call.call_sid}/recording" if call.recording_sha256 else None,
            transcription=call.transcription_text,
            caller_match=call.caller_match,
            contact_id=call.contact_id,
            contact_name=call.contact.name if call.contact else None,
            candidate_contact_ids=list(call.candidate_contact_ids),
            ticket_id=call.ticket_id,
            ticket_number=format_ticket_number(call.ticket_id) if call.ticket_id else None,
            note=call.note,
            agent_outcome=call.agent_outcome,
            callback=(
                CallbackRead(
                    state=call.callback_state, due_at=call.callback_due_at, done_at=call.callback_done_at
                )
                if call.callback_state
                else None
            ),
        )


class CallerLogRead(BaseModel):
    calls: list[CallRead]
    total_inbound: int = Field(description="Ended inbound calls matching the filters")
    answered: int
    answer_rate: float | None
    average_wait_seconds: float | None
    missed_not_called_back: int

    @classmethod
    def from_log(cls, log_: CallerLog) -> CallerLogRead:
        return cls(
            calls=[CallRead.from_call(call) for call in log_.calls],
            total_inbound=log_.total,
            answered=log_.answered,
            answer_rate=log_.answer_rate,
            average_wait_seconds=log_.average_wait_seconds,
            missed_not_called_back=log_.missed_not_called_back,
        )


class CallUpdate(BaseModel):
    note: str | None = Field(default=None, max_length=10_000)
    agent_outcome: str | None = Field(default=None, max_length=40)
    contact_id: BodyId | None = Field(default=None, description="Who really called, when the number is shared")
    callback: Literal["done", "cancelled"] | None = None


class CallCreate(BaseModel):
    """Click-to-call: Twilio calls the customer from our line and, once they pick up, rings you."""

    # Ids bounded as database ids are: PostgreSQL refused a larger one with an error (a 500).
    contact_id: BodyId | None = None
    number: str | None = Field(default=None, max_length=40, description="Instead of a contact: any number")
    ticket_id: BodyId | None = None
    line: str | None = Field(default=None, description="Our number to call from; the first configured line")
    callback_for: str | None = Field(default=None, description="The CallSid of the missed call this returns")


class AvailabilityUpdate(BaseModel):
    availability: AgentAvailability
    phone_number: str | None = Field(
        default=None,
        max_length=40,
        description="Ring this phone instead of the browser; empty string clears it",
    )


class AgentPhoneRead(BaseModel):
    id: int
    availability: AgentAvailability
    phone_number: str | None
    client_identity: str
    queues: list[str]

    @classmethod
    def from_agent(cls, agent: Agent) -> AgentPhoneRead:
        return cls(
            id=agent.id,
            availability=agent.availability,
            phone_number=agent.phone_number,
            client_identity=agent.client_identity,
            queues=[queue.name for queue in agent.queues],
        )


class QueueMembership(BaseModel):
    queues: list[str] = Field(max_length=100)


# --- calls -----------------------------------------------------------------------------------------------------


@router.get("/calls")
def list_calls(
    session: SessionDep,
    queue: str | None = None,
    agent_id: QueryId | None = None,
    outcome: Literal["answered", "missed", "voicemail", "busy", "failed"] | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CallerLogRead:
    """The caller log: recent calls, newest first, and KPIs (answer rate, average wait, missed calls not called
    back) over every call matching the filters."""
    queue_id = None
    if queue is not None:
        queue_id = session.scalar(select(Queue.id).where(Queue.name == queue))
        if queue_id is None:
            raise NotFoundError(f"no queue {queue!r}")
    return CallerLogRead.from_log(
        caller_log(
            session=session, queue_id=queue_id, agent_id=agent_id, outcome=outcome, since=since, limit=limit
        )
    )


def _call_or_404(session: SessionDep, call_sid: str) -> Call:
    call = session.scalar(select(Call).where(Call.call_sid == call_sid))
    if call is None:
        raise NotFoundError(f"no call {call_sid}")
    return call


@router.get("/calls/{call_sid}")
def get_call(session: SessionDep, call_sid: CallSid) -> CallRead:
    """One call with its state, outcome, figures, contact, ticket and call-back."""
    return CallRead.from_call(_call_or_404(session, call_sid))


@router.get("/calls/{call_sid}/screen-pop")
def get_screen_pop(session: SessionDep, call_sid: CallSid) -> dict[str, object]:
    """The screen-pop of a call, as pushed to the agents being rung: the caller's contact(s), organisation,
    open tickets with SLA state, last interactions and suggested next steps."""
    return screen_pop(session=session, call=_call_or_404(session, call_sid), now=clock.now())


@router.patch("/calls/{call_sid}")
def update_call(
    session: SessionDep, settings: SettingsDep, agent: CurrentAgentDep, call_sid: CallSid, change: CallUpdate
) -> CallRead:
    """Write the call's note and outcome, say who really called, or settle its call-back."""
    call = _call_or_404(session, call_sid)
    now = clock.now()
    if change.note is not None:
        call.note = change.note
    if change.agent_outcome is not None:
        call.agent_outcome = change.agent_outcome or None
    if change.contact_id is not None:
        contact = session.get(Contact, change.contact_id)
        if contact is None:
            raise InvalidInputError(f"no contact {change.contact_id}")
        call.contact_id = contact.id
        call.caller_match = CallerMatch.SINGLE
        if call.interaction is not None:
            call.interaction.contact_id = contact.id
            call.interaction.flag = None
    if change.callback is not None:
        if call.callback_state is None:
            raise InvalidInputError("this call has no call-back to settle")
        call.callback_state = CallbackState(change.callback)
        call.callback_done_at = now
    call.updated_at = now
    log_call(session=session, call=call, now=now, settings=settings)
    session.commit()
    return CallRead.from_call(call)


@router.get("/calls/{call_sid}/recording", response_class=Response)
def download_recording(session: SessionDep, settings: SettingsDep, call_sid: CallSid) -> Response:
    """The call's recording (MP3), as a file to save."""
    call = _call_or_404(session, call_sid)
    if call.recording_sha256 is None:
        raise NotFoundError("the recording is not stored (yet)")
    return Response(
        content=BlobStore(settings.blob_dir).get(call.recording_sha256),
        media_type="audio/mpeg",
        headers={
            "Content-Disposition": f'attachment; filename="call-{call.id}.mp3"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/calls", status_code=201)
def place_call(
    session: SessionDep, settings: SettingsDep, agent: CurrentAgentDep, twilio: TwilioDep, request: CallCreate
) -> CallRead:
    """Click-to-call from a contact, a ticket or a missed call: Twilio calls the customer from our line and
    rings you when they pick up. The call is logged like any other."""
    now = clock.now()
    if not settings.phone_lines:
        raise InvalidInputError("no phone line is configured (CENTRALA_PHONE_LINES)")
    line = settings.phone_line(request.line) if request.line else settings.phone_lines[0]
    if line is None:
        raise InvalidInputError(f"{request.line} is not one of our phone lines")
    returned: Call | None = None
    if request.callback_for:
        returned = session.scalar(select(Call).where(Call.call_sid == request.callback_for))
        if returned is None:
            raise InvalidInputError(f"no call {request.callback_for} to call back")
    contact_id = request.contact_id or (returned.contact_id if returned else None)
    ticket = session.get(Ticket, request.ticket_id) if request.ticket_id else None
    if request.ticket_id and ticket is None:
        raise InvalidInputError(f"no ticket {request.ticket_id}")
    if ticket is None and returned is not None and returned.ticket_id:
        ticket = session.get(Ticket, returned.ticket_id)
    if contact_id is None and ticket is not None:
        contact_id = ticket.contact_id
    contact = session.get(Contact, contact_id) if contact_id else None
    if contact_id and contact is None:
        raise InvalidInputError(f"no contact {contact_id}")
    number = request.number or (returned.from_number if returned else None)
    if number is None and contact is not None and contact.phones:
        number = contact.phones[0].number
    if number is None:
        raise InvalidInputError("nobody to call: give a number, or a contact with a phone number")
    number = normalise_phone(number, settings.default_region)
    base = settings.public_url.rstrip("/")
    call_sid = twilio.place_callback_call(
        to=number,
        from_=line.number,
        url=f"{base}/twilio/voice?agent={agent.id}",
        status_callback=f"{base}/twilio/status",
    )
    call = lock_call(session=session, call_sid=call_sid, now=now)
    call.direction = "outbound"
    call.to_number = number
    call.from_number = line.number
    call.line_number = line.number
    call.agent_id = agent.id
    call.contact_id = contact.id if contact else None
    call.caller_match = CallerMatch.SINGLE if contact else CallerMatch.WITHHELD
    call.candidate_contact_ids = [contact.id] if contact else []
    call.ticket_id = ticket.id if ticket else None
    call.queue_id = ticket.queue_id if ticket else (returned.queue_id if returned else None)
    call.callback_for_call_id = returned.id if returned else None
    call.started_at = call.started_at or now
    call.updated_at = now
    try:
        session.commit()
    except IntegrityError:  # pragma: no cover - lock_call makes the row exist exactly once
        session.rollback()
        raise
    return CallRead.from_call(call)


# --- agents' telephony ------------------------------------------------------------------------------------------


@router.get("/agents/me/phone")
def get_my_phone(agent: CurrentAgentDep) -> AgentPhoneRead:
    """Your availability, phone, browser client identity and queues."""
    return AgentPhoneRead.from_agent(agent)


@router.put("/agents/me/availability")
def set_my_availability(
    session: SessionDep, settings: SettingsDep, agent: CurrentAgentDep, change: AvailabilityUpdate
) -> AgentPhoneRead:
    """Go available (rung for your queues' calls), busy or offline; optionally ring a phone instead of the
    browser."""
    agent.availability = change.availability
    if change.phone_number is not None:
        agent.phone_number = (
            normalise_phone(change.phone_number, settings.default_region) if change.phone_number else None
        )
    session.commit()
    return AgentPhoneRead.from_agent(agent)


@router.put("/agents/{agent_id}/queues")
def set_agent_queues(
    session: SessionDep,
    agent: CurrentAgentDep,
    agent_id: PathId,
    membership: QueueMembership,
) -> AgentPhoneRead:
    """Which queues' calls ring the agent (admins and supervisors); unknown queue names are created."""
    if agent.role not in (AgentRole.ADMIN, AgentRole.SUPERVISOR):
        raise PermissionDeniedError("only supervisors and admins set queue membership")
    member = session.get(Agent, agent_id)
    if member is None:
        raise NotFoundError(f"no agent {agent_id}")
    names = list(dict.fromkeys(name.strip() for name in membership.queues if name.strip()))
    queues = []
    for name in names:
        queue = session.scalar(select(Queue).where(Queue.name == name))
        if queue is None:
            queue = Queue(name=name[:100])
            session.add(queue)
            session.flush()
        queues.append(queue)
    session.execute(AgentQueue.__table__.delete().where(AgentQueue.agent_id == member.id))
    for queue in queues:
        session.add(AgentQueue(agent_id=member.id, queue_id=queue.id))
    session.commit()
    session.refresh(member)
    return AgentPhoneRead.from_agent(member)


# --- live events --------------------------------------------------------------------------------------------------


def live_agent_id(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> int:
    """The agent of a live stream, authenticated with a session closed at once (a stream lasts hours and
    must not hold a database connection)."""
    if credentials is None:
        raise AuthenticationError("an Authorization: Bearer <token> header is required")
    with get_read_sessionmaker()() as session:
        return authenticate_token(session=session, token=credentials.credentials).id


@live_router.get("/live", response_class=StreamingResponse)
async def live_events(
    request: Request, settings: SettingsDep, agent_id: Annotated[int, Depends(live_agent_id)]
) -> StreamingResponse:
    """Your live events as server-sent events: ``screen-pop`` when a call rings you (the same JSON as
    ``/calls/{call_sid}/screen-pop``), ``call-ended`` when it ends. The stream opens with the comment
    ``: connected`` once it is subscribed; a comment every 15 s keeps the line open."""
    return event_stream_response(request, settings, agent_id)

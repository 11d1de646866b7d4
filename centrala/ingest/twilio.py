"""Twilio voice webhooks: verify the signature, store the event raw, answer TwiML at once.

Every request must carry Twilio's signature over ``CENTRALA_PUBLIC_URL`` + path + query (a proxy in front of
us changes the URL we see, never the one Twilio signed); anything else gets 403 and is not stored. A signed
request is stored before it is answered, unique on its natural key (Twilio's retries and duplicates are one
row), and processed by a worker. A signed form we cannot read is stored as quarantined, and the caller still
hears something sensible.

The answer to a call is decided here, from configuration and the agents' availability: a menu, ring the
queue's available agents, or voicemail when nobody is available or the line's business hours are over.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.db import begin_quick_write, get_db, get_read_db, get_sessionmaker
from centrala.core.errors import InvalidInputError
from centrala.core.phone_lines import PhoneLine
from centrala.core.queue import enqueue_after_commit
from centrala.core.settings import Settings
from centrala.ingest.calls import PROCESS_JOB
from centrala.ingest.models import CallEventRecord, InboundStatus
from centrala.ingest.twilio_spool import spool_event
from centrala.telephony import twiml
from centrala.telephony.events import (
    CallDirection,
    CallEvent,
    CallEventKind,
    call_key,
    event_key,
    parse_call_event,
)
from centrala.telephony.signature import SIGNATURE_HEADER, verify_twilio_request
from centrala.tickets.api import get_app_settings
from centrala.tickets.models import Agent, BusinessCalendarRow
from centrala.tickets.phone import agents_to_ring, queue_by_name
from centrala.tickets.phone_models import Call
from centrala.tickets.sla import is_open

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio", tags=["twilio webhooks"], include_in_schema=False)

XML = "application/xml"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
MAX_FORM_FIELDS = 200
# Twilio's forms are a few KB (a transcription is the longest part).
MAX_BODY_BYTES = 256 * 1024

SessionDep = Annotated[Session, Depends(get_db)]
ReadSessionDep = Annotated[Session, Depends(get_read_db)]
# A webhook's write waits this long for a locked database before the event goes to the spool: Twilio waits for
# the answer, and a caller hears silence meanwhile.
WEBHOOK_LOCK_TIMEOUT_MS = 500
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


@router.post("/{kind}")
async def twilio_webhook(
    kind: str, request: Request, session: SessionDep, reader: ReadSessionDep, settings: SettingsDep
) -> Response:
    """One webhook: ``voice``, ``status``, ``dial-result``, ``recording`` or ``transcription``."""
    if kind not in set(CallEventKind):
        return Response("unknown webhook\n", status_code=404, media_type="text/plain")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return Response("request too large\n", status_code=413, media_type="text/plain")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return Response("not a form\n", status_code=400, media_type="text/plain")
    query = request.scope.get("query_string", b"").decode("latin-1")
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    if not token:
        log.warning("Twilio webhook refused: CENTRALA_TWILIO_AUTH_TOKEN is not set")
    if not verify_twilio_request(
        auth_token=token,
        public_url=settings.public_url,
        path=request.url.path,
        query=query,
        form=pairs,
        signature=request.headers.get(SIGNATURE_HEADER),
    ):
        return Response("forbidden: not signed by Twilio\n", status_code=403, media_type="text/plain")
    values = dict(pairs)
    params = dict(request.query_params)
    return await _run_sync(_handle, session, reader, settings, kind, values, params)


async def _run_sync(func, *args):  # type: ignore[no-untyped-def]
    """Run blocking database work off the event loop (the route reads the form asynchronously)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(func, *args)


def _handle(
    session: Session,
    reader: Session,
    settings: Settings,
    kind: str,
    form: dict[str, str],
    params: dict[str, str],
) -> Response:
    """Decide the answer from what is committed (``reader`` never waits for a writer), store the event, answer.

    When the database does not take the write within ``WEBHOOK_LOCK_TIMEOUT_MS`` (locked, restarting), the
    event goes to the spool and the caller still gets the answer at once.
    """
    now = clock.now()
    try:
        event = parse_call_event(
            kind, form, default_region=settings.default_region, queue=params.get("queue")
        )
    except InvalidInputError as error:
        log.warning("unreadable Twilio %s webhook quarantined: %s", kind, error)
        reason = str(error)
        answer = twiml.say_and_hangup(language="en") if kind == CallEventKind.VOICE else EMPTY_TWIML
        _write_or_spool(
            session,
            settings,
            kind,
            form,
            params,
            {},
            now,
            lambda: _store_unreadable(session=session, kind=kind, form=form, reason=reason, now=now),
        )
        return _twiml(answer)
    answer, context = _answer(session=reader, settings=settings, event=event, params=params, now=now)
    reader.rollback()
    _write_or_spool(
        session,
        settings,
        kind,
        form,
        params,
        context,
        now,
        lambda: _store(session=session, event=event, context=context, now=now),
    )
    return _twiml(answer)


def _write_or_spool(
    session: Session,
    settings: Settings,
    kind: str,
    form: dict[str, str],
    params: dict[str, str],
    context: dict[str, object],
    now: datetime,
    write: Callable[[], None],
) -> None:
    try:
        begin_quick_write(session, WEBHOOK_LOCK_TIMEOUT_MS)
        write()
        session.commit()
    except OperationalError as error:
        session.rollback()
        path = spool_event(settings, kind=kind, form=form, params=params, context=context, received_at=now)
        log.warning(
            "database busy (%s): Twilio %s event spooled as %s", type(error.orig).__name__, kind, path.name
        )


def store_spooled(item: dict[str, object], settings: Settings) -> None:
    """Store one spooled event (see ``twilio_spool``), as the webhook would have."""
    kind, form = str(item["kind"]), dict(item["form"])  # type: ignore[call-overload]
    params = dict(item.get("params") or {})  # type: ignore[call-overload]
    received_at = datetime.fromisoformat(str(item["received_at"]))
    with get_sessionmaker()() as session:
        try:
            event = parse_call_event(
                kind, form, default_region=settings.default_region, queue=params.get("queue")
            )
        except InvalidInputError as error:
            _store_unreadable(session=session, kind=kind, form=form, reason=str(error), now=received_at)
        else:
            _store(session=session, event=event, context=dict(item.get("context") or {}), now=received_at)  # type: ignore[call-overload]
        session.commit()


def _twiml(body: str) -> Response:
    return Response(body, media_type=XML)


# --- storing ----------------------------------------------------------------------------------------------------


def _store(*, session: Session, event: CallEvent, context: dict[str, object], now: datetime) -> None:
    """Insert the event unless it is stored already (a retry or duplicate: nothing to do)."""
    record = CallEventRecord(
        event_key=event_key(event),
        call_sid=call_key(event),
        kind=event.kind.value,
        form=dict(event.form),
        context=context,
        received_at=now,
        queued_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        log.info("duplicate Twilio event %s ignored", record.event_key)
        return
    enqueue_after_commit(session, PROCESS_JOB, record.id)


def _store_unreadable(
    *, session: Session, kind: str, form: dict[str, str], reason: str, now: datetime
) -> None:
    call_sid = (form.get("CallSid") or "unknown")[:34]
    digest = hashlib.sha256(repr(sorted(form.items())).encode()).hexdigest()[:40]
    record = CallEventRecord(
        event_key=f"{call_sid}:{kind[:16]}:bad:{digest}"[:200],
        call_sid=call_sid,
        kind=kind[:16],
        form=form,
        context={},
        received_at=now,
        status=InboundStatus.QUARANTINED,
        reason=reason[:2000],
        processed_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        pass


# --- what the caller hears --------------------------------------------------------------------------------------


def _answer(
    *, session: Session, settings: Settings, event: CallEvent, params: dict[str, str], now: datetime
) -> tuple[str, dict[str, object]]:
    """The TwiML for this request and the context to store with it (queue, line, agents rung)."""
    context: dict[str, object] = {}
    if event.queue:
        context["queue"] = event.queue
    if event.is_dialed_leg:
        context["parent_call_sid"] = event.parent_call_sid
    if event.kind is CallEventKind.VOICE:
        if event.direction is CallDirection.OUTBOUND_API:
            return _connect_placed_call(session=session, settings=settings, event=event), context
        answer = _answer_inbound(
            session=session, settings=settings, event=event, params=params, now=now, context=context
        )
        return answer, context
    if event.kind is CallEventKind.DIAL_RESULT:
        if event.dial_call_status is not None and event.dial_call_status.connected:
            return _hangup(), context
        line = _line(settings, event)
        return _voicemail(settings, line, queue=event.queue, closed=False), context
    if event.kind is CallEventKind.RECORDING and params.get("step") == "action":
        line = _line(settings, event)
        return twiml.say_and_hangup(language=line.language), context
    return EMPTY_TWIML, context


def _answer_inbound(
    *,
    session: Session,
    settings: Settings,
    event: CallEvent,
    params: dict[str, str],
    now: datetime,
    context: dict[str, object],
) -> str:
    line = _line(settings, event)
    context["line"] = line.number
    if not _line_is_open(session=session, line=line, now=now):
        context["queue"] = line.queue
        return _voicemail(settings, line, queue=line.queue, closed=True)
    if line.menu and params.get("menu") != "1":
        return twiml.ivr_menu(
            language=line.language,
            options={key: option.label for key, option in line.menu.items()},
            action_url=_url(settings, "/twilio/voice", menu="1"),
        )
    queue_name = line.queue_for_digits(event.digits) if line.menu else (event.queue or line.queue)
    context["queue"] = queue_name
    queue = queue_by_name(session=session, name=queue_name)
    if queue_name and queue is None:
        log.warning(
            "phone line %s names queue %r, which does not exist: ringing nobody", line.number, queue_name
        )
        return _voicemail(settings, line, queue=queue_name, closed=False)
    agents = agents_to_ring(session=session, queue=queue)
    if not agents:
        return _voicemail(settings, line, queue=queue_name, closed=False)
    context["rung_agent_ids"] = [agent.id for agent in agents]
    return twiml.greeting_and_dial(
        language=line.language,
        clients=[agent.client_identity for agent in agents if not agent.phone_number],
        phone_numbers=[agent.phone_number for agent in agents if agent.phone_number],
        timeout_seconds=line.dial_timeout_seconds,
        action_url=_url(settings, "/twilio/dial-result", queue=queue_name),
        greeting_text=line.greeting,
        leg_status_callback=_url(settings, "/twilio/status", queue=queue_name),
    )


def _connect_placed_call(*, session: Session, settings: Settings, event: CallEvent) -> str:
    """A call we placed (click-to-call) was picked up: ring the agent who placed it."""
    call = session.scalar(select(Call).where(Call.call_sid == event.call_sid))
    agent = session.get(Agent, call.agent_id) if call is not None and call.agent_id else None
    line = _line(settings, event)
    if agent is None:
        return twiml.say_and_hangup(language=line.language)
    return twiml.greeting_and_dial(
        language=line.language,
        clients=[] if agent.phone_number else [agent.client_identity],
        phone_numbers=[agent.phone_number] if agent.phone_number else [],
        timeout_seconds=line.dial_timeout_seconds,
        action_url=_url(settings, "/twilio/dial-result", placed="1"),
        leg_status_callback=_url(settings, "/twilio/status"),
    )


def _voicemail(settings: Settings, line: PhoneLine, *, queue: str | None, closed: bool) -> str:
    return twiml.voicemail(
        language=line.language,
        max_length_seconds=line.voicemail_max_seconds,
        recording_status_callback=_url(settings, "/twilio/recording", queue=queue),
        action_url=_url(settings, "/twilio/recording", step="action", queue=queue),
        prompt=twiml.default_text("closed", line.language) if closed else None,
        transcribe_callback=_url(settings, "/twilio/transcription", queue=queue),
    )


def _hangup() -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'


def _line(settings: Settings, event: CallEvent) -> PhoneLine:
    """The configured line the call is on; an unconfigured number gets the defaults (English, any agent)."""
    ours = event.to_number if event.direction in (None, CallDirection.INBOUND) else event.from_number
    line = settings.phone_line(ours)
    if line is not None:
        return line
    return PhoneLine.model_construct(
        number=ours or "",
        queue=None,
        language="en",
        greeting=None,
        calendar=None,
        dial_timeout_seconds=20,
        voicemail_max_seconds=120,
        menu={},
    )


def _line_is_open(*, session: Session, line: PhoneLine, now: datetime) -> bool:
    if not line.calendar:
        return True
    row = session.scalar(select(BusinessCalendarRow).where(BusinessCalendarRow.name == line.calendar))
    if row is None:
        log.warning(
            "phone line %s names calendar %r, which does not exist: treated as open",
            line.number,
            line.calendar,
        )
        return True
    return is_open(now, row.to_calendar())


def _url(settings: Settings, path: str, **query: str | None) -> str:
    values = {name: value for name, value in query.items() if value}
    return settings.public_url.rstrip("/") + path + ("?" + urlencode(values) if values else "")

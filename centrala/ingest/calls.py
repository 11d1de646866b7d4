"""Twilio call events: stored raw by the webhook routes, then processed here into the call, the contact's
timeline and tickets, and the screen-pop.

A call's row is the state machine's snapshot of *all* its stored events, replayed in any order each time one
is processed, so shuffled, late and repeated callbacks give the same call. Each event is processed under a
lock on its call's row, so two workers never interleave on one call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq import Retry
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrala.core.errors import InvalidInputError
from centrala.core.live import LiveEvent, publish_after_commit
from centrala.core.queue import enqueue_after_commit
from centrala.core.settings import Settings
from centrala.ingest.models import CallEventRecord, InboundStatus
from centrala.telephony.calls import CallSnapshot, replay_events
from centrala.telephony.events import CallEvent, CallEventKind, call_key, parse_call_event
from centrala.tickets.phone import agent_for_identity, log_call, match_caller, queue_by_name, screen_pop
from centrala.tickets.phone_models import Call, CallerMatch

log = logging.getLogger(__name__)

PROCESS_JOB = "centrala.workers.jobs.process_call_event"
FETCH_RECORDING_JOB = "centrala.workers.jobs.fetch_call_recording"
# Twilio may need a moment to store a recording it just announced: retry soon, then with longer waits.
RECORDING_RETRY_INTERVALS = [2, 10, 60, 300, 1800]


@dataclass(frozen=True)
class CallEventOutcome:
    status: InboundStatus
    call_sid: str | None = None
    state: str | None = None
    outcome: str | None = None
    reason: str | None = None


def parse_record(record: CallEventRecord, settings: Settings) -> CallEvent:
    """The stored webhook form read again; raises InvalidInputError as the route's parse did."""
    queue = record.context.get("queue") if isinstance(record.context, dict) else None
    return parse_call_event(
        record.kind, record.form, default_region=settings.default_region, queue=str(queue) if queue else None
    )


def process_call_event(
    *, session: Session, event_id: int, now: datetime, settings: Settings
) -> CallEventOutcome:
    """Apply one stored event to its call; an event already processed or quarantined changes nothing."""
    record = session.get(CallEventRecord, event_id)
    if record is None:
        return CallEventOutcome(InboundStatus.QUARANTINED, reason="missing")
    if record.status is not InboundStatus.RECEIVED:
        return CallEventOutcome(record.status, call_sid=record.call_sid)
    try:
        event = parse_record(record, settings)
    except InvalidInputError as error:
        return _quarantine(record, f"invalid webhook: {error}", now)
    call = lock_call(session=session, call_sid=call_key(event), now=now)
    # Re-read under the call's lock: another worker may have processed this event meanwhile.
    session.refresh(record)
    if record.status is not InboundStatus.RECEIVED:
        return CallEventOutcome(record.status, call_sid=call.call_sid)
    record.status = InboundStatus.PROCESSED
    record.processed_at = now
    record.attempts += 1

    was_terminal = call.outcome is not None
    snapshot = _replay(session=session, call_sid=call.call_sid, settings=settings)
    if snapshot is None:  # cannot happen: this event is stored
        return CallEventOutcome(InboundStatus.PROCESSED, call_sid=call.call_sid)
    _apply_context(session=session, call=call, records=[record])
    _apply_snapshot(session=session, call=call, snapshot=snapshot, now=now)
    if call.caller_match is CallerMatch.WITHHELD and call.contact_id is None and call.direction == "inbound":
        result = match_caller(session=session, number=call.from_number, caller_name=call.caller_name, now=now)
        call.caller_match = result.match
        call.contact_id = result.contact.id if result.contact else None
        call.candidate_contact_ids = [contact.id for contact in result.candidates]
    session.flush()

    if (
        event.kind is CallEventKind.VOICE
        and not snapshot.is_terminal
        and record.context.get("rung_agent_ids")
    ):
        rung = [int(agent_id) for agent_id in record.context["rung_agent_ids"]]
        pop = screen_pop(session=session, call=call, now=now)
        publish_after_commit(session, rung, LiveEvent("screen-pop", pop))
    if snapshot.is_terminal:
        log_call(session=session, call=call, now=now, settings=settings)
        if not was_terminal and call.rung_agent_ids:
            publish_after_commit(
                session,
                list(call.rung_agent_ids),
                LiveEvent("call-ended", {"call_sid": call.call_sid, "outcome": call.outcome}),
            )
    if call.recording_url and call.recording_sha256 is None and _recording_ready(snapshot):
        enqueue_recording_fetch(session, call.id)
    return CallEventOutcome(
        InboundStatus.PROCESSED, call_sid=call.call_sid, state=call.state, outcome=call.outcome
    )


def _quarantine(record: CallEventRecord, reason: str, now: datetime) -> CallEventOutcome:
    record.status = InboundStatus.QUARANTINED
    record.reason = reason[:2000]
    record.processed_at = now
    log.warning("call event %s quarantined: %s", record.id, reason)
    return CallEventOutcome(InboundStatus.QUARANTINED, call_sid=record.call_sid, reason=record.reason)


def lock_call(*, session: Session, call_sid: str, now: datetime) -> Call:
    """The call's row, created when missing, locked until the transaction ends (SQLite: the writer lock)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Call)
        .values(
            call_sid=call_sid,
            direction="inbound",
            state="ringing",
            rung_agent_ids=[],
            candidate_contact_ids=[],
            caller_match=CallerMatch.WITHHELD,
            note="",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_sid"])
    )
    statement = select(Call).where(Call.call_sid == call_sid).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement).one()


def _replay(*, session: Session, call_sid: str, settings: Settings) -> CallSnapshot | None:
    records = list(
        session.scalars(
            select(CallEventRecord).where(
                CallEventRecord.status == InboundStatus.PROCESSED,
                CallEventRecord.call_sid == call_sid,
            )
        )
    )
    events = []
    for record in records:
        try:
            event = parse_record(record, settings)
        except InvalidInputError:
            continue
        if call_key(event) == call_sid:
            events.append(event)
    return replay_events(events)


def _apply_context(*, session: Session, call: Call, records: list[CallEventRecord]) -> None:
    for record in records:
        context = record.context or {}
        if context.get("queue") and call.queue_id is None:
            queue = queue_by_name(session=session, name=str(context["queue"]))
            call.queue_id = queue.id if queue else None
        if context.get("line") and call.line_number is None:
            call.line_number = str(context["line"])
        rung = [int(agent_id) for agent_id in context.get("rung_agent_ids") or []]
        if rung:
            call.rung_agent_ids = sorted({*call.rung_agent_ids, *rung})


def _apply_snapshot(*, session: Session, call: Call, snapshot: CallSnapshot, now: datetime) -> None:
    call.direction = (
        "inbound" if snapshot.direction is None or snapshot.direction.value == "inbound" else "outbound"
    )
    call.from_number = snapshot.from_number
    call.from_raw = (snapshot.from_raw or "")[:200] or None
    call.to_number = snapshot.to_number
    call.caller_name = (snapshot.caller_name or "")[:200] or None
    if call.line_number is None:
        call.line_number = snapshot.to_number if call.direction == "inbound" else snapshot.from_number
    call.state = snapshot.state.value
    call.outcome = snapshot.outcome.value if snapshot.outcome else None
    call.started_at = snapshot.started_at or call.started_at or now
    call.answered_at = snapshot.agent_answered_at or snapshot.answered_at
    call.ended_at = snapshot.ended_at
    call.ring_seconds = snapshot.ring_seconds
    call.wait_seconds = snapshot.wait_seconds
    call.talk_seconds = snapshot.talk_seconds
    call.recording_sid = snapshot.recording_sid
    call.recording_url = snapshot.recording_url
    call.recording_duration = snapshot.recording_duration
    call.transcription_text = snapshot.transcription_text
    agent = agent_for_identity(session=session, identity=snapshot.agent_identity)
    if agent is not None:
        call.agent_id = agent.id
    call.updated_at = now


def _recording_ready(snapshot: CallSnapshot) -> bool:
    status = snapshot.recording_status
    return status is None or status.value == "completed"


# --- the ledger's sweep ---------------------------------------------------------------------------------------


def requeue_stale_call_events(
    *, session: Session, now: datetime, older_than: timedelta, limit: int = 1000
) -> list[int]:
    """Hand events still unprocessed after ``older_than`` back to the queue (their job was lost)."""
    cutoff = now - older_than
    ids = list(
        session.scalars(
            select(CallEventRecord.id)
            .where(
                CallEventRecord.status == InboundStatus.RECEIVED,
                (CallEventRecord.queued_at.is_(None)) | (CallEventRecord.queued_at < cutoff),
                CallEventRecord.received_at < cutoff,
            )
            .order_by(CallEventRecord.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(update(CallEventRecord).where(CallEventRecord.id.in_(ids)).values(queued_at=now))
        for event_id in ids:
            enqueue_after_commit(session, PROCESS_JOB, event_id)
    return ids


def requeue_missing_recordings(
    *, session: Session, now: datetime, older_than: timedelta, limit: int = 100
) -> list[int]:
    """Calls whose recording is known but still not downloaded after ``older_than``: fetch again."""
    ids = list(
        session.scalars(
            select(Call.id)
            .where(
                Call.recording_url.is_not(None),
                Call.recording_sha256.is_(None),
                Call.updated_at < now - older_than,
                Call.updated_at > now - timedelta(days=1),  # Twilio keeps it; an operator can retry later
            )
            .order_by(Call.id)
            .limit(limit)
        )
    )
    for call_id in ids:
        enqueue_recording_fetch(session, call_id)
    return ids


def enqueue_recording_fetch(session: Session, call_id: int) -> None:
    """Download the call's recording once ``session`` commits, retried while Twilio is not ready."""
    retry = Retry(max=len(RECORDING_RETRY_INTERVALS), interval=RECORDING_RETRY_INTERVALS)
    enqueue_after_commit(session, FETCH_RECORDING_JOB, call_id, job_id=f"recording-{call_id}", retry=retry)


# --- calls whose final callback never came -----------------------------------------------------------------------


def find_unfinished_calls(
    *, session: Session, now: datetime, older_than: timedelta, limit: int = 100
) -> list[int]:
    """Calls without an outcome and without news for ``older_than`` (Twilio does not resend a status callback
    it could not deliver): to be asked of Twilio's REST API. Only calls of the last two days."""
    return list(
        session.scalars(
            select(Call.id)
            .where(
                Call.outcome.is_(None),
                Call.updated_at < now - older_than,
                Call.created_at > now - timedelta(days=2),
            )
            .order_by(Call.id)
            .limit(limit)
        )
    )


def record_reconciled_status(
    *, session: Session, call_id: int, form: dict[str, str], now: datetime, settings: Settings
) -> bool:
    """Store what Twilio's REST API reports of a call as a status event and queue it; True when it ended.

    A call still going on is only marked as checked (its ``updated_at`` moves), so the next check is later.
    """
    call = session.get(Call, call_id)
    if call is None:
        return False
    call.updated_at = now
    try:
        event = parse_call_event(
            "status", {**form, "CallbackSource": "reconciled"}, default_region=settings.default_region
        )
    except InvalidInputError as error:
        log.warning("call %s: Twilio's record of it is unreadable: %s", call.call_sid, error)
        return False
    if event.call_status is None or not event.call_status.is_terminal:
        return False
    record = CallEventRecord(
        event_key=f"{call.call_sid}:status:reconciled:{event.call_status.value}",
        call_sid=call.call_sid,
        kind=CallEventKind.STATUS.value,
        form=dict(event.form),
        context={},
        received_at=now,
        queued_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        return True
    enqueue_after_commit(session, PROCESS_JOB, record.id)
    return True

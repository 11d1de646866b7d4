"""Job entry points, enqueued by dotted path: thin wrappers that open a transaction and call one service."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_read_sessionmaker, get_sessionmaker, hide_sql_parameters, session_scope
from centrala.core.errors import DeliveryError, InvalidInputError, TemporaryFailure, TransientDeliveryError
from centrala.core.queue import PendingJob, enqueue_after_commit, enqueue_now, release_coalesced
from centrala.core.settings import Settings, get_settings
from centrala.ingest.calls import (
    find_unfinished_calls,
    record_reconciled_status,
    requeue_missing_recordings,
    requeue_stale_call_events,
)
from centrala.ingest.calls import process_call_event as process_call_event_service
from centrala.ingest.ledger import DRAIN_EMAILS_JOB, DRAIN_EMAILS_KEY, purge_raw_mail, requeue_stale_emails
from centrala.ingest.parse_ahead import ParseHelper, ParsingAhead, load_pending_emails
from centrala.ingest.process import (
    PARENT_PENDING,
    PARENT_WAIT,
    ParsedRow,
    ProcessOutcome,
    lock_inbound_email,
    note_message_ids,
    process_pending_emails,
    quarantine,
    release_reserved_emails,
    reserve_pending_emails,
    stamp_processed,
)
from centrala.ingest.process import process_inbound_email as process_inbound_email_service
from centrala.mail.send import MailSender, transport_from_settings
from centrala.portal.auth import issue_sign_in_link
from centrala.telephony.client import TwilioClient, make_twilio_client
from centrala.tickets.models import BusinessCalendarRow, OutboundEmail
from centrala.tickets.outbox import (
    SEND_BATCH,
    SEND_DUE_JOB,
    SEND_DUE_KEY,
    ClaimedEmail,
    claim_due_outbound_emails,
    find_due_outbound,
    record_delivery_attempt,
    release_outbound_claims,
)
from centrala.tickets.phone import attach_recording
from centrala.tickets.phone_models import Call
from centrala.tickets.retention import archive_closed_tickets
from centrala.tickets.sla_clocks import DUE_CLOCKS_PER_QUERY, check_clock, find_due_clocks

log = logging.getLogger(__name__)

# How often, and after what pause, a drain with nothing else to do tries again the replies whose parent is in
# another drain's batch, before it leaves them to a drain PARENT_WAIT later.
PARENT_PAUSES = 20
PARENT_PAUSE_SECONDS = 0.05
# The fewest reserved rows a drain's write transaction claims after its first.
MIN_CLAIM = 8
# The worker's helper process for parsing the batch a drain records next (settings.ingest_parse_helper).
PARSE_HELPER = ParseHelper()


def warm_up() -> None:
    """Load now what the first jobs would load while the first customer's ticket waits: the ORM's mappers and
    every business calendar with this year's public holidays (importing the ``holidays`` package alone took
    0.1-0.4 s in the worker's first drain). Without the database the jobs load them when they need them."""
    configure_mappers()
    try:
        # A read-only session: on SQLite a write transaction would wait for the SMTP server's commits.
        with get_read_sessionmaker()() as session:
            today = clock.now().date()
            for row in session.scalars(select(BusinessCalendarRow)):
                row.to_calendar().is_holiday(today)
    except (SQLAlchemyError, InvalidInputError) as error:
        log.warning("could not load the business calendars ahead of the first job: %s", error)


def process_inbound_email(inbound_id: int) -> dict[str, object]:
    """Process one raw inbound e-mail; safe to run any number of times for the same id.

    Database errors are raised so that rq (and, failing that, the sweeper) runs the job again. Any other error
    is a message our code cannot handle yet: the row is quarantined with the error's name, to be replayed.
    """
    settings = get_settings()
    blobs = BlobStore(settings.blob_dir)
    for attempt in (1, 2):
        session = get_sessionmaker()()
        try:
            outcome = process_inbound_email_service(
                session=session, inbound_id=inbound_id, now=clock.now(), blobs=blobs, settings=settings
            )
            session.commit()
            return {"status": outcome.status.value, "ticket_id": outcome.ticket_id, "reason": outcome.reason}
        except IntegrityError:
            # Another worker created the same contact or Message-ID a moment ago; the second pass finds it.
            session.rollback()
            if attempt == 2:
                raise
            log.info("inbound %s raced another worker, retrying", inbound_id)
        except DBAPIError as error:
            session.rollback()
            hide_sql_parameters(error)  # rq logs the error it retries; the parameters hold the message
            raise
        except Exception as error:
            session.rollback()
            log.exception("inbound %s could not be processed", inbound_id)
            return _quarantine_after_error(inbound_id, error)
        finally:
            session.close()
    raise AssertionError("unreachable")


def drain_inbound_emails() -> dict[str, int]:
    """Process pending raw inbound e-mails in batches, one transaction each, until none is left.

    Safe to run any number of times, on any number of workers at once (on PostgreSQL each batch takes its rows
    FOR UPDATE SKIP LOCKED). While one batch is recorded the next is reserved and parsed in the worker's helper
    process (``parse_ahead``). A reply whose parent is still pending is tried again after the next batch, or,
    with no next batch, after a short pause (``PARENT_PAUSES``), else by a drain ``PARENT_WAIT`` later. A
    database error is raised with the batch rolled back; its rows stay pending for the next drain, which the
    next commit of a new row or the sweeper queues, and the next batch's reservation is given back. After
    ``ingest_drain_seconds`` the job queues a fresh drain and returns, so that the jobs waiting behind it
    (sends, SLA checks) run.
    """
    release_coalesced(DRAIN_EMAILS_KEY)
    settings = get_settings()
    blobs = BlobStore(settings.blob_dir)
    deadline = time.monotonic() + settings.ingest_drain_seconds
    counts: collections.Counter[str] = collections.Counter()
    cache: dict[object, object] = {}
    helper = PARSE_HELPER if settings.ingest_parse_helper else None
    batch = _reserve_batch(settings=settings, blobs=blobs, helper=helper)
    # Replies whose parent was still pending, tried again right after the next batch: when a batch's rows arrive
    # in a different order than their ids (concurrent SMTP commits), the parent is often in that batch.
    waiting: dict[int, ParsedRow | None] = {}
    parent_pauses = 0
    while batch is not None:
        ids, parsing = batch
        batch = None
        full = len(ids) == settings.ingest_batch_size
        if full and time.monotonic() < deadline:
            batch = _reserve_batch(settings=settings, blobs=blobs, helper=helper)
        try:
            parsed = parsing.result()
            with session_scope() as session:
                note_message_ids(session=session, parsed=parsed)
            outcomes = _record_reserved(ids, parsed, blobs=blobs, settings=settings, cache=cache)
            if waiting:
                outcomes += _record_reserved(
                    list(waiting), {i: row for i, row in waiting.items() if row is not None},
                    blobs=blobs, settings=settings, cache=cache,
                )
        except BaseException:
            if batch is not None:
                _give_back(batch[0])
            raise
        known = {**waiting, **parsed}
        waiting = {o.inbound_id: known.get(o.inbound_id) for o in outcomes if o.reason == PARENT_PENDING}
        counts.update(outcome.status.value for outcome in outcomes if outcome.inbound_id not in waiting)
        if waiting and batch is None and parent_pauses < PARENT_PAUSES and time.monotonic() < deadline:
            # Nothing else reserved: their parents are in another drain's batch (another worker's), recorded
            # within a transaction or two. Try again shortly, with whatever arrived meanwhile, rather than leave
            # them to a drain the scheduler starts a second or two later.
            parent_pauses += 1
            _pause_for_parents()
            batch = _reserve_batch(settings=settings, blobs=blobs, helper=helper) or ([], ParsingAhead(None, []))
            continue
        if waiting and batch is None:
            # No next batch here: a drain for when they may go (moved by the scheduler).
            counts["received"] += len(waiting)
            enqueue_now([PendingJob(DRAIN_EMAILS_JOB, at=clock.now() + PARENT_WAIT)])
        if full and batch is None:
            enqueue_now([PendingJob(DRAIN_EMAILS_JOB)])
    if counts:
        log.info("drained inbound e-mail: %s", ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return dict(counts)


def _pause_for_parents() -> None:
    time.sleep(PARENT_PAUSE_SECONDS)


def _reserve_batch(
    *, settings: Settings, blobs: BlobStore, helper: ParseHelper | None
) -> tuple[list[int], ParsingAhead] | None:
    """Reserve the next batch of pending rows and start parsing it (in the helper, when there is one)."""
    with session_scope() as session:
        ids = reserve_pending_emails(
            session=session, limit=settings.ingest_batch_size, now=clock.now(),
            hold=timedelta(seconds=settings.sweep_after_seconds),
        )
    if not ids:
        return None
    # Read before the write transaction, and parsed outside it: the CPU-heavy part holds no lock (on SQLite:
    # the only writer's).
    read_session = get_read_sessionmaker()()
    try:
        emails = load_pending_emails(session=read_session, ids=ids, blobs=blobs)
    finally:
        read_session.close()
    return ids, ParsingAhead(helper, emails, blobs)


def _give_back(ids: list[int]) -> None:
    """End the reservation of a batch the drain will not record (it failed before), so that it does not wait
    out its hold."""
    try:
        with session_scope() as session:
            release_reserved_emails(session=session, ids=ids, now=clock.now())
    except Exception:  # noqa: BLE001 - the hold runs out and the sweeper hands the rows on
        log.warning("could not give back %d reserved inbound e-mail(s); they wait out their hold", len(ids))


def _record_reserved(
    ids: list[int],
    parsed: dict[int, ParsedRow],
    *,
    blobs: BlobStore,
    settings: Settings,
    cache: dict[object, object] | None = None,
) -> list[ProcessOutcome]:
    """Process a drain's reserved rows in transactions of at most ``ingest_transaction_ms`` each: on SQLite
    every SMTP commit waits for the one writer, and a long batch would hold up every sender's 250; on PostgreSQL
    two drains writing to the same tickets and contacts wait for each other's row locks, and long transactions
    there deadlocked (each then done again one message at a time)."""
    outcomes: list[ProcessOutcome] = []
    remaining = ids
    claim = len(ids)
    while remaining:
        session = get_sessionmaker()()
        until = time.monotonic() + settings.ingest_transaction_ms / 1000
        try:
            done = process_pending_emails(
                session=session, now=clock.now(), blobs=blobs, settings=settings, limit=claim,
                ids=remaining, parsed=parsed, until=until, cache=cache,
            )
            # processed_at says when the message was done: the batch's end, not its start.
            stamp_processed(session=session, outcomes=done, now=clock.now())
            session.commit()
        except DBAPIError as error:
            session.rollback()
            hide_sql_parameters(error)  # rq logs the error it retries; the parameters hold the message
            raise
        finally:
            session.close()
        if not done:
            break  # the rest is no longer pending: another drain, or a replay, took it
        outcomes += done
        finished = {outcome.inbound_id for outcome in done}
        remaining = [inbound_id for inbound_id in remaining if inbound_id not in finished]
        # The next transaction claims about what this one got through, with room to spare: claiming them all
        # again would load, on SQLite, rows that the time limit leaves for the transaction after.
        claim = max(2 * len(done), MIN_CLAIM)
    return outcomes


def _quarantine_after_error(inbound_id: int, error: Exception) -> dict[str, object]:
    session = get_sessionmaker()()
    try:
        row = lock_inbound_email(session=session, inbound_id=inbound_id)
        if row is None:
            return {"status": "missing"}
        outcome = quarantine(row=row, reason=f"processing failed: {type(error).__name__}", now=clock.now())
        session.commit()
        return {"status": outcome.status.value, "reason": outcome.reason}
    finally:
        session.close()


def sweep_stale_emails() -> int:
    """Hand raw rows whose job was lost back to the queue; returns how many."""
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        ids = requeue_stale_emails(
            session=session, now=clock.now(), older_than=timedelta(seconds=settings.sweep_after_seconds)
        )
        session.commit()
    finally:
        session.close()
    if ids:
        log.info("re-enqueued %d stale inbound e-mail(s)", len(ids))
    return len(ids)


def send_outbound_email(outbound_id: int) -> dict[str, object]:
    """Send one outbox row if it is queued or deferred and due; safe to run any number of times per id.

    Three steps, so that no transaction stays open while the relay answers: claim the row (commit), send,
    record the outcome (commit). A worker dying in between leaves the row claimed; the sweep hands it out
    again when the claim's lease has run out.
    """
    settings = get_settings()
    with session_scope() as session:
        claimed = claim_due_outbound_emails(session=session, now=clock.now(), limit=1, ids=[outbound_id])
    if not claimed:
        return {"status": "not due"}
    with transport_from_settings(settings).connection() as relay:
        errors, _unsent = _send_claimed(claimed, relay)
    [outbound] = _record_attempts(errors, settings)
    if outbound is None:
        return {"status": "missing"}
    return {"status": outbound.state.value, "attempts": outbound.attempts}


def send_due_outbound_emails() -> dict[str, int]:
    """Send every due outbox row, SEND_BATCH at a time over one connection to the relay, until none is left.

    Each batch as ``send_outbound_email`` does one row: claimed (commit), sent, recorded (commit). Safe to run
    any number of times, on any number of workers at once: a row is claimed by one drain only. After
    ``ingest_drain_seconds`` the job begins no further message: it gives back the rest of its batch, queues a
    fresh drain and returns, so that the jobs waiting behind it run and a slow relay cannot keep it past its
    job timeout with messages on their way (which its lease would then send twice).
    """
    release_coalesced(SEND_DUE_KEY)
    settings = get_settings()
    deadline = time.monotonic() + settings.ingest_drain_seconds
    counts: collections.Counter[str] = collections.Counter()
    with transport_from_settings(settings).connection() as relay:
        while True:
            with session_scope() as session:
                claimed = claim_due_outbound_emails(session=session, now=clock.now(), limit=SEND_BATCH)
            if not claimed:
                break
            errors, unsent = _send_claimed(claimed, relay, until=deadline)
            outcomes = _record_attempts(errors, settings)
            counts.update(outbound.state.value for outbound in outcomes if outbound is not None)
            if unsent:
                with session_scope() as session:
                    release_outbound_claims(session=session, ids=unsent, now=clock.now())
            elif len(claimed) < SEND_BATCH:
                break
            if time.monotonic() >= deadline:
                enqueue_now([PendingJob(SEND_DUE_JOB)])
                break
    if counts:
        log.info("sent outbound e-mail: %s", ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return dict(counts)


def _send_claimed(
    claimed: list[ClaimedEmail], relay: MailSender, *, until: float | None = None
) -> tuple[dict[int, DeliveryError | None], list[int]]:
    """Hand the claimed messages to ``relay`` in turn, beginning none past ``until`` (``time.monotonic()``) but
    the first: what went wrong with each one sent (None: nothing), and the ids of those not begun."""
    errors: dict[int, DeliveryError | None] = {}
    for message in claimed:
        if errors and until is not None and time.monotonic() > until:
            break
        try:
            relay.send(raw=message.raw, mail_from=message.mail_from, rcpt_tos=message.rcpt_tos)
        except DeliveryError as failure:
            errors[message.id] = failure
        except Exception as failure:
            # A bug of ours or the library's: retried, and failed after the last attempt.
            log.exception("outbound %s: unexpected error while sending", message.id)
            errors[message.id] = TransientDeliveryError(f"unexpected error: {type(failure).__name__}")
        else:
            errors[message.id] = None
    return errors, [message.id for message in claimed if message.id not in errors]


def _record_attempts(
    errors: dict[int, DeliveryError | None], settings: Settings
) -> list[OutboundEmail | None]:
    """Record how each attempt went, all in one transaction; if that fails, each in one of its own, so that a
    row whose outcome cannot be written (a bug) does not cost the others theirs."""
    try:
        with session_scope() as session:
            return [
                record_delivery_attempt(
                    session=session, outbound_id=outbound_id, error=error, now=clock.now(), settings=settings
                )
                for outbound_id, error in errors.items()
            ]
    except Exception as failure:  # each row is tried again below, on its own
        if len(errors) == 1:
            raise
        hide_sql_parameters(failure)
        log.warning(
            "recording %d delivery attempts failed (%s); one at a time", len(errors), type(failure).__name__
        )
    outcomes: list[OutboundEmail | None] = []
    for outbound_id, error in errors.items():
        try:
            outcomes.extend(_record_attempts({outbound_id: error}, settings))
        except Exception:
            # Left claimed: the sweep hands it out again when the lease is over.
            log.exception("outbound %s: could not record the delivery attempt", outbound_id)
            outcomes.append(None)
    return outcomes


def sweep_due_outbound() -> int:
    """Hand outbox rows whose retry is due, or whose job was lost, to the queue; returns how many."""
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        ids = find_due_outbound(
            session=session, now=clock.now(), grace=timedelta(seconds=settings.sweep_after_seconds)
        )
        session.commit()
    finally:
        session.close()
    if ids:
        log.info("handed %d outbound e-mail(s) to the queue", len(ids))
    return len(ids)


def check_sla_clock(clock_id: int) -> dict[str, object]:
    """Fire the warning or breach of one SLA clock if due; a stale or repeated call does nothing. Also a job:
    installations before ``check_due_sla_clocks`` scheduled one per clock, and those may still be waiting."""
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        fired = check_clock(session=session, clock_id=clock_id, now=clock.now(), settings=settings)
        session.commit()
    finally:
        session.close()
    return {"fired": fired}


def check_due_sla_clocks(second: int) -> dict[str, object]:
    """Fire every warning and breach due by now: the job ``sla_clocks.schedule_check`` queues for the whole
    second ``second`` (Unix time) in which some clocks fall due. It finds them, and any still due from before,
    by the ``next_check_at`` index; a clock that moved later or stopped is not among them."""
    return {"second": second, "checked": _check_due_clocks(grace=timedelta(0))}


def sweep_sla_clocks() -> int:
    """Check the SLA clocks whose warning or breach is overdue because their job was lost; returns how many."""
    settings = get_settings()
    checked = _check_due_clocks(grace=timedelta(seconds=settings.sweep_after_seconds))
    if checked:
        log.info("checked %d overdue sla clock(s)", checked)
    return checked


def _check_due_clocks(*, grace: timedelta) -> int:
    """Check each clock whose warning or breach is more than ``grace`` overdue, each in a transaction of its
    own, until none is left; returns how many were checked.

    A clock whose escalation fails is logged and left due (the sweep tries it again); the others are still
    checked. A database error ends the round: the next job or sweep finds the rest.
    """
    checked: set[int] = set()
    failed: list[int] = []
    while True:
        session = get_sessionmaker()()
        try:
            ids = find_due_clocks(session=session, now=clock.now(), grace=grace, limit=DUE_CLOCKS_PER_QUERY)
        finally:
            session.close()
        fresh = [clock_id for clock_id in ids if clock_id not in checked]
        for clock_id in fresh:
            try:
                check_sla_clock(clock_id)
            except DBAPIError:
                raise
            except Exception:
                log.exception("sla clock %s could not be checked", clock_id)
                failed.append(clock_id)
        checked.update(fresh)
        if len(ids) < DUE_CLOCKS_PER_QUERY or not fresh:
            break
    if failed:
        raise RuntimeError(f"{len(failed)} sla clock(s) could not be checked: {failed[:20]}")
    return len(checked)


def process_call_event(event_id: int) -> dict[str, object]:
    """Apply one stored Twilio event to its call; safe to run any number of times for the same id."""
    settings = get_settings()
    for attempt in (1, 2):
        session = get_sessionmaker()()
        try:
            outcome = process_call_event_service(
                session=session, event_id=event_id, now=clock.now(), settings=settings
            )
            session.commit()
            return {"status": outcome.status.value, "call_sid": outcome.call_sid, "outcome": outcome.outcome}
        except IntegrityError:
            # Another worker created the caller's provisional contact a moment ago; the second pass finds it.
            session.rollback()
            if attempt == 2:
                raise
            log.info("call event %s raced another worker, retrying", event_id)
        finally:
            session.close()
    raise AssertionError("unreachable")


def twilio_client() -> TwilioClient:
    """The Twilio REST client of this process's configuration."""
    settings = get_settings()
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    return make_twilio_client(
        backend=settings.twilio_backend,
        account_sid=settings.twilio_account_sid,
        auth_token=token,
        api_host=settings.twilio_api_host,
    )


def fetch_call_recording(call_id: int) -> dict[str, object]:
    """Download a call's recording into the blob store and attach it to the call's interaction.

    A failed download raises, and rq runs the job again after the next of ``ingest.calls.RECORDING_RETRY_INTERVALS``; the
    scheduler's sweep hands recordings still missing after that back to the queue for a day.
    """
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        call = session.get(Call, call_id)
        if call is None or call.recording_url is None or call.recording_sha256 is not None:
            return {"status": "nothing to do"}
        url = call.recording_url
    finally:
        session.close()
    audio = twilio_client().fetch_recording_bytes(url)
    digest = BlobStore(settings.blob_dir).put(audio)
    session = get_sessionmaker()()
    try:
        call = session.get(Call, call_id)
        if call is None:
            return {"status": "missing"}
        call.recording_sha256, call.recording_size = digest, len(audio)
        call.updated_at = clock.now()
        attach_recording(session=session, call=call)
        session.commit()
        return {"status": "stored", "sha256": digest, "size": len(audio)}
    finally:
        session.close()


def sweep_call_events() -> int:
    """Hand call events whose job was lost, recordings still not downloaded, and calls whose final callback
    never came back to the queue."""
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        older = timedelta(seconds=settings.sweep_after_seconds)
        ids = requeue_stale_call_events(session=session, now=clock.now(), older_than=older)
        recordings = requeue_missing_recordings(session=session, now=clock.now(), older_than=older * 10)
        unfinished = find_unfinished_calls(
            session=session, now=clock.now(), older_than=timedelta(minutes=settings.call_reconcile_after_minutes)
        )
        for call_id in unfinished:
            enqueue_after_commit(session, "centrala.workers.jobs.reconcile_call", call_id, job_id=f"reconcile-{call_id}")
        session.commit()
    finally:
        session.close()
    if ids or recordings or unfinished:
        log.info(
            "re-enqueued %d call event(s), %d recording download(s), %d unfinished call(s)",
            len(ids), len(recordings), len(unfinished),
        )
    return len(ids)


def reconcile_call(call_id: int) -> dict[str, object]:
    """Ask Twilio how a call without an outcome ended (its final status callback was lost) and apply it."""
    settings = get_settings()
    session = get_sessionmaker()()
    try:
        call = session.get(Call, call_id)
        if call is None or call.outcome is not None:
            return {"status": "nothing to do"}
        call_sid = call.call_sid
    finally:
        session.close()
    try:
        form = twilio_client().fetch_call(call_sid)
    except (InvalidInputError, TemporaryFailure) as error:
        form = {}
        log.warning("call %s: could not ask Twilio how it ended: %s", call_sid, error)
    session = get_sessionmaker()()
    try:
        ended = record_reconciled_status(session=session, call_id=call_id, form=form, now=clock.now(), settings=settings)
        session.commit()
    finally:
        session.close()
    return {"status": "ended" if ended else "still open"}


def send_portal_sign_in_link(address: str, next_path: str | None) -> dict[str, object]:
    """Mail a portal sign-in link to ``address`` if it belongs to a contact (the web answer is the same either
    way, and takes the same time, because the lookup happens here)."""
    with session_scope() as session:
        token = issue_sign_in_link(
            session=session, address=address, next_path=next_path, now=clock.now(), settings=get_settings()
        )
        return {"issued": token is not None}


@dataclass(frozen=True)
class RetentionReport:
    """What one retention run did, and whether it got through everything due (it stops at its time budget)."""

    archived_tickets: int
    raw_mail_deleted: int
    finished: bool


def apply_retention(*, max_seconds: float | None = None) -> RetentionReport:
    """Archive closed tickets past the archive age and delete raw mail past the retention period, a batch at a
    time until none is left or ``max_seconds`` have passed (the rest waits for the next run)."""
    settings = get_settings()
    blobs = BlobStore(settings.blob_dir)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    archived = purged = 0

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    if settings.archive_closed_after_days is not None:
        while not out_of_time():
            with session_scope() as session:
                count = archive_closed_tickets(
                    session=session,
                    now=clock.now(),
                    older_than=timedelta(days=settings.archive_closed_after_days),
                )
            archived += count
            if count == 0:
                break
        else:
            return RetentionReport(archived, purged, finished=False)
    if settings.raw_mail_retention_days is not None:
        while not out_of_time():
            with session_scope() as session:
                purged_now = purge_raw_mail(
                    session=session,
                    now=clock.now(),
                    older_than=timedelta(days=settings.raw_mail_retention_days),
                )
            # Only after the commit: a rolled-back purge must find its blobs still there.
            for digest in purged_now.unused_blobs:
                blobs.delete(digest)
            purged += purged_now.count
            if purged_now.count == 0:
                break
        else:
            return RetentionReport(archived, purged, finished=False)
    return RetentionReport(archived, purged, finished=True)

"""Turn a raw inbound e-mail into domain facts: its contact, its ticket, its interaction on the timeline."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.util import identity_key

from centrala.core.blobs import BlobStore
from centrala.core.db import batch_cache_scope, hide_sql_parameters, is_postgresql
from centrala.core.errors import MessageRejected, RepMailRejected
from centrala.core.queue import savepoint
from centrala.core.settings import Settings
from centrala.ingest.ledger import SENT_FOLDER_SOURCE, load_raw
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.parse_ahead import ParsedRow, envelope_sender
from centrala.mail.classify import MailKind
from centrala.mail.parse import ParsedEmail, parse_email, rewrite_cid_urls
from centrala.mail.tokens import verify_message_id, verify_reply_address
from centrala.tickets.attachments import attachment_url
from centrala.tickets.contacts import match_or_create_contact_by_email, senders_looked_up
from centrala.tickets.models import (
    Agent,
    Attachment,
    Channel,
    Contact,
    ContactEmail,
    Direction,
    Interaction,
    OutboundEmail,
    Ticket,
    TicketStatus,
)
from centrala.tickets.outbox import acknowledgement_facts_looked_up, mark_bounced, queue_acknowledgement
from centrala.tickets.sla_clocks import (
    clocks_looked_up,
    on_agent_response,
    on_customer_message,
    start_clocks_for_new_ticket,
)
from centrala.tickets.tickets import (
    MAX_BATCH_REFERENCES,
    MAX_THREAD_REFERENCES,
    ThreadMatch,
    ThreadReason,
    add_interaction,
    find_email_thread,
    is_past_reopen_window,
    note_customer_activity,
    open_ticket,
    references_looked_up,
)

log = logging.getLogger(__name__)

FLAG_REUSED_MESSAGE_ID = "Message-ID already used by another sender"
# A rep's Date header has whole seconds and their computer's clock: a customer message received this little
# after it is taken to be older than the rep's mail, which then still answers it.
REP_CLOCK_SKEW = timedelta(minutes=2)
# A reply whose parent is still pending in another drain's batch tries again this much later, for at most
# PARENT_WAIT_LIMIT after its receipt (a parent that takes longer is not waited for).
PARENT_WAIT = timedelta(seconds=1)
PARENT_WAIT_LIMIT = timedelta(seconds=60)
PARENT_PENDING = "a message it answers is still pending"


@dataclass(frozen=True)
class ProcessOutcome:
    """What processing one raw row did."""

    inbound_id: int
    status: InboundStatus
    interaction_id: int | None = None
    ticket_id: int | None = None
    reason: str | None = None


def lock_inbound_email(*, session: Session, inbound_id: int) -> InboundEmail | None:
    """The raw row, locked for this transaction; None when it is gone or another worker holds it."""
    statement = select(InboundEmail).where(InboundEmail.id == inbound_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return session.scalars(statement).one_or_none()


def process_inbound_email(
    *, session: Session, inbound_id: int, now: datetime, blobs: BlobStore, settings: Settings
) -> ProcessOutcome:
    """Process one raw row once: parse, match the contact, thread or open the ticket, record the interaction.

    Rows already processed or quarantined are left alone, so a duplicate or stale job changes nothing. A message
    that cannot become an interaction is quarantined with its reason; its bytes stay in the ledger.
    """
    row = lock_inbound_email(session=session, inbound_id=inbound_id)
    if row is None or row.status != InboundStatus.RECEIVED:
        return ProcessOutcome(inbound_id, row.status if row else InboundStatus.PROCESSED, reason="not pending")
    return _process_row(session=session, row=row, now=now, blobs=blobs, settings=settings)


def reserve_pending_emails(*, session: Session, limit: int, now: datetime, hold: timedelta) -> list[int]:
    """Take up to ``limit`` of the oldest pending rows for one drain until ``now + hold``; their ids.

    The reservation (``queued_at`` moved ahead to ``now + hold``) lets the drain parse the messages before
    its write transaction, so that concurrent drains pass these rows over and parse others, and SQLite's
    single write lock is not held while Python parses. It is only a hint: the write transaction takes the
    rows again under lock and checks that they are still pending. A drain that dies leaves its rows for the
    next one once ``hold`` is over (the sweeper queues that drain). Commit it before parsing.
    """
    pending = (
        select(InboundEmail.id)
        .where(InboundEmail.status == InboundStatus.RECEIVED, InboundEmail.queued_at <= now)
        .order_by(InboundEmail.received_at, InboundEmail.id)
        .limit(limit)
    )
    if is_postgresql(session):
        pending = pending.with_for_update(skip_locked=True)
    statement = (
        update(InboundEmail)
        .where(InboundEmail.id.in_(pending.scalar_subquery()))
        .values(queued_at=now + hold)
        .returning(InboundEmail.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(statement))


def release_reserved_emails(*, session: Session, ids: Sequence[int], now: datetime) -> None:
    """End a drain's reservation of the rows ``ids`` that are still pending: any drain may take them now."""
    if ids:
        session.execute(
            update(InboundEmail)
            .where(InboundEmail.id.in_(ids), InboundEmail.status == InboundStatus.RECEIVED)
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        )


def claim_pending_emails(*, session: Session, limit: int, ids: Sequence[int] | None = None) -> list[InboundEmail]:
    """Up to ``limit`` of the oldest raw rows still to process, locked for this transaction.

    On PostgreSQL the rows are taken FOR UPDATE SKIP LOCKED: concurrent drains (several workers, several
    hosts) take disjoint rows and pass over a row another transaction holds instead of waiting for it, and a
    drain that dies releases its rows with its connection. SQLite has a single writer: the transaction's
    BEGIN IMMEDIATE is the lock, so two drains there take turns. With ``ids``, only those rows (a drain's
    reservation).
    """
    statement = (
        select(InboundEmail)
        .where(InboundEmail.status == InboundStatus.RECEIVED)
        .order_by(InboundEmail.received_at, InboundEmail.id)
        .limit(limit)
        # The bytes were parsed ahead of the transaction; a row that was not is read again on its own (load_raw).
        # On SQLite a transaction takes a few of the rows it claims, and claims the rest again in the next one.
        .options(defer(InboundEmail.raw))
    )
    if ids is not None:
        statement = statement.where(InboundEmail.id.in_(ids))
    if is_postgresql(session):
        statement = statement.with_for_update(skip_locked=True)
    return list(session.scalars(statement))


def process_pending_emails(
    *,
    session: Session,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    limit: int,
    ids: Sequence[int] | None = None,
    parsed: Mapping[int, ParsedRow] | None = None,
    until: float | None = None,
    cache: dict[object, object] | None = None,
) -> list[ProcessOutcome]:
    """Claim up to ``limit`` pending raw rows and process each in a savepoint of the caller's transaction.

    With ``ids`` (a drain's reservation) only those rows are claimed; the messages in ``parsed`` (from
    ``parse_ahead``) are not parsed again. Past ``until`` (``time.monotonic()``) no further row is
    begun, so that the transaction, and on SQLite the write lock, stays short; the outcomes say which rows were
    done. ``cache``: lookups remembered across the transactions of one drain (``batch_cache_scope``). One
    commit for the whole batch; a message that fails is quarantined without costing the others. A database
    error other than a conflict with a concurrent writer is raised: the caller rolls the batch back and its rows
    stay pending for the next drain.
    """
    rows = claim_pending_emails(session=session, limit=limit, ids=ids)
    parsed = parsed or {}
    session.info[_ABSENT_KEY] = _absent_external_ids(session=session, rows=rows, parsed=parsed)
    messages = [found.parsed for row in rows if (found := parsed.get(row.id)) and found.parsed]
    senders = [message.from_address for message in messages]
    references = [reference for message in messages for reference in message.referenced_ids]
    # First the parents still pending in other drains' batches, then the written ones (references_looked_up):
    # a parent committed between the two lookups is seen pending and waited for, never missed by both.
    session.info[_PENDING_PARENTS_KEY] = _pending_parents(session=session, rows=rows, references=references, now=now)
    try:
        with (
            batch_cache_scope(session, cache),
            senders_looked_up(session=session, addresses=senders),
            references_looked_up(session=session, referenced_ids=references) as continued,
            clocks_looked_up(session=session, ticket_ids={ticket.id for ticket in continued}),
            acknowledgement_facts_looked_up(session=session, recipients=senders, now=now, settings=settings),
        ):
            return _process_claimed(
                session=session, rows=rows, now=now, blobs=blobs, settings=settings, parsed=parsed, until=until
            )
    finally:
        session.info.pop(_ABSENT_KEY, None)
        session.info.pop(_PENDING_PARENTS_KEY, None)


# The session.info key of the Message-IDs of a transaction's rows that no interaction had when it began.
_ABSENT_KEY = "centrala.absent_external_ids"
# The session.info key of the pending rows that the transaction's replies may answer (``_pending_parents``).
_PENDING_PARENTS_KEY = "centrala.pending_parents"


@dataclass(frozen=True)
class _PendingParents:
    """Rows pending when a transaction began that its replies may answer: ``(id, message_id, reserved)`` of each
    row whose Message-ID is among ``references``, or that another drain had reserved without noting its
    Message-ID yet (``reserved``)."""

    references: frozenset[str]
    rows: tuple[tuple[int, str | None, bool], ...]


def _pending_parents(
    *, session: Session, rows: Sequence[InboundEmail], references: Sequence[str], now: datetime
) -> _PendingParents | None:
    """One query for what ``_parent_pending`` asks of each reply of the batch; None when there is nothing to ask
    or too much for one query (each reply then asks for itself)."""
    wanted = frozenset(references)
    if not wanted or not rows or len(wanted) > MAX_BATCH_REFERENCES:
        return None
    with session.no_autoflush:
        found = session.execute(
            select(InboundEmail.id, InboundEmail.message_id, InboundEmail.queued_at > now).where(
                InboundEmail.status == InboundStatus.RECEIVED,
                InboundEmail.id < max(row.id for row in rows),
                or_(
                    InboundEmail.message_id.in_(wanted),
                    and_(InboundEmail.message_id.is_(None), InboundEmail.queued_at > now),
                ),
            )
        ).all()
    return _PendingParents(wanted, tuple((row_id, message_id, bool(reserved)) for row_id, message_id, reserved in found))


def _absent_external_ids(
    *, session: Session, rows: Sequence[InboundEmail], parsed: Mapping[int, ParsedRow]
) -> set[str]:
    """Which of the rows' interaction keys (Message-IDs) are not taken yet: one query for the transaction
    instead of one per message. A key taken later (a concurrent drain) fails on the unique constraint, and
    the message's second try looks it up."""
    keys = {
        _external_id(row=row, parsed=found.parsed)
        for row in rows
        if (found := parsed.get(row.id)) is not None and found.parsed is not None and found.sha256 == row.sha256
    }
    if not keys:
        return set()
    taken = set(
        session.scalars(
            select(Interaction.external_id).where(
                Interaction.channel == Channel.EMAIL, Interaction.external_id.in_(keys)
            )
        )
    )
    return keys - taken


def _external_id(*, row: InboundEmail, parsed: ParsedEmail) -> str:
    """The key of the message's interaction: its Message-ID, else the hash of its bytes."""
    return parsed.message_id or f"sha256:{row.sha256}"


def _process_claimed(
    *,
    session: Session,
    rows: Sequence[InboundEmail],
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    parsed: Mapping[int, ParsedRow],
    until: float | None,
) -> list[ProcessOutcome]:
    """Process the claimed rows: the whole batch in one savepoint, else (one failed) each in its own."""
    if len(rows) > 1:
        # Nearly every batch goes through whole: try it in one savepoint, which spares two statements (and on
        # PostgreSQL two round trips) per message; if any message fails, go again one savepoint each.
        # Its messages are written together when the savepoint ends (or by a query's autoflush before): one
        # flush per message would cost the unit of work's fixed price for each.
        try:
            with savepoint(session):
                outcomes = _each_in_time(
                    rows,
                    lambda row: _process_row(
                        session=session, row=row, now=now, blobs=blobs, settings=settings,
                        parsed=parsed.get(row.id), flush=False,
                    ),
                    until,
                )
            return [_identified(row=row, outcome=outcome) for row, outcome in zip(rows, outcomes, strict=False)]
        except Exception as error:  # noqa: BLE001 - every message is tried again below, on its own
            hide_sql_parameters(error)
            log.info("batch of %d failed as a whole (%s); one message at a time", len(rows), type(error).__name__)
    return _each_in_time(
        rows,
        lambda row: process_claimed_email(
            session=session, row=row, now=now, blobs=blobs, settings=settings, parsed=parsed.get(row.id)
        ),
        until,
    )


def _each_in_time(
    rows: Sequence[InboundEmail], process: Callable[[InboundEmail], ProcessOutcome], until: float | None
) -> list[ProcessOutcome]:
    """``process`` the rows in order, beginning none past ``until`` (but always the first)."""
    outcomes: list[ProcessOutcome] = []
    for row in rows:
        if outcomes and until is not None and time.monotonic() > until:
            break
        outcomes.append(process(row))
    return outcomes


def _parent_pending(*, session: Session, row: InboundEmail, parsed: ParsedEmail, now: datetime) -> bool:
    """Whether a message that ``parsed`` answers arrived before it and is still pending (in another drain's
    batch): processed first, the reply would open a ticket of its own. Waited for up to ``PARENT_WAIT_LIMIT``
    after the reply's receipt. Pending rows carry their Message-ID from the parse ahead of their batch.

    Nothing is written for the lookup: a row this transaction has done with and not written yet (the drain
    writes its batch at the end) is still pending in the database, and is told apart by its state here. In a
    drain's batch the pending rows were looked up once for all its replies (``_pending_parents``).
    """
    if not parsed.referenced_ids or now - row.received_at > PARENT_WAIT_LIMIT:
        return False
    known: _PendingParents | None = session.info.get(_PENDING_PARENTS_KEY)
    if known is not None and known.references.issuperset(parsed.referenced_ids):
        references = set(parsed.referenced_ids)
        return any(
            _still_pending(session, candidate)
            for candidate, message_id, reserved in known.rows
            if candidate < row.id and (message_id in references if message_id is not None else reserved)
        )
    with session.no_autoflush:
        candidates = session.scalars(
            select(InboundEmail.id).where(
                InboundEmail.status == InboundStatus.RECEIVED,
                InboundEmail.id < row.id,
                or_(
                    InboundEmail.message_id.in_(parsed.referenced_ids[:MAX_THREAD_REFERENCES]),
                    # Reserved by another drain that has not written the Message-IDs of its batch yet.
                    and_(InboundEmail.message_id.is_(None), InboundEmail.queued_at > now),
                ),
            )
        )
        return any(_still_pending(session, candidate) for candidate in candidates)


def _still_pending(session: Session, inbound_id: int) -> bool:
    """Whether the pending row ``inbound_id`` is not one this session has done with (and not written yet)."""
    here = session.identity_map.get(identity_key(InboundEmail, inbound_id))
    return here is None or here.status is InboundStatus.RECEIVED


def note_message_ids(*, session: Session, parsed: Mapping[int, ParsedRow]) -> None:
    """Write the Message-IDs of parsed, still pending rows to the ledger, where a reply in another drain's
    batch looks for them (``_parent_pending``)."""
    values = [
        {"row_id": row_id, "message_id": row.parsed.message_id}
        for row_id, row in parsed.items()
        if row.parsed is not None and row.parsed.message_id
    ]
    if values:
        statement = (
            update(InboundEmail.__table__)
            .where(
                InboundEmail.__table__.c.id == bindparam("row_id"),
                InboundEmail.__table__.c.status == InboundStatus.RECEIVED,
            )
            .values(message_id=bindparam("message_id"))
        )
        session.connection().execute(statement, values)


def stamp_processed(*, session: Session, outcomes: Sequence[ProcessOutcome], now: datetime) -> None:
    """Set ``processed_at`` of the batch's finished rows to ``now``, the moment just before its commit."""
    done = [outcome.inbound_id for outcome in outcomes if outcome.status != InboundStatus.RECEIVED]
    if done:
        session.execute(update(InboundEmail).where(InboundEmail.id.in_(done)).values(processed_at=now))


def process_claimed_email(
    *,
    session: Session,
    row: InboundEmail,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    parsed: ParsedRow | None = None,
) -> ProcessOutcome:
    """Process one locked, pending row in a savepoint: its outcome, or the row left pending or quarantined.

    A unique key taken by a concurrent transaction a moment ago (the same new contact, the same Message-ID)
    gets one more try, which finds what the other wrote; a row that still conflicts, or whose locks another
    transaction holds (PostgreSQL: lock timeout, deadlock), is left pending for a later drain. Any other error
    is a message our code cannot handle yet: quarantined with the error's name, to be replayed after a fix.
    """
    for attempt in (1, 2):
        try:
            with savepoint(session):
                return _process_row(
                    session=session, row=row, now=now, blobs=blobs, settings=settings, parsed=parsed
                )
        except IntegrityError:
            if attempt == 1:
                log.info("inbound %s raced another writer, trying again", row.id)
                continue
            return _leave_pending(row=row, reason="conflicting writer", retry_at=now)
        except OperationalError as error:
            if not is_lock_conflict(error):
                raise
            return _leave_pending(row=row, reason="locked by another writer", retry_at=now)
        except DBAPIError:
            raise
        except Exception as error:
            log.exception("inbound %s could not be processed", row.id)
            with savepoint(session):
                row.attempts += 1
                return quarantine(row=row, reason=f"processing failed: {type(error).__name__}", now=now)
    raise AssertionError("unreachable")


def is_lock_conflict(error: OperationalError) -> bool:
    """Whether PostgreSQL refused a statement because of another transaction's locks (SQLSTATE 55P03
    lock_not_available, 40P01 deadlock_detected): the timing, not the message, was the problem."""
    return getattr(error.orig, "sqlstate", None) in ("55P03", "40P01")


def _leave_pending(*, row: InboundEmail, reason: str, retry_at: datetime) -> ProcessOutcome:
    """Leave the row pending, for any drain from ``retry_at`` on (ending this drain's reservation)."""
    row.queued_at = retry_at
    log.info("inbound %s left for a later pass: %s", row.id, reason)
    return ProcessOutcome(row.id, InboundStatus.RECEIVED, reason=reason)


def _process_row(
    *,
    session: Session,
    row: InboundEmail,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    parsed: ParsedRow | None = None,
    flush: bool = True,
) -> ProcessOutcome:
    """Process one locked row; without ``flush`` what it recorded is written by the caller's next flush, and
    the outcome's ids are known from then on (``_identified``)."""
    if parsed is None or parsed.sha256 != row.sha256:
        try:
            parsed = ParsedRow(
                row.sha256, parse_email(load_raw(row=row, blobs=blobs), mail_from=envelope_sender(row))
            )
        except MessageRejected as rejection:
            parsed = ParsedRow(row.sha256, rejection=str(rejection))
    if parsed.parsed is not None and _parent_pending(session=session, row=row, parsed=parsed.parsed, now=now):
        outcome = _leave_pending(row=row, reason=PARENT_PENDING, retry_at=now + PARENT_WAIT)
    elif parsed.parsed is None:
        outcome = quarantine(row=row, reason=parsed.rejection or "unreadable", now=now)
    else:
        outcome = _record_parsed(
            session=session, row=row, parsed=parsed.parsed, now=now, blobs=blobs, settings=settings
        )
        row.message_id = _external_id(row=row, parsed=parsed.parsed)
    # Counted last, with the outcome, and written in one flush with what the message recorded: changed earlier,
    # the row would be written once more by the first query's autoflush.
    row.attempts += 1
    if not flush:
        return outcome
    session.flush()
    return _identified(row=row, outcome=outcome)


def _identified(*, row: InboundEmail, outcome: ProcessOutcome) -> ProcessOutcome:
    """The outcome with the ids of the interaction the row became (once written), logged."""
    if outcome.status is InboundStatus.PROCESSED and outcome.interaction_id is None and row.interaction is not None:
        interaction = row.interaction
        log.info(
            "inbound %s became interaction %s on ticket %s (%s, %s)",
            row.id, interaction.id, interaction.ticket_id, interaction.thread_reason, interaction.classification,
        )
        outcome = replace(outcome, interaction_id=interaction.id, ticket_id=interaction.ticket_id)
    return outcome


def _record_parsed(
    *,
    session: Session,
    row: InboundEmail,
    parsed: ParsedEmail,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
) -> ProcessOutcome:
    external_id = _external_id(row=row, parsed=parsed)

    flag = None
    absent = session.info.get(_ABSENT_KEY, set())
    existing = None if external_id in absent else session.scalar(
        select(Interaction).where(Interaction.channel == Channel.EMAIL, Interaction.external_id == external_id)
    )
    # From here on the key may be taken (by this message, if nothing goes wrong): look it up next time.
    absent.discard(external_id)
    if existing is not None:
        if existing.author_address == parsed.from_address:
            # The same message again: twice by SMTP, or by SMTP and IMAP both.
            log.info("inbound %s repeats %s of ticket %s", row.id, _short(external_id), existing.ticket_id)
            return _mark_processed(row=row, interaction=existing, now=now, reason=ThreadReason.DUPLICATE)
        # Another sender reusing a Message-ID (a broken client, or someone trying to hide a message): keep it,
        # under a key of its own, and flag it for a person.
        external_id, flag = f"{external_id}#sha256:{row.sha256[:16]}", FLAG_REUSED_MESSAGE_ID

    from_sent_folder = row.source == SENT_FOLDER_SOURCE
    if from_sent_folder or row.mailbox in settings.log_mailboxes:
        try:
            interaction = record_rep_email(
                session=session, parsed=parsed, external_id=external_id, row=row, now=now, blobs=blobs,
                settings=settings, from_sent_folder=from_sent_folder,
            )
        except RepMailRejected as refusal:
            if from_sent_folder:
                # A Sent folder also holds mail to colleagues, suppliers and family: not an error, just not
                # history. Done with, nothing recorded.
                return _mark_not_logged(row=row, reason=f"sent mail {refusal}", now=now)
            return quarantine(row=row, reason=f"mail to a log address {refusal}", now=now)
    else:
        interaction = record_customer_email(
            session=session, parsed=parsed, external_id=external_id, row=row, now=now, blobs=blobs,
            settings=settings, flag=flag,
        )
    # Flushed with the row's outcome (_process_row); the ids are the outcome's from then on.
    return _mark_processed(row=row, interaction=interaction, now=now)


def record_customer_email(
    *,
    session: Session,
    parsed: ParsedEmail,
    external_id: str,
    row: InboundEmail,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    flag: str | None = None,
) -> Interaction:
    """Record a customer's e-mail on their timeline and on the ticket it continues, or on a new ticket.

    Automated mail (auto-replies, bounces, list mail) is threaded like any other but never reopens a ticket
    or earns an acknowledgement, which is what keeps two auto-responders from mailing each other forever.
    """
    classification = parsed.classification
    automated = classification.kind != MailKind.NORMAL
    bounced = _record_bounce(session=session, parsed=parsed, now=now, settings=settings)
    if bounced is not None and bounced.ticket is not None:
        # A bounce of our own mail belongs on that mail's ticket and its customer's record, not on a
        # contact made up for the mailer daemon.
        contact = bounced.ticket.contact
        match = ThreadMatch(bounced.ticket, ThreadReason.BOUNCE)
    else:
        contact = match_or_create_contact_by_email(
            session=session, address=parsed.from_address, name=parsed.from_name, now=now
        )
        match = _thread(
            session=session, parsed=parsed, sender=contact, settings=settings, recipients=row.rcpt_tos
        )
    ticket = match.ticket
    reason = match.reason
    follows_up = None
    if ticket is not None and not automated and is_past_reopen_window(
        ticket=ticket, now=now, reopen_within=timedelta(days=settings.reopen_within_days)
    ):
        follows_up, ticket, reason = ticket, None, ThreadReason.FOLLOW_UP
    is_new_ticket = ticket is None
    if ticket is None:
        ticket = open_ticket(
            session=session, contact=contact, subject=parsed.subject, channel=Channel.EMAIL, now=now,
            mailbox=row.mailbox, follows_up=follows_up, flush=False,
        )
    elif automated:
        ticket.updated_at = max(ticket.updated_at, now)
    else:
        note_customer_activity(ticket=ticket, now=now)
    interaction = _add_email_interaction(
        session=session, parsed=parsed, external_id=external_id, ticket=ticket, contact=contact,
        direction=Direction.INBOUND, reason=reason, row=row, now=now, blobs=blobs, flag=flag,
    )
    if is_new_ticket and not automated:
        queue_acknowledgement(
            session=session, ticket=ticket, interaction=interaction, automated=automated, now=now,
            settings=settings, envelope_sender=envelope_sender(row), new_ticket=True,
        )
    if not automated:
        # SLA clocks count from our receipt of the message, not from when a worker got to it.
        if is_new_ticket:
            start_clocks_for_new_ticket(session=session, ticket=ticket, now=row.received_at)
        else:
            on_customer_message(session=session, ticket=ticket, now=row.received_at)
    return interaction


def record_rep_email(
    *,
    session: Session,
    parsed: ParsedEmail,
    external_id: str,
    row: InboundEmail,
    now: datetime,
    blobs: BlobStore,
    settings: Settings,
    from_sent_folder: bool = False,
) -> Interaction:
    """Log a rep's own mail to a customer on the customer's history: mail BCC'd or forwarded to a log address,
    or read from the rep's Sent folder.

    The customer is the first recipient who is neither an agent nor one of our addresses; from a Sent folder,
    the first who is already a contact (a Sent folder holds private mail as well, and nobody chose to log it).
    The mail goes on the ticket it threads to, else the customer's latest open ticket, else a new one. Nobody
    is acknowledged. Unless it is automated, or the customer has written on the ticket since it was sent, it
    answers the customer as a console reply does: it meets the response clocks and leaves the ticket pending.

    Raises:
        RepMailRejected: the sender is not an agent (a log address must not let strangers write our
            history), or no recipient is a customer.
    """
    agent = session.scalar(select(Agent).where(Agent.email == parsed.from_address, Agent.is_active.is_(True)))
    if agent is None:
        raise RepMailRejected("must come from an active agent's address")
    customer_address = _rep_mail_customer(
        session=session, parsed=parsed, settings=settings, known_contacts_only=from_sent_folder
    )
    if customer_address is None:
        known = "known contact" if from_sent_folder else "customer"
        raise RepMailRejected(f"names no {known} among its recipients")
    contact = match_or_create_contact_by_email(session=session, address=customer_address, name="", now=now)
    match = _thread(
        session=session, parsed=parsed, sender=contact, settings=settings,
        # The rep wrote to the customer, so our reply address, if any, is among the message's own recipients.
        recipients=[*row.rcpt_tos, *parsed.to, *parsed.cc],
    )
    ticket, reason = match.ticket, match.reason
    if ticket is None:
        ticket = session.scalar(
            select(Ticket)
            .where(Ticket.contact_id == contact.id, Ticket.status.not_in([TicketStatus.CLOSED]))
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
            .limit(1)
        )
        reason = ThreadReason.REFERENCE if ticket is not None else ThreadReason.NEW_TICKET
    if ticket is None:
        mailbox = row.mailbox if from_sent_folder else settings.mailboxes[0]
        ticket = open_ticket(session=session, contact=contact, subject=parsed.subject, channel=Channel.EMAIL,
                             now=now, mailbox=mailbox, flush=False)
    ticket.updated_at = max(ticket.updated_at, now)
    sent_at = _rep_sent_at(parsed=parsed, row=row)
    interaction = _add_email_interaction(
        session=session, parsed=parsed, external_id=external_id, ticket=ticket, contact=contact,
        direction=Direction.OUTBOUND, reason=f"{'rep-sent' if from_sent_folder else 'rep-log'}:{reason}",
        row=row, now=now, blobs=blobs, occurred_at=sent_at,
    )
    interaction.agent_id = agent.id
    session.flush()
    answers = parsed.classification.kind == MailKind.NORMAL and not _customer_wrote_since(
        session=session, ticket=ticket, since=sent_at
    )
    if answers:
        if ticket.status in (TicketStatus.NEW, TicketStatus.OPEN):
            ticket.status = TicketStatus.PENDING
        on_agent_response(session=session, ticket=ticket, interaction=interaction, now=sent_at)
    return interaction


def _rep_mail_customer(
    *, session: Session, parsed: ParsedEmail, settings: Settings, known_contacts_only: bool
) -> str | None:
    """The first recipient of a rep's mail who is not us nor an agent (and, if asked, is a known contact)."""
    ours = {*settings.mailboxes, *settings.log_mailboxes}
    # Our SMTP server takes support+anything@ for support@: reply addresses and tags are ours too.
    candidates = [
        address for address in dict.fromkeys([*parsed.to, *parsed.cc])
        if address not in ours and _without_plus_tag(address) not in ours
    ]
    agents = set(session.scalars(select(Agent.email).where(Agent.email.in_(candidates))))
    candidates = [address for address in candidates if address not in agents]
    if known_contacts_only and candidates:
        known = set(session.scalars(select(ContactEmail.address).where(ContactEmail.address.in_(candidates))))
        candidates = [address for address in candidates if address in known]
    return candidates[0] if candidates else None


def _without_plus_tag(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def _rep_sent_at(*, parsed: ParsedEmail, row: InboundEmail) -> datetime:
    """When the rep sent the mail: its Date, since a copy may reach us long after (a Sent folder read late),
    but never later than our receipt (a clock running fast must not place it in the future)."""
    if parsed.date is None:
        return row.received_at
    return min(parsed.date.astimezone(UTC), row.received_at)


def _customer_wrote_since(*, session: Session, ticket: Ticket, since: datetime) -> bool:
    """Whether someone wrote on ``ticket`` after ``since``, which rep mail sent at ``since`` cannot answer."""
    later = session.scalar(
        select(Interaction.id)
        .where(
            Interaction.ticket_id == ticket.id,
            Interaction.direction == Direction.INBOUND,
            Interaction.classification == MailKind.NORMAL.value,
            Interaction.occurred_at > since + REP_CLOCK_SKEW,
        )
        .limit(1)
    )
    return later is not None


def _thread(
    *, session: Session, parsed: ParsedEmail, sender: Contact, settings: Settings, recipients: Sequence[str]
) -> ThreadMatch:
    secret = settings.secret_key.get_secret_value()
    signed_ticket_id = next(
        (t for t in (verify_message_id(m, secret) for m in parsed.referenced_ids) if t is not None), None
    )
    reply_address_ticket_id = next(
        (found[1] for found in (verify_reply_address(a, secret) for a in recipients) if found is not None),
        None,
    )
    return find_email_thread(
        session=session,
        referenced_ids=parsed.referenced_ids,
        subject=parsed.subject,
        sender=sender,
        sender_address=parsed.from_address,
        signed_ticket_id=signed_ticket_id,
        reply_address_ticket_id=reply_address_ticket_id,
    )


def _record_bounce(
    *, session: Session, parsed: ParsedEmail, now: datetime, settings: Settings
) -> OutboundEmail | None:
    """Apply a delivery status notification to the outbound message it reports on; None if it is not ours."""
    bounce = parsed.classification.bounce
    if parsed.classification.kind != MailKind.BOUNCE or bounce is None or not bounce.original_message_id:
        return None
    failed = [r.address for r in bounce.recipients if r.address]
    diagnostic = next((r.diagnostic for r in bounce.recipients if r.diagnostic), "") or ""
    outbound = mark_bounced(
        session=session, message_id=bounce.original_message_id, permanent=bounce.permanent, recipients=failed,
        now=now, settings=settings, diagnostic=diagnostic,
    )
    if outbound is not None:
        log.info("bounce for outbound %s (%s)", outbound.id, "permanent" if bounce.permanent else "transient")
    return outbound


def _add_email_interaction(
    *,
    session: Session,
    parsed: ParsedEmail,
    external_id: str,
    ticket: Ticket,
    contact: Contact,
    direction: Direction,
    reason: str,
    row: InboundEmail,
    now: datetime,
    blobs: BlobStore,
    flag: str | None = None,
    occurred_at: datetime | None = None,
) -> Interaction:
    interaction = add_interaction(
        session=session,
        ticket=ticket,
        contact=contact,
        channel=Channel.EMAIL,
        direction=direction,
        external_id=external_id,
        subject=parsed.subject,
        text=parsed.visible_text or parsed.text,
        full_text=parsed.text,
        html=parsed.html,
        author_name=parsed.from_name,
        author_address=parsed.from_address,
        # Our receipt time, not the sender's Date header: senders' clocks are wrong often enough to misorder.
        occurred_at=occurred_at or row.received_at,
        now=now,
        thread_reason=reason,
        classification=parsed.classification.kind.value,
        cc_addresses=parsed.cc,
        flag=flag,
    )
    for attachment in parsed.attachments:
        interaction.attachments.append(
            Attachment(
                filename=attachment.filename or "attachment",
                content_type=attachment.content_type[:255],
                size=len(attachment.data),
                sha256=blobs.put(attachment.data),
                content_id=attachment.content_id,
                is_inline=attachment.is_inline,
            )
        )
    if interaction.html and any(a.content_id for a in interaction.attachments):
        session.flush()
        urls = {a.content_id: attachment_url(a.id) for a in interaction.attachments if a.content_id}
        interaction.html = rewrite_cid_urls(interaction.html, urls)
    return interaction


def quarantine(*, row: InboundEmail, reason: str, now: datetime) -> ProcessOutcome:
    """Keep the raw row out of processing with a reason a person can act on; the bytes stay."""
    row.status = InboundStatus.QUARANTINED
    row.reason = reason[:2000]
    row.processed_at = now
    log.warning("inbound %s quarantined: %s", row.id, row.reason)
    return ProcessOutcome(row.id, InboundStatus.QUARANTINED, reason=row.reason)


def _mark_not_logged(*, row: InboundEmail, reason: str, now: datetime) -> ProcessOutcome:
    """Done with a row that rightly becomes no interaction, e.g. a rep's private mail from a Sent folder."""
    row.status = InboundStatus.PROCESSED
    row.processed_at = now
    row.reason = reason[:2000]
    log.info("inbound %s not logged: %s", row.id, row.reason)
    return ProcessOutcome(row.id, InboundStatus.PROCESSED, reason=row.reason)


def _mark_processed(
    *, row: InboundEmail, interaction: Interaction, now: datetime, reason: str | None = None
) -> ProcessOutcome:
    row.status = InboundStatus.PROCESSED
    row.processed_at = now
    row.interaction = interaction
    row.reason = reason
    return ProcessOutcome(row.id, InboundStatus.PROCESSED, interaction.id, interaction.ticket_id, reason)


def _short(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:12]

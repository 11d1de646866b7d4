"""The raw inbound e-mail ledger: bytes stored first, keyed by their sha256, processed later by a worker."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.db import is_postgresql
from centrala.core.errors import NotFoundError
from centrala.core.queue import enqueue_after_commit, enqueue_coalesced_after_commit
from centrala.core.settings import Settings
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.tickets.models import Attachment
from centrala.tickets.phone_models import Call

log = logging.getLogger(__name__)

PROCESS_EMAIL_JOB = "centrala.workers.jobs.process_inbound_email"
# New rows are processed in batches by a drain job; one waiting drain is enough for any number of rows.
DRAIN_EMAILS_JOB = "centrala.workers.jobs.drain_inbound_emails"
DRAIN_EMAILS_KEY = "inbound-drain"
# The ``source`` of mail read from a rep's own Sent folder: processed as the rep's mail, like a log address's.
SENT_FOLDER_SOURCE = "imap-sent"
# Raw messages up to this size live in the row; larger ones in the blob store, written and fsynced first.
INLINE_RAW_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class RecordedEmail:
    """The ledger row for a message and whether this call created it."""

    id: int
    sha256: str
    created: bool


@dataclass(frozen=True)
class ArrivedEmail:
    """A message as it arrived, before it is stored: its bytes and envelope."""

    raw: bytes
    mailbox: str
    mail_from: str
    rcpt_tos: Sequence[str]
    peer: str | None = None
    source: str = "smtp"
    # The bytes' sha256 (hex) when the caller has it already.
    sha256: str | None = None
    # When it arrived, if not the ``now`` of the call that stores it.
    received_at: datetime | None = None


def record_inbound_email(
    *,
    session: Session,
    raw: bytes,
    mailbox: str,
    mail_from: str,
    rcpt_tos: Sequence[str],
    now: datetime,
    blobs: BlobStore,
    peer: str | None = None,
    source: str = "smtp",
) -> RecordedEmail:
    """Insert the raw message unless the same bytes are already stored, and queue it for processing on commit."""
    [recorded] = record_inbound_emails(
        session=session,
        emails=[ArrivedEmail(raw, mailbox, mail_from, rcpt_tos, peer, source)],
        now=now,
        blobs=blobs,
    )
    return recorded


def record_inbound_emails(
    *, session: Session, emails: Sequence[ArrivedEmail], now: datetime, blobs: BlobStore
) -> list[RecordedEmail]:
    """Insert the messages whose bytes are not stored yet, with one statement, and queue a drain on commit;
    the row of each message, in order (a message sent twice, even within ``emails``, names one row).

    One INSERT of many rows instead of one per message: the SMTP server's group commits and the IMAP poller's
    batches write dozens at a time, and each statement through the ORM cost more than its share of the commit.
    """
    digests = [email.sha256 or hashlib.sha256(email.raw).hexdigest() for email in emails]
    rows: dict[str, dict[str, object]] = {}
    # In arrival order: ids follow it, and the drain processes by receipt and id (a reply after its parent).
    for email, digest in zip(emails, digests, strict=True):
        if digest not in rows:
            rows[digest] = _ledger_values(email=email, digest=digest, now=now, blobs=blobs)
    table = InboundEmail.__table__
    insert = pg_insert if is_postgresql(session) else sqlite_insert
    # The rows go as parameters, not in values(): SQLAlchemy caches the statement's compiled form for a list of
    # parameters ("insertmanyvalues", still one INSERT of all the rows), while rows given to values() are part of
    # the statement and compiled anew every time, which took more CPU than the commit.
    statement = (
        insert(table).on_conflict_do_nothing(index_elements=["sha256"]).returning(table.c.id, table.c.sha256)
    )
    created = {digest: row_id for row_id, digest in session.execute(statement, list(rows.values()))}
    missing = [digest for digest in rows if digest not in created]
    existing: dict[str, int] = {}
    if missing:
        found = session.execute(select(table.c.id, table.c.sha256).where(table.c.sha256.in_(missing)))
        existing = {digest: row_id for row_id, digest in found}
    if created:
        enqueue_coalesced_after_commit(session, DRAIN_EMAILS_JOB, key=DRAIN_EMAILS_KEY)
    recorded: list[RecordedEmail] = []
    first_seen: set[str] = set()
    for email, digest in zip(emails, digests, strict=True):
        is_new = digest in created and digest not in first_seen
        first_seen.add(digest)
        row_id = created.get(digest) or existing[digest]
        if is_new:
            log.info("stored inbound %s as %s (%d bytes)", digest[:12], row_id, len(email.raw))
        else:
            log.info("inbound %s already stored as %s", digest[:12], row_id)
        recorded.append(RecordedEmail(id=row_id, sha256=digest, created=is_new))
    return recorded


def _ledger_values(*, email: ArrivedEmail, digest: str, now: datetime, blobs: BlobStore) -> dict[str, object]:
    inline = len(email.raw) <= INLINE_RAW_LIMIT
    if not inline:
        blobs.put(email.raw)
    return {
        "sha256": digest,
        "raw": email.raw if inline else None,
        "blob_sha256": None if inline else digest,
        "size": len(email.raw),
        "source": email.source,
        "mailbox": email.mailbox,
        "mail_from": email.mail_from,
        "rcpt_tos": list(email.rcpt_tos),
        "peer": email.peer,
        "received_at": email.received_at or now,
        "queued_at": email.received_at or now,
        "status": InboundStatus.RECEIVED,
        "attempts": 0,
    }


def load_raw(*, row: InboundEmail, blobs: BlobStore) -> bytes:
    """The raw bytes of a ledger row, wherever they are kept.

    Raises:
        NotFoundError: the retention sweep deleted them.
    """
    if row.raw is not None:
        return row.raw
    if row.raw_deleted_at is not None:
        raise NotFoundError(
            f"the raw bytes of inbound e-mail {row.id} were deleted on {row.raw_deleted_at:%Y-%m-%d} "
            "after the retention period (CENTRALA_RAW_MAIL_RETENTION_DAYS)"
        )
    if row.blob_sha256 is None:
        raise ValueError(f"inbound email {row.id} has neither inline bytes nor a blob")
    return blobs.get(row.blob_sha256)


def requeue_stale_emails(*, session: Session, now: datetime, older_than: timedelta, limit: int = 1000) -> list[int]:
    """Queue again the rows still ``received`` after ``older_than``: their job was lost or its worker died."""
    ids = list(
        session.scalars(
            select(InboundEmail.id)
            .where(
                InboundEmail.status == InboundStatus.RECEIVED,
                func.coalesce(InboundEmail.queued_at, InboundEmail.received_at) < now - older_than,
            )
            .order_by(InboundEmail.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(update(InboundEmail).where(InboundEmail.id.in_(ids)).values(queued_at=now))
        # A drain takes every pending row; a fresh one, not coalesced: the waiting mark may be that of the
        # very job that was lost.
        enqueue_after_commit(session, DRAIN_EMAILS_JOB)
    return ids


def replay_quarantined(*, session: Session, inbound_id: int) -> InboundEmail | None:
    """Hand a quarantined message back to the workers (after the fault that stopped it was fixed); None when
    there is no such row. A processed row is left alone and returned as it is."""
    row = session.get(InboundEmail, inbound_id)
    if row is None or row.status == InboundStatus.PROCESSED:
        return row
    row.status, row.reason, row.processed_at = InboundStatus.RECEIVED, None, None
    enqueue_after_commit(session, PROCESS_EMAIL_JOB, row.id, job_id=f"inbound-email-{row.id}")
    return row


class LedgerQuarantine:
    """The console's view of quarantined mail (``console.web.Quarantine``), read from the inbound ledger."""

    def list(self, session: Session, limit: int) -> list[InboundEmail]:
        return list(
            session.scalars(
                select(InboundEmail)
                .where(InboundEmail.status == InboundStatus.QUARANTINED)
                .order_by(InboundEmail.id.desc())
                .limit(limit)
            )
        )

    def raw(self, session: Session, settings: Settings, inbound_id: int) -> bytes | None:
        row = session.get(InboundEmail, inbound_id)
        return load_raw(row=row, blobs=BlobStore(settings.blob_dir)) if row is not None else None

    def replay(self, session: Session, inbound_id: int) -> bool:
        row = session.get(InboundEmail, inbound_id)
        if row is None or row.status != InboundStatus.QUARANTINED:
            return False
        replay_quarantined(session=session, inbound_id=inbound_id)
        return True


RAW_PURGE_BATCH = 500


@dataclass(frozen=True)
class PurgedRawMail:
    """How many rows lost their raw bytes, and the blobs no row refers to any more."""

    count: int
    unused_blobs: list[str]


def purge_raw_mail(
    *, session: Session, now: datetime, older_than: timedelta, limit: int = RAW_PURGE_BATCH
) -> PurgedRawMail:
    """Delete the raw bytes of processed messages received more than ``older_than`` ago (at most ``limit``).

    The ledger row (sha256, envelope, status) and the interaction parsed from the message stay; quarantined
    and unprocessed messages keep their bytes, since they may still be replayed. Returns the digests of blobs
    that no longer belong to any row: the caller deletes those files once the transaction has committed, so
    that a rollback never leaves a row pointing at a deleted file.
    """
    rows = list(
        session.execute(
            select(InboundEmail.id, InboundEmail.blob_sha256)
            .where(
                InboundEmail.status == InboundStatus.PROCESSED,
                InboundEmail.raw_deleted_at.is_(None),
                InboundEmail.received_at < now - older_than,
            )
            .order_by(InboundEmail.id)
            .limit(limit)
        )
    )
    if not rows:
        return PurgedRawMail(0, [])
    session.execute(
        update(InboundEmail)
        .where(InboundEmail.id.in_([row.id for row in rows]), InboundEmail.status == InboundStatus.PROCESSED)
        .values(raw=None, blob_sha256=None, raw_deleted_at=now)
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    digests = {row.blob_sha256 for row in rows if row.blob_sha256 is not None}
    log.info("deleted the raw bytes of %d processed inbound e-mail(s)", len(rows))
    return PurgedRawMail(len(rows), sorted(digests - _blobs_still_used(session=session, digests=digests)))


def _blobs_still_used(*, session: Session, digests: set[str]) -> set[str]:
    """Those of ``digests`` another row still refers to (an attachment or recording with the same bytes)."""
    if not digests:
        return set()
    used = set(session.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(digests))))
    used |= set(session.scalars(select(Call.recording_sha256).where(Call.recording_sha256.in_(digests))))
    used |= set(
        session.scalars(select(InboundEmail.blob_sha256).where(InboundEmail.blob_sha256.in_(digests)))
    )
    return used

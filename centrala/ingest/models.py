"""Raw ledgers: every inbound message exactly as it arrived, written before anything else happens."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrala.core.db import Base, UTCDateTime
from centrala.tickets.models import Interaction, str_enum


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    QUARANTINED = "quarantined"


class InboundEmail(Base):
    """A raw inbound e-mail, unique on the sha256 of its bytes; large messages keep their bytes in the blob store."""

    __tablename__ = "inbound_email"
    __table_args__ = (Index(None, "status", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    blob_sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16), default="smtp")
    mailbox: Mapped[str] = mapped_column(String(320))
    mail_from: Mapped[str] = mapped_column(String(998), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)
    peer: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the row was last handed to the queue; the sweeper hands it over again when that is long ago. A
    # drain reserves the rows it parses by moving this ahead (ingest.process.reserve_pending_emails).
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[InboundStatus] = mapped_column(str_enum(InboundStatus), default=InboundStatus.RECEIVED)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when the retention sweep deleted the raw bytes (``raw`` and the blob) of this processed message.
    raw_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The message's Message-ID, written when a drain parses it: a reply processed in another batch looks for
    # its parent among the pending rows by it.
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interaction.id", ondelete="SET NULL"), index=True
    )
    # Set with the interaction before it has an id: the row's outcome is written in the same flush.
    interaction: Mapped[Interaction | None] = relationship()


class ImapCursor(Base):
    """How far one IMAP source's folder is imported: UID watermarks, valid within one UIDVALIDITY.

    RFC 3501 §2.3.1.1: UIDs ascend within a folder and are not reused while its UIDVALIDITY stays the same;
    when UIDVALIDITY changes the watermarks are void and the folder is read again from the start (the
    ledger's sha256 keeps the messages we already have from being stored twice).
    """

    __tablename__ = "imap_cursor"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    folder: Mapped[str] = mapped_column(String(1000), primary_key=True)
    # UIDVALIDITY and UIDs are 32-bit unsigned (RFC 3501 §9, nz-number): too large for a signed INTEGER.
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    # The highest UID whose message is committed to the ledger, in the same transaction as the message.
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    # The highest UID whose after-import action (\Seen or move) is done. The action follows the commit, so a
    # crash in between leaves messages in (after_import_uid, last_uid]: the next pass acts on them again.
    after_import_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CallEventRecord(Base):
    """A raw Twilio webhook request, stored before it is answered; unique on its natural key.

    ``form`` keeps every parameter exactly as Twilio sent it; ``context`` what the route added (the queue
    and the agents it rang), which the form cannot carry.
    """

    __tablename__ = "call_event"
    __table_args__ = (Index(None, "status", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    call_sid: Mapped[str] = mapped_column(String(34), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    form: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    context: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[InboundStatus] = mapped_column(str_enum(InboundStatus), default=InboundStatus.RECEIVED)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

"""Raw ledgers: every inbound message exactly as it arrived, written before anything else happens."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from centrala.core.db import Base, UTCDateTime
from centrala.tickets.models import str_enum


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
    # When the row was last handed to the queue; the sweeper hands it over again when that is long ago.
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[InboundStatus] = mapped_column(str_enum(InboundStatus), default=InboundStatus.RECEIVED)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str | None] = mapped_column(String(998))
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interaction.id", ondelete="SET NULL"), index=True
    )

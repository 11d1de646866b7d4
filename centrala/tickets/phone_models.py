"""Tables of telephone calls: one row per call, derived from its raw Twilio events, with its call-back task."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrala.core.db import Base, UTCDateTime
from centrala.tickets.models import Agent, Contact, Interaction, Queue, Ticket, str_enum


class CallerMatch(enum.StrEnum):
    """How the caller's number led to a contact."""

    SINGLE = "single"  # exactly one contact has the number
    SHARED = "shared"  # several contacts share it: all are listed, none silently chosen for the screen-pop
    PROVISIONAL = "provisional"  # nobody had it: a provisional contact was created
    WITHHELD = "withheld"  # no number to match (withheld, a browser client, a SIP address)


class CallbackState(enum.StrEnum):
    """The call-back task of a missed call or voicemail."""

    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


class Call(Base):
    """One telephone call as Centrala knows it: the call state machine's snapshot of its stored events.

    ``state``, ``outcome`` and the figures are recomputed from every stored event each time one arrives
    (``telephony.calls.replay_events``), so late, repeated or reordered callbacks give the same row.
    """

    __tablename__ = "call"
    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "callback_state", "callback_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(34), unique=True)
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    from_number: Mapped[str | None] = mapped_column(String(20), index=True)
    from_raw: Mapped[str | None] = mapped_column(String(200))
    to_number: Mapped[str | None] = mapped_column(String(20))
    caller_name: Mapped[str | None] = mapped_column(String(200))
    line_number: Mapped[str | None] = mapped_column(String(20))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="SET NULL"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"), index=True)
    # Agents whose phones or browsers were rung (screen-pop recipients).
    rung_agent_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="ringing")
    outcome: Mapped[str | None] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ring_seconds: Mapped[int | None] = mapped_column(Integer)
    wait_seconds: Mapped[int | None] = mapped_column(Integer)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    recording_sid: Mapped[str | None] = mapped_column(String(34))
    recording_url: Mapped[str | None] = mapped_column(String(1000))
    recording_duration: Mapped[int | None] = mapped_column(Integer)
    # The audio, once downloaded from Twilio into the blob store.
    recording_sha256: Mapped[str | None] = mapped_column(String(64))
    recording_size: Mapped[int | None] = mapped_column(Integer)
    transcription_text: Mapped[str | None] = mapped_column(Text)

    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"), index=True)
    caller_match: Mapped[CallerMatch] = mapped_column(str_enum(CallerMatch), default=CallerMatch.WITHHELD)
    candidate_contact_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"), index=True)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interaction.id", ondelete="SET NULL"))
    # What the agent wrote about the call, and their own outcome (e.g. "resolved", "follow-up needed").
    note: Mapped[str] = mapped_column(Text, default="")
    agent_outcome: Mapped[str | None] = mapped_column(String(40))

    callback_state: Mapped[CallbackState | None] = mapped_column(str_enum(CallbackState))
    callback_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    callback_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The call that answered the call-back (ours to them, or theirs to us that an agent took).
    callback_call_id: Mapped[int | None] = mapped_column(ForeignKey("call.id", ondelete="SET NULL"))
    # A call we placed that returns this call (click-to-call from the caller log).
    callback_for_call_id: Mapped[int | None] = mapped_column(ForeignKey("call.id", ondelete="SET NULL"))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    contact: Mapped[Contact | None] = relationship()
    agent: Mapped[Agent | None] = relationship()
    queue: Mapped[Queue | None] = relationship()
    ticket: Mapped[Ticket | None] = relationship()
    interaction: Mapped[Interaction | None] = relationship()

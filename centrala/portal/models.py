"""Tables of the portal: sign-in links and signed-in sessions, both stored only as hashes of their secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrala.core.db import Base, UTCDateTime
from centrala.tickets.models import Contact


class PortalSignInToken(Base):
    """One sign-in link sent by e-mail: valid until ``expires_at``, used once, revoked by a newer link.

    Only the sha256 of the 256-bit secret is kept, so a copy of the database signs nobody in.
    """

    __tablename__ = "portal_sign_in_token"
    __table_args__ = (Index(None, "contact_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Where to go after signing in: a portal path, checked when the link is made.
    next_path: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    contact: Mapped[Contact] = relationship()


class PortalSession(Base):
    """A signed-in browser: the cookie holds the secret, the row its sha256."""

    __tablename__ = "portal_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    contact: Mapped[Contact] = relationship()

"""The inbound ledger in the API: quarantined messages with their reasons, their raw bytes, and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from centrala.core.blobs import BlobStore
from centrala.core.errors import ConflictError, NotFoundError
from centrala.core.ids import PathId
from centrala.ingest.ledger import load_raw, replay_quarantined
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.tickets.api import SessionDep, SettingsDep, get_current_agent
from centrala.tickets.queries import MAX_ID

router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_current_agent)], tags=["inbound e-mail"])


class InboundEmailRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    source: str
    mailbox: str
    mail_from: str
    size: int
    received_at: datetime
    status: InboundStatus
    reason: str | None
    message_id: str | None
    interaction_id: int | None
    attempts: int


@router.get("/inbound-emails")
def list_inbound_emails(
    session: SessionDep,
    status: InboundStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # Bounded like the tickets API's offset: a larger one overflowed the database's integer (a 500).
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[InboundEmailRead]:
    """Inbound e-mails, newest first; ``status=quarantined`` lists the ones that need a person."""
    statement = select(InboundEmail).order_by(InboundEmail.id.desc()).limit(limit).offset(offset)
    if status is not None:
        statement = statement.where(InboundEmail.status == status)
    return [InboundEmailRead.model_validate(row) for row in session.scalars(statement)]


def _get_or_raise(session: SessionDep, inbound_id: int) -> InboundEmail:
    row = session.get(InboundEmail, inbound_id)
    if row is None:
        raise NotFoundError(f"no inbound e-mail {inbound_id}")
    return row


@router.get("/inbound-emails/{inbound_id}/raw", response_class=Response)
def download_raw(session: SessionDep, settings: SettingsDep, inbound_id: PathId) -> Response:
    """The message exactly as it arrived, as a file to save."""
    row = _get_or_raise(session, inbound_id)
    return Response(
        content=load_raw(row=row, blobs=BlobStore(settings.blob_dir)),
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="inbound-{row.id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/inbound-emails/{inbound_id}/replay", status_code=202)
def replay_inbound_email(session: SessionDep, inbound_id: PathId) -> InboundEmailRead:
    """Process a quarantined message again, e.g. after the fault that stopped it was fixed."""
    row = _get_or_raise(session, inbound_id)
    if row.status == InboundStatus.PROCESSED:
        raise ConflictError(f"inbound e-mail {inbound_id} is already processed")
    replay_quarantined(session=session, inbound_id=inbound_id)
    session.commit()
    return InboundEmailRead.model_validate(row)

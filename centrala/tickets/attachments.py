"""Attachment downloads: always as a file to save, never rendered by the browser as a page."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from centrala.core.blobs import BlobStore
from centrala.core.errors import NotFoundError
from centrala.core.ids import PathId
from centrala.tickets.agents import may_work_ticket
from centrala.tickets.api import SessionDep, SettingsDep, get_current_agent
from centrala.tickets.models import Agent, Attachment

# Raster images keep their type so that an <img> in a sanitised e-mail can show them; anything else, SVG and
# HTML included, is served as opaque bytes.
DISPLAYABLE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_current_agent)], tags=["attachments"])


def attachment_url(attachment_id: int) -> str:
    """Where the API serves an attachment; used to rewrite ``cid:`` references in e-mail HTML."""
    return f"/api/v1/attachments/{attachment_id}"


def download_name(attachment: Attachment) -> str:
    """A generated file name: the sender's name for it is shown, never used on the recipient's disk."""
    extension = mimetypes.guess_extension(attachment.content_type) or ".bin"
    return f"attachment-{attachment.id}{extension}"


def attachment_response(attachment: Attachment, blobs: BlobStore) -> Response:
    """The attachment's bytes with headers that make every browser save rather than render them."""
    content_type = (
        attachment.content_type
        if attachment.content_type in DISPLAYABLE_TYPES
        else "application/octet-stream"
    )
    return Response(
        content=blobs.get(attachment.sha256),
        media_type=content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{download_name(attachment)}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )


@router.get("/attachments/{attachment_id}", response_class=Response)
def download_attachment(
    session: SessionDep,
    settings: SettingsDep,
    agent: Annotated[Agent, Depends(get_current_agent)],
    attachment_id: PathId,
) -> Response:
    """Download an attachment of a message on a ticket the agent may work."""
    attachment = session.get(Attachment, attachment_id)
    ticket = attachment.interaction.ticket if attachment is not None else None
    if attachment is None or (
        ticket is not None and not may_work_ticket(session=session, agent=agent, ticket=ticket)
    ):
        raise NotFoundError(f"no attachment {attachment_id}")
    return attachment_response(attachment, BlobStore(settings.blob_dir))

"""Builders of realistic raw e-mails for tests."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime
from datetime import UTC, datetime


def make_mail(
    *,
    sender: str = "Jana Nováková <jana@example.cz>",
    to: str = "support@localhost",
    subject: str = "Nefunguje mi přihlášení",
    body: str = "Dobrý den,\nnemohu se přihlásit do účtu.\nDěkuji, Jana",
    message_id: str | None = "<m1@example.cz>",
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
    date: datetime | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A message as a mail client would send it, as wire bytes."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()

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


def make_dsn(
    *,
    original_message_id: str,
    recipient: str = "jana@example.cz",
    status: str = "5.1.1",
    action: str = "failed",
    message_id: str = "<dsn-1@mx.example.net>",
) -> bytes:
    """A delivery status notification (RFC 3464) as an MTA sends it, from the null sender."""
    boundary = "dsn-boundary"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: support@localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Fri, 20 Nov 2026 09:31:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered to <{recipient}>.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@localhost\r\nTo: {recipient}\r\nMessage-ID: {original_message_id}\r\n"
        f"Subject: Re: something\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()

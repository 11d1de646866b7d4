"""Sending composed mail: an SMTP relay in production, a Maildir (``var/outbox/``) in the embedded default.

Both sit behind ``MailTransport``; failures are ``TransientDeliveryError`` (worth another attempt later) or
``PermanentDeliveryError`` (the relay refused the message for good).
"""

from __future__ import annotations

import logging
import mailbox
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from centrala.core.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidInputError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from centrala.core.settings import Settings
from centrala.mail.compose import check_address

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 500


class MailSender(Protocol):
    """Hands composed messages to the next hop."""

    def send(self, *, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        """Send ``raw`` from the envelope sender ``mail_from`` (``""`` for the null sender) to ``rcpt_tos``.

        Raises:
            TransientDeliveryError: 4xx replies, connection errors, timeouts: try again later.
            PermanentDeliveryError: 5xx replies: the message will not be accepted.
        """
        ...


class MailTransport(MailSender, Protocol):
    """A ``MailSender`` for one message at a time, which also opens one for several in a row."""

    def connection(self) -> AbstractContextManager[MailSender]:
        """A sender for several messages in a row (over one SMTP connection), closed at the end of the block."""
        ...


class SmtpRelayTransport:
    """Sends through an SMTP relay named by a URL: ``smtp://user:pass@host:587?starttls=1`` or ``smtps://``.

    ``send`` uses a connection of its own; ``connection()`` one for several messages, as a relay prefers to a
    burst of connections (each a TLS handshake and a login). Without a port, smtp:// uses 25 and smtps:// 465
    (RFC 8314 implicit TLS).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigurationError(
                "the SMTP relay URL is smtp://[user:password@]host[:port] or smtps://..."
            )
        options = parse_qs(parts.query)
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.starttls = options.get("starttls", ["0"])[-1] in ("1", "true", "yes")
        if self.implicit_tls and self.starttls:
            raise ConfigurationError("smtps:// is TLS from the start; starttls=1 goes with smtp://")
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.ssl_context = ssl_context or ssl.create_default_context()

    def __repr__(self) -> str:  # never the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpRelayTransport({scheme}://{self.host}:{self.port}, starttls={self.starttls})"

    def send(self, *, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        """Send one message over a fresh connection; see ``MailSender.send``."""
        with self.connection() as relay:
            relay.send(raw=raw, mail_from=mail_from, rcpt_tos=rcpt_tos)

    @contextmanager
    def connection(self) -> Iterator[MailSender]:
        """One connection for the messages sent in the block: opened by the first, closed (QUIT) at the end."""
        relay = _RelayConnection(self)
        try:
            yield relay
        finally:
            relay.close()

    def open(self) -> smtplib.SMTP:
        """A connection to the relay, upgraded to TLS and logged in as configured; its errors are smtplib's."""
        client = self._connect()
        try:
            if self.starttls:
                client.starttls(context=self.ssl_context)
                client.ehlo()
            if self.username is not None:
                client.login(self.username, self.password)
        except BaseException:
            client.close()
            raise
        return client

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self.ssl_context,
            )
        return smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)


class _RelayConnection:
    """Messages sent one after another over one connection to the relay.

    A connection that failed is dropped, and the next message opens a new one. Before each message after the
    first, a NOOP checks that the relay has not closed the connection meanwhile (relays close idle ones, and
    some after so many messages): a message is never sent again on a connection that broke under it, which
    could deliver it twice.
    """

    def __init__(self, transport: SmtpRelayTransport) -> None:
        self.transport = transport
        self._client: smtplib.SMTP | None = None

    def send(self, *, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        """See ``MailSender.send``."""
        _check_envelope(mail_from, rcpt_tos)
        try:
            client = self._usable_client()
            refused = client.sendmail(mail_from, rcpt_tos, raw)
        except (smtplib.SMTPException, OSError, UnicodeEncodeError) as error:
            # smtplib resets the transaction after a refusal, but a 421 or a broken line leaves nothing to reuse;
            # a new connection costs little next to guessing.
            self.close()
            raise _delivery_error(error) from None
        if refused:
            # Accepted for some recipients: sending again would duplicate it for them, so it counts as sent.
            log.warning("relay refused %d of %d recipient(s)", len(refused), len(rcpt_tos))

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def _usable_client(self) -> smtplib.SMTP:
        if self._client is not None:
            try:
                code, _text = self._client.noop()
            except (smtplib.SMTPException, OSError):
                code = 0
            if code != 250:
                self.close()
        if self._client is None:
            self._client = self.transport.open()
        return self._client


def _delivery_error(error: smtplib.SMTPException | OSError | UnicodeEncodeError) -> DeliveryError:
    """The ``DeliveryError`` that says what ``error``, raised while sending, means for the message."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in error.recipients.values()]
        detail = "; ".join(_reply(code, message) for code, message in error.recipients.values())
        return _by_code(max(codes) if all(code >= 500 for code in codes) else min(codes), detail)
    if isinstance(error, smtplib.SMTPAuthenticationError):
        # Our credentials, not the message, are wrong: keep the message and let the operator fix them.
        return TransientDeliveryError(
            f"the relay refused our login: {_reply(error.smtp_code, error.smtp_error)}", error.smtp_code
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, _reply(error.smtp_code, error.smtp_error))
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return TransientDeliveryError(f"the relay lacks an extension we need: {error}")
    if isinstance(error, UnicodeEncodeError):
        # An address or byte smtplib cannot send without SMTPUTF8: it will not work next time either.
        return PermanentDeliveryError("the envelope is not ASCII and the relay needs it to be")
    # Disconnects, refused connections, timeouts, TLS failures: all worth another attempt.
    return TransientDeliveryError(f"could not talk to the relay: {type(error).__name__}: {error}")


class MaildirTransport:
    """Writes each message into a Maildir (the embedded default, and what tests read).

    ``Return-Path`` and ``Delivered-To`` are prepended, as a delivering MTA would: the envelope stays visible.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"MaildirTransport({self.path})"

    def connection(self) -> AbstractContextManager[MailSender]:
        """This transport itself: each message is a file of its own anyway."""
        return nullcontext(self)

    def send(self, *, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        """Deliver into the Maildir's ``new/``; see ``MailSender.send``."""
        _check_envelope(mail_from, rcpt_tos)
        trace = f"Return-Path: <{mail_from}>\r\n" + "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in rcpt_tos)
        try:
            for folder in ("tmp", "new", "cur"):
                (self.path / folder).mkdir(parents=True, exist_ok=True)
            maildir = mailbox.Maildir(self.path, create=False)
            maildir.add(trace.encode("ascii") + raw)
        except OSError as error:
            raise TransientDeliveryError(f"could not write to the Maildir: {type(error).__name__}") from None


def transport_from_settings(settings: Settings) -> MailTransport:
    """The SMTP relay when ``CENTRALA_SMTP_RELAY_URL`` is set, else the Maildir ``var/outbox/``."""
    if settings.smtp_relay_url:
        return SmtpRelayTransport(
            settings.smtp_relay_url,
            timeout=settings.smtp_relay_timeout_seconds,
            local_hostname=settings.smtp_hostname,
        )
    return MaildirTransport(settings.outbox_dir)


def _check_envelope(mail_from: str, rcpt_tos: Sequence[str]) -> None:
    # smtplib writes these into MAIL FROM and RCPT TO lines: a CR or LF would smuggle in a command.
    if not rcpt_tos:
        raise PermanentDeliveryError("no recipients")
    try:
        if mail_from:
            check_address("MAIL FROM", mail_from)
        for rcpt in rcpt_tos:
            check_address("RCPT TO", rcpt)
    except InvalidInputError as error:
        raise PermanentDeliveryError(f"unusable envelope: {error}") from None


def _by_code(code: int, detail: str) -> TransientDeliveryError | PermanentDeliveryError:
    # RFC 5321 §4.2.1: 4yz is a transient negative completion, 5yz a permanent one.
    if 500 <= code < 600:
        return PermanentDeliveryError(detail, code)
    return TransientDeliveryError(detail, code)


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    text = "".join(char if char.isprintable() else " " for char in text)
    return f"{code} {' '.join(text.split())}"[:MAX_ERROR_LENGTH]

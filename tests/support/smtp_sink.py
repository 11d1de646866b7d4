"""A real SMTP server (aiosmtpd) that keeps what it receives and answers what a test tells it to."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None
    # The client's address and port: messages with the same came over one connection.
    peer: object = None


@dataclass
class SinkHandler:
    """Accepts everything unless ``rcpt_reply`` or ``data_reply`` say otherwise (``451 4.3.0 later``)."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    received: list[ReceivedMail] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login, session.peer)
        )
        return "250 2.0.0 queued"


@dataclass
class SmtpSink:
    handler: SinkHandler
    host: str
    port: int

    def url(self, scheme: str = "smtp", credentials: str = "", query: str = "") -> str:
        at = f"{credentials}@" if credentials else ""
        return f"{scheme}://{at}{self.host}:{self.port}" + (f"?{query}" if query else "")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_sink(
    *,
    credentials: tuple[str, str] | None = None,
    starttls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
    idle_timeout: float | None = None,
) -> Iterator[SmtpSink]:
    """An SMTP server on a free local port; with ``credentials`` it accepts AUTH LOGIN/PLAIN for that pair;
    with ``idle_timeout`` it closes a connection silent that long."""
    handler = SinkHandler()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and credentials is not None
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    options: dict[str, object] = {}
    if credentials is not None:
        options.update(authenticator=authenticate, auth_require_tls=starttls_context is not None)
    if starttls_context is not None:
        options.update(tls_context=starttls_context, require_starttls=True)
    if implicit_tls_context is not None:
        options.update(ssl_context=implicit_tls_context)
    if idle_timeout is not None:
        options.update(server_kwargs={"timeout": idle_timeout})
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield SmtpSink(handler, "127.0.0.1", controller.port)
    finally:
        controller.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A throw-away certificate for 127.0.0.1 made with the openssl command; None when it is not installed."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (FileNotFoundError, subprocess.CalledProcessError):
        return None
    return cert, key

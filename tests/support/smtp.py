"""The SMTP server of the tests, run in-process on its own event loop, and the clients that talk to it: smtplib
for ordinary sessions, ``RawSession`` for exactly the bytes a test means to send."""

from __future__ import annotations

import asyncio
import re
import select
import smtplib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Self

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session, sessionmaker

from centrala.core.db import create_db_engine
from centrala.core.settings import Settings, get_settings
from centrala.ingest.models import InboundEmail
from centrala.ingest.smtp import InboundHandler, InboundSMTPServer, start_smtp_server

SIZE_LIMIT = 10_000
TOO_BIG = (552, b"5.3.4 Message too big for system")
SENDER = "jana@example.cz"


class ServerThread:
    """The real server, started with ``start_smtp_server`` on its own event loop in a background thread."""

    def __init__(self, settings: Settings, handler: InboundHandler, **options: Any) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtp-test-loop", daemon=True)
        self.thread.start()
        started = start_smtp_server(settings, "127.0.0.1", 0, handler=handler, **options)
        self.server: InboundSMTPServer = self.call(started)
        self.port = self.server.port
        self.stopped = False

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace: float = 10) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.call(self.server.stop(grace=grace))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture()
def settings(redis_url: str, committed_db: Engine) -> Settings:
    """The run's settings with a small size limit; writes commit for real and reach the run's Redis."""
    return get_settings().model_copy(
        update={
            "max_message_bytes": SIZE_LIMIT,
            "mailboxes": ["support@localhost", "sales@localhost"],
            "smtp_max_connections": 20,
        }
    )


@pytest.fixture()
def run_server(settings: Settings) -> Iterator[Callable[..., ServerThread]]:
    """Start servers; ``lock_timeout_ms`` gives the server its own engine with that lock timeout, ``options``
    go to ``InboundSMTPServer`` (``session_timeout``, ``min_data_rate``)."""
    servers: list[ServerThread] = []
    engines: list[Engine] = []

    def run(
        server_settings: Settings | None = None,
        *,
        lock_timeout_ms: int | None = None,
        session_factory: Callable[[], Session] | None = None,
        handler_class: type[InboundHandler] = InboundHandler,
        **options: Any,
    ) -> ServerThread:
        server_settings = server_settings or settings
        if lock_timeout_ms is not None:
            with_timeout = server_settings.model_copy(update={"db_lock_timeout_ms": lock_timeout_ms})
            engine = create_db_engine(with_timeout)
            engines.append(engine)
            session_factory = sessionmaker(bind=engine, expire_on_commit=False)
        server = ServerThread(server_settings, handler_class(server_settings, session_factory), **options)
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()
    for engine in engines:
        engine.dispose()


@pytest.fixture()
def smtp_server(run_server: Callable[..., ServerThread]) -> ServerThread:
    return run_server()


def make_message(*, padding: int = 0, marker: str = "") -> bytes:
    """A message with CRLF line ends (as it travels), a line to dot-stuff, and ``padding`` more octets."""
    lines = [f"X-Marker: {marker}"] if marker else []
    lines += [
        "From: Alice Example <alice@example.org>",
        "To: support@localhost",
        "Subject: The printer is on fire",
        f"Message-ID: <{uuid.uuid4().hex}@example.org>",
        "",
        "Hello,",
        ".a line that starts with a dot",
    ]
    lines += ["x" * 76] * (padding // 78)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def connect(port: int, timeout: float = 10) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, timeout=timeout)


def send(
    port: int,
    raw: bytes,
    *,
    sender: str = "alice@example.org",
    recipients: tuple[str, ...] = ("support@localhost",),
) -> tuple[int, bytes]:
    """Send one message through a fresh session; the reply to the end of data."""
    with connect(port, timeout=20) as client:
        client.ehlo("client.example.org")
        assert client.mail(sender)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        return client.data(raw)


def stored(engine: Engine) -> list[InboundEmail]:
    """The ledger as another connection sees it at once: a plain reader, which (unlike our SQLite engine,
    whose every transaction begins IMMEDIATE) never waits for a writer to commit."""
    reader = create_engine(engine.url)
    try:
        with Session(reader) as db:
            return list(db.scalars(sql_select(InboundEmail).order_by(InboundEmail.id)))
    finally:
        reader.dispose()


def queued_id(reply: bytes) -> int:
    match = re.fullmatch(rb"2\.0\.0 Ok: queued as (\d+)", reply)
    assert match, reply
    return int(match.group(1))


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class RawSession:
    """An SMTP client on a plain socket: sends exactly the bytes it is given, reads whole replies."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def reply(self) -> tuple[int, bytes]:
        """The next reply's code and its text (lines of a multiline reply joined by LF)."""
        lines = []
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start_data(self) -> None:
        """Greeting, EHLO, MAIL, RCPT and DATA, each answered as a willing server answers."""
        assert self.reply()[0] == 220
        assert self.command(b"EHLO client.example.org")[0] == 250
        assert self.command(b"MAIL FROM:<" + SENDER.encode() + b">")[0] == 250
        assert self.command(b"RCPT TO:<support@localhost>")[0] == 250
        assert self.command(b"DATA")[0] == 354

    def replies_until_closed(self) -> list[tuple[int, bytes]]:
        replies = []
        while True:
            try:
                replies.append(self.reply())
            except ConnectionError:
                return replies

    def closing_words(self) -> bytes | None:
        """What the server sent before hanging up on this idle session; None while it is still open."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return None
        data = self.sock.recv(1024)
        while data and not data.endswith(b"\r\n"):
            more = self.sock.recv(1024)
            if not more:
                break
            data += more
        return data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def data_section(content: bytes) -> bytes:
    """CRLF ``content`` dot-stuffed and ended with the end-of-data line (RFC 5321 §4.5.2)."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"

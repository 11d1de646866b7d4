"""The inbound SMTP server: accepts mail for our mailboxes and answers 250 once the raw bytes are committed.

The server does the cheap checks (known mailbox at RCPT, size at MAIL and DATA) and hands the raw bytes to
``ingest.ledger.record_inbound_emails``; parsing and every decision about the message happen later in a worker.
The database writes run off the event loop, in writer threads that commit the messages of concurrent DATA
transactions together (group commit): one transaction and one fsync for every message that arrived while the
previous commit was under way, each 250 sent only after the commit that holds its row.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import logging
import queue
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_sessionmaker, hide_sql_parameters
from centrala.core.queue import connect_ahead
from centrala.core.settings import Settings, get_settings
from centrala.core.startup import freeze_loaded_objects
from centrala.ingest.ledger import ArrivedEmail, RecordedEmail, record_inbound_emails
from centrala.ingest.smtp_data import OverLimit, read_mail_data

log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the next command. While the data of a
# message arrives, it is the longest silence between two pieces of it (§4.5.3.2.5 gives the client 3 minutes
# per piece sent).
SESSION_TIMEOUT_SECONDS = 300.0
# The data of a message must also arrive at this average rate (octets a second) past its first session
# timeout, as Postfix's smtpd_min_data_rate: a slow link's 25 MiB upload takes as long as it takes, while a
# client trickling an octet a few minutes apart cannot hold a connection slot for ever.
MIN_DATA_RATE = 500
# RFC 5321 §4.5.3.2.6: the client waits 10 minutes for the reply to the end of data; answer well before.
WRITE_TIMEOUT_SECONDS = 60.0
# How long a stop waits for sessions in the middle of DATA before closing them anyway.
SHUTDOWN_GRACE_SECONDS = 25.0
# RFC 5321 §4.5.3.1.8 asks for at least 100 recipients; every one of ours is a local mailbox anyway.
MAX_RECIPIENTS = 100
# When every connection slot is taken, a session silent this long is taken to be idle (a live client answers
# each reply well within it) and the longest-idle one outside DATA is closed to make room for a newcomer, as
# an MTA under stress shortens its timeouts (Postfix's stress mode): otherwise idle connections lock every
# sender out for the whole session timeout.
IDLE_WHEN_FULL_SECONDS = 2.0
# Writer threads: each commits one group at a time. Two let a group be written while another commits.
WRITE_THREADS = 2
# The most messages one commit holds; more wait for the next.
MAX_GROUP = 64

# RFC 5321 §4.2.2 reply codes with RFC 3463 enhanced status codes.
REPLY_RECIPIENT_OK = "250 2.1.5 Ok"
REPLY_BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please retry later"
REPLY_TOO_BIG = "552 5.3.4 Message too big for system"
REPLY_TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections, try again later"
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
REPLY_IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
REPLY_DATA_TIMEOUT = "421 4.4.2 Timeout while receiving the message, closing connection"
# aiosmtpd's words for a DATA line over the limit, kept as clients have seen them.
REPLY_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"

# aiosmtpd's own reply to MAIL FROM ... SIZE=n over the limit lacks the enhanced status code; it is
# rewritten to REPLY_TOO_BIG.
_AIOSMTPD_TOO_BIG = "552 Error: message size exceeds fixed maximum message size"
_AIOSMTPD_MALFORMED_ADDRESS = "553 5.1.3 Error: malformed address"

# A MAIL FROM or RCPT TO path as nearly every client writes it: <local@domain>, both dot-atoms (RFC 5322
# §3.2.3), then nothing or parameters after a space. Its address is the text between the brackets.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<(?P<address>(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@{_ATEXT}(?:\.{_ATEXT})*)>(?:[ \t]+(?=[^ \t(])|\Z)"
)


def is_valid_address(address: str) -> bool:
    """Whether ``address`` is a plausible envelope address: one @, both parts filled, no space or control."""
    if address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not local or not domain:
        return False
    return not any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in address)


def _peer_ip(peer: Any) -> str | None:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else None


class InboundHandler:
    """aiosmtpd handler: accepts our mailboxes at RCPT and writes each message to the ledger at DATA."""

    def __init__(
        self,
        settings: Settings | None = None,
        sessionmaker: Callable[[], Session] | None = None,
        *,
        max_workers: int = WRITE_THREADS,
        write_timeout: float = WRITE_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings or get_settings()
        self.sessionmaker = sessionmaker or get_sessionmaker()
        self.blobs = BlobStore(self.settings.blob_dir)
        self.write_timeout = write_timeout
        self._mailboxes = frozenset(
            mailbox.lower() for mailbox in (*self.settings.mailboxes, *self.settings.log_mailboxes)
        )
        self._writer = GroupWriter(self._record_group, threads=max_workers)
        self._writes: set[asyncio.Future[RecordedEmail]] = set()

    @property
    def in_flight_writes(self) -> int:
        """How many database writes have started and not yet finished."""
        return len(self._writes)

    def match_mailbox(self, address: str) -> str | None:
        """Our mailbox (lower-cased) that ``address`` reaches, ``support+tag@x`` -> ``support@x``; or None."""
        address = address.lower()
        if address in self._mailboxes:
            return address
        local, _, domain = address.rpartition("@")
        base, plus, _tag = local.partition("+")
        if plus and base:
            candidate = f"{base}@{domain}"
            if candidate in self._mailboxes:
                return candidate
        return None

    async def handle_RCPT(
        self, server: SMTP, session: SMTPSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept a recipient that is one of our mailboxes or a plus-address of one."""
        if not is_valid_address(address):
            return REPLY_BAD_RECIPIENT_SYNTAX
        if self.match_mailbox(address) is None:
            log.info("refused recipient at unknown mailbox (domain %r)", address.rpartition("@")[2][:100])
            # RFC 5321 §3.3: 550 for a mailbox we do not have; the reply names only what the client sent.
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            # RFC 5321 §4.5.3.1.10: 452 (temporary), the client sends the rest in another transaction.
            return REPLY_TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return REPLY_RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:
        """Commit the raw message to the ledger in a worker thread, then answer 250 with its ledger id."""
        raw: bytes = envelope.original_content or b""
        sha256 = hashlib.sha256(raw).hexdigest()
        digest = sha256[:12]
        mailbox = self.match_mailbox(envelope.rcpt_tos[0])
        if mailbox is None:
            # Only reachable when a subclass accepts other recipients at RCPT; refuse rather than guess.
            log.error("inbound %s: first recipient is not one of our mailboxes", digest)
            return REPLY_TEMPORARY_FAILURE
        mail_from = envelope.mail_from or ""
        write = LedgerWrite(
            raw=raw,
            mailbox=mailbox,
            # The null reverse-path of bounces, RFC 5321 §4.5.5.
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            peer=_peer_ip(session.peer),
            now=clock.now(),
            sha256=sha256,
        )
        future = asyncio.wrap_future(self._writer.submit(write))
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)
        try:
            # Shielded: a client that hangs up mid-write does not cancel the write; a retry is deduplicated.
            recorded = await asyncio.wait_for(asyncio.shield(future), self.write_timeout)
        except Exception as error:
            hide_sql_parameters(error)
            log.error(
                "could not store inbound %s (%d bytes), answered 451: %s",
                digest,
                len(raw),
                type(error).__name__,
                exc_info=error,
            )
            # RFC 5321 §4.2.5: after a 4yz the sender keeps the message and retries; our faults are transient.
            return REPLY_TEMPORARY_FAILURE
        duplicate = "" if recorded.created else " (duplicate)"
        log.info("accepted inbound %s as %s%s", digest, recorded.id, duplicate)
        # RFC 5321 §6.1: a 250 to the end of data accepts responsibility for the message: only after commit.
        return f"250 2.0.0 Ok: queued as {recorded.id}"

    async def handle_exception(self, error: Exception) -> str:
        """Log an unexpected error and answer 451 (aiosmtpd's default: a permanent 500 quoting the error)."""
        hide_sql_parameters(error)
        log.error("SMTP session error, answered 451: %s", type(error).__name__, exc_info=error)
        return REPLY_TEMPORARY_FAILURE

    def close(self) -> None:
        """Wait for the writes in progress and stop the write threads."""
        self._writer.close()

    def _record_group(self, writes: list[LedgerWrite]) -> list[RecordedEmail]:
        """Store every message of ``writes`` in one transaction; the rows exist once this returns."""
        with self.sessionmaker() as db:
            recorded = record_inbound_emails(
                session=db,
                emails=[
                    ArrivedEmail(
                        raw=write.raw,
                        mailbox=write.mailbox,
                        mail_from=write.mail_from,
                        rcpt_tos=write.rcpt_tos,
                        peer=write.peer,
                        sha256=write.sha256,
                        received_at=write.now,
                    )
                    for write in writes
                ],
                now=writes[0].now,
                blobs=self.blobs,
            )
            db.commit()
        return recorded


@dataclass(frozen=True)
class LedgerWrite:
    """One accepted message, as the ledger stores it."""

    raw: bytes
    mailbox: str
    mail_from: str
    rcpt_tos: list[str]
    peer: str | None
    now: datetime
    sha256: str | None = None


@dataclass
class _Pending:
    write: LedgerWrite
    future: concurrent.futures.Future[RecordedEmail] = field(default_factory=concurrent.futures.Future)


class GroupWriter:
    """Writer threads that store queued messages in groups: one commit for all that waited together.

    A commit takes about as long for one row as for fifty (on SQLite the write lock, on PostgreSQL the WAL
    flush), so under load each commit carries every message that arrived while the previous one ran.
    A group that fails on a database error fails every message in it (each is answered 451 and retried
    by its sender); any other failure is retried message by message, so one bad message fails alone.
    """

    def __init__(
        self, write_group: Callable[[list[LedgerWrite]], list[RecordedEmail]], *, threads: int
    ) -> None:
        self._write_group = write_group
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"smtp-ledger-{n}", daemon=True) for n in range(threads)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def submit(self, write: LedgerWrite) -> concurrent.futures.Future[RecordedEmail]:
        """Queue ``write``; the future resolves once its row is committed (or the write failed)."""
        if self._closed:
            raise RuntimeError("the ledger writer is closed")
        pending = _Pending(write)
        self._queue.put(pending)
        return pending.future

    def close(self) -> None:
        """Write what is queued, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._write(group)
            if stop:
                return

    def _write(self, group: list[_Pending]) -> None:
        group = [pending for pending in group if pending.future.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            results = self._write_group([pending.write for pending in group])
        except Exception as error:  # noqa: BLE001 - handed to the sessions waiting for this group, answered 451
            if len(group) == 1 or (isinstance(error, DBAPIError) and not isinstance(error, IntegrityError)):
                for pending in group:
                    pending.future.set_exception(error)
                return
            for pending in group:
                try:
                    [result] = self._write_group([pending.write])
                except Exception as single_error:  # noqa: BLE001 - handed to the one session, answered 451
                    pending.future.set_exception(single_error)
                else:
                    pending.future.set_result(result)
            return
        for pending, result in zip(group, results, strict=True):
            pending.future.set_result(result)


class _Sessions:
    """The open sessions of one server, for the connection limit and an orderly stop."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open: set[InboundSMTP] = set()
        self.draining = False

    def admit(self) -> bool:
        """Whether a new session may open: never while stopping; when full, only if an idle one can go."""
        if self.draining:
            return False
        return len(self.open) < self.max_connections or self._close_longest_idle()

    def _close_longest_idle(self) -> bool:
        idle = [
            session
            for session in self.open
            if session.idle_seconds >= IDLE_WHEN_FULL_SECONDS and not session.in_data and not session.closing
        ]
        if not idle:
            return False
        longest = max(idle, key=lambda session: session.idle_seconds)
        log.warning("SMTP server full: closed a session idle for %.0f s to make room", longest.idle_seconds)
        longest.close_with(REPLY_IDLE_TIMEOUT)
        self.open.discard(longest)
        return True


class InboundSMTP(SMTP):
    """aiosmtpd's SMTP protocol with a connection limit, enhanced status codes and no leaking replies."""

    # aiosmtpd answers a DATA line over RFC 5321's 1,000 octets (§4.5.3.1.6) with a permanent 500, which
    # bounces real mail: HTML from some senders comes in unwrapped lines of many kilobytes. Like Postfix,
    # which accepts long lines, we store them as sent; only a line over this bound, its CRLF included, gets
    # REPLY_LINE_TOO_LONG. It is also the most a command line may buffer, and the size of the pieces DATA is
    # read in. Command lines keep aiosmtpd's own 512-octet limit (§4.5.3.1.4) and its "500 Command line too
    # long".
    line_length_limit = 1024 * 1024

    def __init__(
        self, handler: Any, *, sessions: _Sessions, min_data_rate: int = MIN_DATA_RATE, **kwargs: Any
    ) -> None:
        if kwargs.get("decode_data"):
            raise ValueError("InboundSMTP hands on the raw bytes of a message; decode_data is not supported")
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps these limits in a class attribute that every connection clears and EHLO raises;
        # give each session its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._sessions = sessions
        self._refused = False
        self._in_data = False
        self._in_rcpt = False
        self._heard_at = time.monotonic()
        self._min_data_rate = min_data_rate
        # While a message's data arrives: when the 354 went out, and how many octets came since.
        self._data_started_at: float | None = None
        self._data_octets = 0

    @property
    def in_data(self) -> bool:
        """Whether the session is between DATA and its final reply."""
        return self._in_data

    @property
    def idle_seconds(self) -> float:
        """How long the client has sent nothing."""
        return time.monotonic() - self._heard_at

    @property
    def closing(self) -> bool:
        """Whether the connection is closed or on its way to closing."""
        return self.transport is None or self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and not self._sessions.admit():
            # RFC 5321 §3.8: 421 in place of the greeting is transient (554, §3.1, would be permanent).
            self._refused = True
            reply = REPLY_SHUTTING_DOWN if self._sessions.draining else REPLY_TOO_MANY_CONNECTIONS
            peer = _peer_ip(transport.get_extra_info("peername"))
            log.warning("refused SMTP connection from %s: %s", peer, reply)
            transport.write(reply.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self._heard_at = time.monotonic()
        self._sessions.open.add(self)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._heard_at = time.monotonic()
        if self._data_started_at is not None:
            self._data_octets += len(data)
            self._set_data_timeout()
        super().data_received(data)

    def _set_data_timeout(self) -> None:
        """Time the session out after a session timeout's silence, or once the data fell behind the minimum
        rate (counted from the end of its first session timeout), whichever comes first."""
        assert self._data_started_at is not None
        deadline = self._data_started_at + self._timeout_duration + self._data_octets / self._min_data_rate
        left = min(self._timeout_duration, deadline - self.loop.time())
        # aiosmtpd takes a duration of 0 for "the session timeout".
        self._reset_timeout(max(left, 0.001))

    def _timeout_cb(self) -> None:
        # RFC 5321 §3.8: a server that closes the connection on its own says so with a 421.
        peer = _peer_ip(self.session.peer if self.session else None)
        if self._data_started_at is None:
            log.info("SMTP session from %s timed out", peer)
            self.close_with(REPLY_IDLE_TIMEOUT)
        else:
            log.warning(
                "SMTP session from %s timed out while sending a message (%d octets)", peer, self._data_octets
            )
            self.close_with(REPLY_DATA_TIMEOUT)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._sessions.open.discard(self)
        super().connection_lost(error)

    async def push(self, status: str | bytes) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text == _AIOSMTPD_TOO_BIG:
            # RFC 1870 §6 (SIZE): 552 for a message over the fixed maximum; RFC 3463 X.3.4 "too big".
            status = REPLY_TOO_BIG
        elif self._in_rcpt and text == _AIOSMTPD_MALFORMED_ADDRESS:
            # RFC 5321 §4.2.2: 501 for a syntax error in the argument.
            status = REPLY_BAD_RECIPIENT_SYNTAX
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default (and its answer when the handler's hook raises) is a permanent 500 quoting the
        # error; whatever happens here, the client gets a transient 451 and no exception text.
        hook = getattr(self.event_handler, "handle_exception", None)
        if hook is not None:
            try:
                return str(await hook(error))
            except Exception:
                log.exception("SMTP handle_exception hook failed")
        else:
            hide_sql_parameters(error)
            log.error("SMTP session error, answered 451: %s", type(error).__name__, exc_info=error)
        return REPLY_TEMPORARY_FAILURE

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd reads every path with the e-mail package's RFC 5322 header parser (and declares a class while
        # at it), which took a fifth of the server's CPU per message; a plain path is read here, to the same
        # result (tests/ingest/test_smtp_paths.py compares the two), anything else by aiosmtpd.
        plain = _PLAIN_PATH.match(arg) if arg else None
        if plain is None:
            return super()._getaddr(arg)
        if self.local_part_limit and len(plain["local"]) > self.local_part_limit:
            return None, None
        return plain["address"], arg[plain.end() :]

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        self._in_rcpt = True
        try:
            await super().smtp_RCPT(arg)
        finally:
            self._in_rcpt = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if self._sessions.draining:
            self.close_for_shutdown()
            return
        self._in_data = True
        try:
            await self._receive_message(arg)
        except Exception:
            # A failed DATA ends the transaction: keep no MAIL FROM from it (the next MAIL would get 503).
            self._set_post_data_state()
            raise
        finally:
            self._in_data = False
        if self._sessions.draining:
            self.close_for_shutdown()

    async def _receive_message(self, arg: str) -> None:
        # aiosmtpd's DATA but for the reading: aiosmtpd reads the data a line at a time, in Python, about a
        # millisecond of CPU for an average message, in the process that must keep up with every sender.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # aiosmtpd's timer, set when the DATA command came, would cut off any upload longer than the session
        # timeout; from here each piece of data sets it again.
        self._data_started_at, self._data_octets = self.loop.time(), 0
        self._set_data_timeout()
        try:
            data = await read_mail_data(
                self._reader, line_limit=self.line_length_limit, size_limit=self.data_size_limit
            )
        except asyncio.CancelledError:
            # aiosmtpd cancels the session's task when the client hangs up or the connection is lost.
            self._writer.close()
            raise
        finally:
            self._data_started_at = None
        if not self.closing:
            self._reset_timeout()
        if isinstance(data, OverLimit):
            # RFC 5321 §4.2.5: the refusal comes after the end of data, and the session goes on.
            await self.push(REPLY_TOO_BIG if data is OverLimit.SIZE else REPLY_LINE_TOO_LONG)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = data
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def close_for_shutdown(self) -> None:
        """Tell the client we are going away (RFC 5321 §3.8: 421) and close the connection."""
        self.close_with(REPLY_SHUTTING_DOWN)

    def close_with(self, reply: str) -> None:
        """Send ``reply`` (a 421, RFC 5321 §3.8) unprompted and close the connection."""
        if self.closing:
            return
        self.transport.write(reply.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()


class InboundSMTPServer:
    """The listening SMTP server on an asyncio loop: ``start()``, then ``stop()`` finishes in-flight DATA.

    The server owns its handler: stopping it (or failing to start) closes the handler's write threads.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        handler: InboundHandler | None = None,
        session_timeout: float = SESSION_TIMEOUT_SECONDS,
        min_data_rate: int = MIN_DATA_RATE,
    ) -> None:
        self.settings = settings
        self.handler = handler or InboundHandler(settings)
        self.session_timeout = session_timeout
        self.min_data_rate = min_data_rate
        self._sessions = _Sessions(settings.smtp_max_connections)
        self._server: asyncio.Server | None = None

    @property
    def server(self) -> asyncio.Server:
        """The underlying asyncio server; only after ``start()``."""
        if self._server is None:
            raise RuntimeError("the SMTP server is not started")
        return self._server

    @property
    def port(self) -> int:
        """The port actually listened on (useful when started on port 0)."""
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def open_sessions(self) -> int:
        """How many sessions are connected now."""
        return len(self._sessions.open)

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``host:port`` (default: the configured SMTP host and port)."""
        _quiet_aiosmtpd_logger()
        loop = asyncio.get_running_loop()
        factory = self._protocol_factory(loop)
        try:
            self._server = await loop.create_server(
                factory,
                host or self.settings.smtp_host,
                self.settings.smtp_port if port is None else port,
            )
        except BaseException:
            self.handler.close()
            raise
        log.info("SMTP server listening on port %d", self.port)

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, let sessions in DATA finish (up to ``grace`` s), close the rest, await writes."""
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        self._sessions.draining = True
        self._server.close()
        deadline = loop.time() + grace
        while loop.time() < deadline and (
            self.handler.in_flight_writes or any(session.in_data for session in self._sessions.open)
        ):
            await asyncio.sleep(0.05)
        for session in list(self._sessions.open):
            session.close_for_shutdown()
        await self._server.wait_closed()
        while self._sessions.open and loop.time() < deadline + 1.0:
            await asyncio.sleep(0.01)
        # Writes whose client has gone still commit; the sender's retry finds them by sha256.
        await asyncio.to_thread(self.handler.close)
        log.info("SMTP server stopped")

    def _protocol_factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], InboundSMTP]:
        def make_session() -> InboundSMTP:
            return InboundSMTP(
                self.handler,
                sessions=self._sessions,
                data_size_limit=self.settings.max_message_bytes,
                hostname=self.settings.smtp_hostname,
                ident="Centrala ESMTP",
                timeout=self.session_timeout,
                min_data_rate=self.min_data_rate,
                loop=loop,
            )

        return make_session


def _quiet_aiosmtpd_logger() -> None:
    # aiosmtpd logs every command line, envelope addresses included, at INFO; keep full addresses out of logs.
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.getEffectiveLevel() < logging.WARNING:
        aiosmtpd_log.setLevel(logging.WARNING)


async def start_smtp_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    handler: InboundHandler | None = None,
    **options: Any,
) -> InboundSMTPServer:
    """Start the inbound SMTP server on the running loop and return it, listening; ``options`` go to
    ``InboundSMTPServer`` (``session_timeout``, ``min_data_rate``)."""
    server = InboundSMTPServer(settings, handler=handler, **options)
    await server.start(host, port)
    return server


async def _serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("cannot handle %s here; stop the SMTP server by cancelling it", signum.name)
    server = await start_smtp_server(settings)
    connect_ahead()
    freeze_loaded_objects()
    try:
        await stop.wait()
        log.info("SMTP server stopping")
        # A second signal while sessions drain stops the process the default way.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    finally:
        await server.stop()


def serve_smtp(settings: Settings) -> None:
    """Run the inbound SMTP server on ``smtp_host:smtp_port`` until SIGINT or SIGTERM, then stop cleanly."""
    asyncio.run(_serve(settings))

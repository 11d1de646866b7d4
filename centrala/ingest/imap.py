"""The IMAP poller: copies new messages from IMAP folders into the raw ledger, each exactly once.

Each source of ``Settings.imap_mailboxes`` gets a thread with one connection, and each pass over its folder:

1. SELECTs the folder (EXAMINEs it, read-only, when nothing is to be done after import: RFC 3501 §6.3.2).
   A folder seen for the first time starts where the source's ``start`` says: at its first message, above the
   messages already there, or at a date. A UIDVALIDITY other than the stored one voids the stored UIDs (RFC
   3501 §2.3.1.1): the folder is read again from that start (from the day before the last pass where the
   start was not "all"), and the ledger's sha256 keeps known bytes from being stored twice.
2. Finishes the after-import action of messages committed by an earlier pass that stopped before acting.
3. Searches ``UID n:*`` with n one above the watermark and keeps only UIDs >= n: RFC 3501 §6.4.8 makes
   ``n:*`` match the last message even when its UID is below n.
4. Fetches ``BODY.PEEK[]``, which leaves ``\\Seen`` alone (RFC 3501 §6.4.5), in batches, and commits each
   batch's messages to the ledger together with the advanced watermark, in one transaction. New mail is found
   by UID, not by ``\\Seen``, so a message a person has already read in another client is imported all the same.
5. Only after the commit: sets ``\\Seen``, or moves the message (RFC 6851 MOVE; COPY, ``\\Deleted`` and
   UID EXPUNGE where MOVE is missing), or leaves it, per the source's ``after_import``.

Between passes the connection IDLEs (RFC 2177) until the server announces new messages, renewing the IDLE
before the server's 30-minute inactivity logout; a server without IDLE is polled. A lost connection is made
again with exponential back-off and jitter.

A rep's Sent folder (``kind`` "sent") is read like any other, but only ever EXAMINEd, its messages stored with
source "imap-sent" so that processing logs them as the rep's own mail; by default it starts with the mail sent
from now on.

Why each message lands in the ledger once: a crash after the fetch and before the commit leaves the watermark
where it was, so the batch is fetched and committed again; a crash after the commit and before the action
leaves the watermark past the message, so it is not fetched again, and the next pass catches up on the action
(``ImapCursor.after_import_uid``). Logs name the source and UIDs, never credentials, addresses or bodies.
"""

from __future__ import annotations

import logging
import random
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_sessionmaker, hide_sql_parameters
from centrala.core.errors import ConfigurationError, ConflictError
from centrala.core.queue import connect_ahead
from centrala.core.settings import ImapSource, Settings, get_settings
from centrala.core.startup import freeze_loaded_objects
from centrala.ingest.ledger import SENT_FOLDER_SOURCE, ArrivedEmail, record_inbound_emails
from centrala.ingest.models import ImapCursor

log = logging.getLogger(__name__)

SEEN = b"\\Seen"
DELETED = b"\\Deleted"

# Connect and per-read timeout of the IMAP socket.
SOCKET_TIMEOUT_SECONDS = 60.0
# How long one wait inside IDLE lasts before the stop flag and the renewal deadline are looked at again; a
# wait is a local poll() on the socket, not a command, so a short one costs the server nothing.
IDLE_CHECK_SECONDS = 2.0
# One UID FETCH of bodies asks for at most this many messages, and about this many bytes.
FETCH_BATCH_MESSAGES = 50
FETCH_BATCH_BYTES = 16 * 1024 * 1024
# UIDs per UID FETCH of sizes (RFC 7162 §4 asks clients to keep command lines under 8192 octets).
SIZE_BATCH_MESSAGES = 500
RECONNECT_INITIAL_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 300.0
# How long a stopping ``serve_imap`` waits for each source's thread.
STOP_GRACE_SECONDS = 30.0

# RFC 5321 §4.4: the delivering server puts the envelope sender first in the header as Return-Path.
_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<([^<>\r\n]*)>", re.IGNORECASE | re.MULTILINE)
_HEADER_SCAN_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Watermarks:
    uidvalidity: int
    last_uid: int
    after_import_uid: int


def import_new_messages(
    *,
    source: ImapSource,
    client: IMAPClient,
    session_factory: Callable[[], Session],
    blobs: BlobStore,
    now_fn: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> int:
    """One pass over ``source``'s folder on a logged-in ``client``: commit every new message to the ledger.

    Returns how many messages were taken from the folder (each stored, or found already stored by its sha256).
    Raises on connection and database errors; what was committed before stays committed.
    """
    if source.mailbox is None:
        raise ConfigurationError(f"IMAP source {source.name!r} has no Centrala mailbox")
    # With nothing to do after import, EXAMINE: the server then changes nothing, not even \Recent.
    selected = client.select_folder(source.folder, readonly=source.after_import == "none")
    uidvalidity = int(selected[b"UIDVALIDITY"])
    previous = _read_cursor(session_factory=session_factory, source=source)
    start_after = 0
    if previous is None or previous.uidvalidity != uidvalidity:
        start_after = _first_watermark(
            client=client,
            source=source,
            selected=selected,
            previous_pass_at=previous.updated_at if previous is not None else None,
        )
    marks = _load_watermarks(
        session_factory=session_factory,
        source=source,
        uidvalidity=uidvalidity,
        now=now_fn(),
        start_after=start_after,
    )
    if marks.after_import_uid < marks.last_uid:
        _catch_up_after_import(
            client=client, source=source, session_factory=session_factory, marks=marks, now=now_fn()
        )
    first = marks.last_uid + 1
    new_uids = sorted(uid for uid in client.search(["UID", f"{first}:*"]) if uid >= first)
    taken = 0
    for batch in _fetch_batches(client, new_uids):
        if stop is not None and stop.is_set():
            break
        fetched = client.fetch(batch, ["BODY.PEEK[]"])
        messages: list[tuple[int, bytes]] = []
        for uid in batch:
            raw = fetched.get(uid, {}).get(b"BODY[]")
            if raw is None:
                # Expunged by another client since the search; a later UID moves the watermark past it.
                log.info("IMAP source %s: UID %d is gone, skipped", source.name, uid)
                continue
            messages.append((uid, raw))
        _commit_messages(
            session_factory=session_factory,
            source=source,
            uidvalidity=uidvalidity,
            messages=messages,
            blobs=blobs,
            now=now_fn(),
        )
        committed = [uid for uid, _raw in messages]
        if committed and source.after_import != "none":
            if _act_after_import(client=client, source=source, uids=committed):
                _advance_after_import(
                    session_factory=session_factory,
                    source=source,
                    uidvalidity=uidvalidity,
                    up_to=committed[-1],
                    now=now_fn(),
                )
        taken += len(committed)
    return taken


@dataclass(frozen=True)
class _StoredCursor:
    uidvalidity: int
    updated_at: datetime


def _read_cursor(*, session_factory: Callable[[], Session], source: ImapSource) -> _StoredCursor | None:
    with session_factory() as session:
        cursor = session.get(ImapCursor, (source.name, source.folder))
        return None if cursor is None else _StoredCursor(cursor.uidvalidity, cursor.updated_at)


def _first_watermark(
    *, client: IMAPClient, source: ImapSource, selected: dict, previous_pass_at: datetime | None
) -> int:
    """The watermark a folder starts at when it is new to us, or new under another UIDVALIDITY.

    ``start`` ``all`` reads it from the start. ``now`` starts above the messages already in it (UIDNEXT, RFC
    3501 §7.3.1) and a date at the first message the server received on that day (SEARCH SINCE compares the
    internal date, §6.4.4). A folder that was read before and now has another UIDVALIDITY is read again from
    the day before our last pass, unless it is read from the start anyway: the day before, because SINCE
    counts days in the server's time zone; what is read twice is found in the ledger by its bytes.
    """
    if source.start == "all":
        return 0
    if previous_pass_at is not None:
        since = (previous_pass_at - timedelta(days=1)).date()
    elif source.start_date is not None:
        since = source.start_date
    else:
        return _uid_before_next(client, selected)
    found = client.search(["SINCE", since])
    first = min(found) - 1 if found else _uid_before_next(client, selected)
    log.info("IMAP source %s: starting after UID %d (messages since %s)", source.name, first, since)
    return first


def _uid_before_next(client: IMAPClient, selected: dict) -> int:
    """The highest UID now in the selected folder, or below: UIDNEXT - 1, from SELECT where it is given."""
    if b"UIDNEXT" in selected:
        return max(0, int(selected[b"UIDNEXT"]) - 1)
    return max(client.search(["ALL"]), default=0)


def _load_watermarks(
    *,
    session_factory: Callable[[], Session],
    source: ImapSource,
    uidvalidity: int,
    now: datetime,
    start_after: int = 0,
) -> _Watermarks:
    with session_factory() as session:
        cursor = session.get(ImapCursor, (source.name, source.folder))
        if cursor is None:
            if start_after:
                log.info(
                    "IMAP source %s: first pass, leaving the messages up to UID %d as they were (start %s)",
                    source.name,
                    start_after,
                    source.start,
                )
            cursor = ImapCursor(
                source=source.name,
                folder=source.folder,
                uidvalidity=uidvalidity,
                last_uid=start_after,
                after_import_uid=start_after,
                updated_at=now,
            )
            session.add(cursor)
        elif cursor.uidvalidity != uidvalidity:
            log.warning(
                "IMAP source %s: UIDVALIDITY changed from %d to %d, reading the folder again after UID %d",
                source.name,
                cursor.uidvalidity,
                uidvalidity,
                start_after,
            )
            cursor.uidvalidity = uidvalidity
            cursor.last_uid = cursor.after_import_uid = start_after
            cursor.updated_at = now
        marks = _Watermarks(cursor.uidvalidity, cursor.last_uid, cursor.after_import_uid)
        session.commit()
    return marks


def _commit_messages(
    *,
    session_factory: Callable[[], Session],
    source: ImapSource,
    uidvalidity: int,
    messages: Sequence[tuple[int, bytes]],
    blobs: BlobStore,
    now: datetime,
) -> None:
    """Write a fetched batch of messages (UID, bytes), in UID order, to the ledger and move the watermark past
    the last, in one transaction: one commit (and on SQLite one fsync) per batch, not per message."""
    assert source.mailbox is not None
    if not messages:
        return
    with session_factory() as session:
        source_name = SENT_FOLDER_SOURCE if source.is_sent_folder else "imap"
        rows = record_inbound_emails(
            session=session,
            emails=[
                ArrivedEmail(
                    raw=raw,
                    mailbox=source.mailbox,
                    mail_from=_return_path(raw),
                    rcpt_tos=[source.mailbox],
                    source=source_name,
                )
                for _uid, raw in messages
            ],
            now=now,
            blobs=blobs,
        )
        recorded = [(uid, row) for (uid, _raw), row in zip(messages, rows, strict=True)]
        last_uid = messages[-1][0]
        cursor = session.get(ImapCursor, (source.name, source.folder))
        if cursor is None or cursor.uidvalidity != uidvalidity or cursor.last_uid >= messages[0][0]:
            # Another poller of the same source got here first; roll back and let the next pass look again.
            raise ConflictError(f"IMAP source {source.name}: the cursor moved under this pass")
        cursor.last_uid = last_uid
        if source.after_import == "none":
            cursor.after_import_uid = last_uid
        cursor.updated_at = now
        session.commit()
    for uid, row in recorded:
        duplicate = "" if row.created else " (already stored)"
        log.info("IMAP source %s: UID %d stored as inbound %s%s", source.name, uid, row.id, duplicate)


def _catch_up_after_import(
    *,
    client: IMAPClient,
    source: ImapSource,
    session_factory: Callable[[], Session],
    marks: _Watermarks,
    now: datetime,
) -> None:
    """Do the after-import action for committed messages whose action did not happen (or is not known to)."""
    low, high = marks.after_import_uid + 1, marks.last_uid
    # An explicit range: RFC 3501's n:* quirk does not apply, but filter anyway, it costs nothing.
    pending = sorted(uid for uid in client.search(["UID", f"{low}:{high}"]) if low <= uid <= high)
    if pending:
        log.info("IMAP source %s: finishing after-import for %d message(s)", source.name, len(pending))
        if not _act_after_import(client=client, source=source, uids=pending):
            return
    _advance_after_import(
        session_factory=session_factory, source=source, uidvalidity=marks.uidvalidity, up_to=high, now=now
    )


def _act_after_import(*, client: IMAPClient, source: ImapSource, uids: Sequence[int]) -> bool:
    """Set ``\\Seen`` on, or move, committed messages; False when the server refused (retried next pass)."""
    try:
        if source.after_import == "seen":
            client.add_flags(uids, [SEEN], silent=True)
        elif source.move_to is not None:
            _move(client, uids, source.move_to)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as error:
        # A NO or BAD (no permission, quota, a folder we cannot create): the messages are committed already;
        # keep importing and try the action again on the next pass.
        log.warning(
            "IMAP source %s: %s failed for %d message(s), will retry: %s",
            source.name,
            source.after_import,
            len(uids),
            _short(error),
        )
        return False
    return True


def _move(client: IMAPClient, uids: Sequence[int], folder: str) -> None:
    try:
        _move_once(client, uids, folder)
    except IMAPClientError as error:
        # RFC 3501 §6.4.7: [TRYCREATE] means the target folder does not exist and may be created.
        if isinstance(error, IMAPClientAbortError) or "TRYCREATE" not in str(error):
            raise
        client.create_folder(folder)
        _move_once(client, uids, folder)


def _move_once(client: IMAPClient, uids: Sequence[int], folder: str) -> None:
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    # RFC 6851 §1: without MOVE, COPY then \Deleted then UID EXPUNGE (RFC 4315) of exactly these messages.
    # A crash between COPY and EXPUNGE leaves a second copy in the target folder, never a lost message.
    client.copy(uids, folder)
    client.add_flags(uids, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # Without UIDPLUS only a plain EXPUNGE exists; it also removes what people marked \Deleted.
        client.expunge()


def _advance_after_import(
    *, session_factory: Callable[[], Session], source: ImapSource, uidvalidity: int, up_to: int, now: datetime
) -> None:
    with session_factory() as session:
        cursor = session.get(ImapCursor, (source.name, source.folder))
        if cursor is not None and cursor.uidvalidity == uidvalidity and cursor.after_import_uid < up_to:
            cursor.after_import_uid = min(up_to, cursor.last_uid)
            cursor.updated_at = now
            session.commit()


def _fetch_batches(client: IMAPClient, uids: Sequence[int]) -> Iterator[list[int]]:
    """``uids`` in groups small enough to fetch at once, by count and by RFC822.SIZE."""
    for start in range(0, len(uids), SIZE_BATCH_MESSAGES):
        chunk = list(uids[start : start + SIZE_BATCH_MESSAGES])
        sizes = client.fetch(chunk, ["RFC822.SIZE"])
        batch: list[int] = []
        batch_bytes = 0
        for uid in chunk:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if batch and (len(batch) >= FETCH_BATCH_MESSAGES or batch_bytes + size > FETCH_BATCH_BYTES):
                yield batch
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        if batch:
            yield batch


def _return_path(raw: bytes) -> str:
    """The envelope sender from the Return-Path header, "" when absent or null (RFC 5321 §4.5.5)."""
    head = raw[:_HEADER_SCAN_BYTES]
    ends = [index for index in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if index >= 0]
    if ends:
        head = head[: min(ends)]
    match = _RETURN_PATH.search(head)
    if match is None:
        return ""
    address = match.group(1).decode("ascii", "replace")
    if address.count("@") != 1 or any(char.isspace() or ord(char) < 0x20 for char in address):
        return ""
    return address


@contextmanager
def connect_imap(source: ImapSource, *, timeout: float = SOCKET_TIMEOUT_SECONDS) -> Iterator[IMAPClient]:
    """A client logged in to ``source``'s server; logged out (or, when that fails, closed) on leaving."""
    context = ssl.create_default_context()
    client = IMAPClient(
        source.host,
        port=source.port,
        ssl=source.use_tls,
        ssl_context=context if source.use_tls else None,
        timeout=timeout,
    )
    try:
        if source.starttls:
            client.starttls(context)
        client.login(source.username, source.password)
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            try:
                client.shutdown()
            except Exception:
                pass


def wait_for_new_mail(
    client: IMAPClient,
    *,
    stop: threading.Event,
    renew_seconds: float,
    poll_seconds: float,
    check_seconds: float = IDLE_CHECK_SECONDS,
) -> None:
    """Return when the selected folder may have new messages, when IDLE is due for renewal, or on ``stop``."""
    if not client.has_capability("IDLE"):
        stop.wait(poll_seconds)
        return
    deadline = time.monotonic() + renew_seconds
    client.idle()
    try:
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timeout = min(check_seconds, remaining)
            started = time.monotonic()
            responses = client.idle_check(timeout=timeout)
            if any(_announces_change(response) for response in responses):
                return
            if not responses and time.monotonic() - started < timeout / 2:
                # The socket was readable yet nothing was parsed: imapclient swallows end-of-file here. Leave
                # IDLE; idle_done() then fails on a closed connection and the caller reconnects.
                return
    finally:
        client.idle_done()


def _announces_change(response: tuple[object, ...]) -> bool:
    # RFC 3501 §7.3.1: "* n EXISTS" is sent when the number of messages grows; BYE when the server leaves.
    return (len(response) >= 2 and response[1] == b"EXISTS") or (bool(response) and response[0] == b"BYE")


class _Backoff:
    """Reconnect delays: doubling from ``initial`` up to ``maximum``, each with random jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        # Jitter keeps many sources (and processes) from reconnecting in step after a server restart.
        return delay * random.uniform(0.5, 1.0)


def run_imap_source(
    source: ImapSource,
    stop: threading.Event,
    *,
    settings: Settings | None = None,
    session_factory: Callable[[], Session] | None = None,
    blobs: BlobStore | None = None,
    now_fn: Callable[[], datetime] = clock.now,
    idle_check_seconds: float = IDLE_CHECK_SECONDS,
    reconnect_initial_seconds: float = RECONNECT_INITIAL_SECONDS,
    reconnect_max_seconds: float = RECONNECT_MAX_SECONDS,
) -> None:
    """Import from one source until ``stop`` is set: pass, then IDLE or poll; reconnect after failures."""
    settings = settings or get_settings()
    session_factory = session_factory or get_sessionmaker()
    blobs = blobs or BlobStore(settings.blob_dir)
    if source.mailbox is None:
        source = source.model_copy(update={"mailbox": settings.mailboxes[0]})
    backoff = _Backoff(reconnect_initial_seconds, reconnect_max_seconds)
    while not stop.is_set():
        try:
            with connect_imap(source) as client:
                log.info("IMAP source %s: connected to %s:%d", source.name, source.host, source.port)
                while not stop.is_set():
                    taken = import_new_messages(
                        source=source,
                        client=client,
                        session_factory=session_factory,
                        blobs=blobs,
                        now_fn=now_fn,
                        stop=stop,
                    )
                    backoff.reset()
                    if taken:
                        log.info("IMAP source %s: imported %d message(s)", source.name, taken)
                    wait_for_new_mail(
                        client,
                        stop=stop,
                        renew_seconds=settings.imap_idle_renew_seconds,
                        poll_seconds=settings.imap_poll_seconds,
                        check_seconds=idle_check_seconds,
                    )
        except Exception as error:
            if stop.is_set():
                break
            delay = backoff.next_delay()
            _log_failure(source, error, delay)
            stop.wait(delay)
    log.info("IMAP source %s: stopped", source.name)


def _log_failure(source: ImapSource, error: Exception, delay: float) -> None:
    if isinstance(error, SQLAlchemyError):
        hide_sql_parameters(error)
    expected = isinstance(error, (IMAPClientError, OSError, SQLAlchemyError))
    log.log(
        logging.WARNING if expected else logging.ERROR,
        "IMAP source %s: %s: %s; reconnecting in %.1f s",
        source.name,
        type(error).__name__,
        _short(error),
        delay,
        # A failure we did not expect gets its traceback; the usual network ones would only be noise.
        exc_info=None if expected else error,
    )


def _short(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:200] + "..."




def _quiet_imapclient_logger() -> None:
    # imapclient logs each command at DEBUG (LOGIN is redacted, the login name is not): keep it at WARNING.
    imapclient_log = logging.getLogger("imapclient")
    if imapclient_log.getEffectiveLevel() < logging.WARNING:
        imapclient_log.setLevel(logging.WARNING)


def serve_imap(settings: Settings) -> None:
    """Import from every configured IMAP source, a thread each, until SIGINT or SIGTERM.

    With no source configured it waits idle until stopped, so that a Procfile entry does not crash-loop.
    """
    _quiet_imapclient_logger()
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("IMAP poller stopping (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if not settings.imap_mailboxes:
        log.info("no IMAP sources configured (CENTRALA_IMAP_MAILBOXES); waiting until stopped")
    connect_ahead()
    freeze_loaded_objects()
    threads = [
        threading.Thread(
            target=run_imap_source,
            args=(source, stop),
            kwargs={"settings": settings},
            name=f"imap-{source.name}",
            daemon=True,
        )
        for source in settings.imap_mailboxes
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("IMAP thread %s did not stop in time", thread.name)
    log.info("IMAP poller stopped")

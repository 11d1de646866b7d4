"""Parsing a drain's next batch in a helper process while the worker records the batch before it.

Parsing is a fifth of a worker's time per message and needs nothing but the bytes, so a drain hands the
messages of the batch it reserves next to a helper process and records the current one meanwhile: on a machine
with a core to spare the worker's own time per message shrinks by what parsing took. The helper only parses;
every decision and every write stays in the worker's transaction, so what it does not deliver (it died, the
machine refused a process) the worker parses itself. Large messages are always parsed in the worker: sent to
the helper and back their bytes would be copied twice, and a big message is rare enough that overlap gains
little.

Parsed ahead, a message's attachments are also stored ahead in the content-addressed blob store: its
transaction then finds them there, and writing them (a file and an fsync each) no longer holds the database's
write lock, which on SQLite every SMTP commit waits for. A message its transaction does not record after all
(a duplicate, a refused log address, a rollback) leaves its attachments stored, as a rolled-back transaction
always did.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.errors import MessageRejected
from centrala.core.startup import freeze_loaded_objects
from centrala.ingest.ledger import load_raw
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.mail.parse import ParsedEmail, parse_email

log = logging.getLogger(__name__)

T = TypeVar("T")

# Messages larger than this are parsed by the worker itself.
HELPER_MAX_BYTES = 1024 * 1024
# How long the worker parses by itself after its helper failed.
RETRY_SECONDS = 60
# How often the helper checks that the worker that started it is still there.
PARENT_CHECK_SECONDS = 1.0
# prctl(2): the signal a process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RawEmail:
    """What parsing a pending ledger row needs: its bytes and envelope sender."""

    inbound_id: int
    sha256: str
    raw: bytes
    envelope_sender: str | None


@dataclass(frozen=True)
class ParsedRow:
    """A raw row parsed ahead of its transaction: the message, or why it cannot become an interaction."""

    sha256: str
    parsed: ParsedEmail | None = None
    rejection: str | None = None


def envelope_sender(row: InboundEmail) -> str | None:
    """The row's SMTP envelope sender, "" for the null sender, None when it is not known.

    Our SMTP server saw the envelope. A message read over IMAP has only its Return-Path, which the poller
    stores; without one its ``mail_from`` is "", which means unknown there, not null: taking it for the null
    sender made every such message a bounce, never acknowledged. None lets the parser read Return-Path itself.
    """
    if row.source == "smtp" or row.mail_from:
        return row.mail_from
    return None


def load_pending_emails(*, session: Session, ids: Sequence[int], blobs: BlobStore) -> list[RawEmail]:
    """The bytes of the rows ``ids`` that are still pending; a row whose bytes cannot be read is left out
    (its transaction reads them again, and quarantines it if that fails too)."""
    loaded = []
    rows = session.scalars(
        select(InboundEmail).where(InboundEmail.id.in_(ids), InboundEmail.status == InboundStatus.RECEIVED)
    )
    for row in rows:
        try:
            raw = load_raw(row=row, blobs=blobs)
        except Exception:  # noqa: BLE001 - handled where it is quarantined: in the row's own transaction
            log.info("inbound %s: reading ahead failed, left to its transaction", row.id)
            continue
        loaded.append(RawEmail(row.id, row.sha256, raw, envelope_sender(row)))
    return loaded


def parse_raw_emails(emails: Sequence[RawEmail], blob_root: Path | None = None) -> dict[int, ParsedRow]:
    """Parse each message; one the parser refuses carries its reason, one it fails on unexpectedly is left out
    (its transaction parses it again, and quarantines it if it fails there too). With ``blob_root`` the
    attachments of each parsed message are stored in that blob store."""
    blobs = BlobStore(blob_root) if blob_root is not None else None
    parsed: dict[int, ParsedRow] = {}
    for email in emails:
        try:
            message = parse_email(email.raw, mail_from=email.envelope_sender)
        except MessageRejected as rejection:
            parsed[email.inbound_id] = ParsedRow(email.sha256, rejection=str(rejection))
        except Exception:  # noqa: BLE001 - see above
            log.info("inbound %s: parsing ahead failed, left to its transaction", email.inbound_id)
        else:
            parsed[email.inbound_id] = ParsedRow(email.sha256, parsed=message)
            if blobs is not None:
                _store_attachments(blobs, email.inbound_id, message)
    return parsed


def _store_attachments(blobs: BlobStore, inbound_id: int, message: ParsedEmail) -> None:
    try:
        for attachment in message.attachments:
            blobs.put(attachment.data)
    except OSError as error:
        log.warning("inbound %s: attachments not stored ahead (%s), left to its transaction", inbound_id, error)


class ParsingAhead:
    """The parse of one reserved batch, under way in the helper (small messages) and still to do here (large)."""

    def __init__(
        self, helper: ParseHelper | None, emails: Sequence[RawEmail], blobs: BlobStore | None = None
    ) -> None:
        self._small = [email for email in emails if len(email.raw) <= HELPER_MAX_BYTES]
        self._large = [email for email in emails if len(email.raw) > HELPER_MAX_BYTES]
        self._helper = helper
        self._blob_root = blobs.root if blobs is not None else None
        self._future = helper.submit(self._small, self._blob_root) if helper is not None and self._small else None

    def result(self) -> dict[int, ParsedRow]:
        """Every message of the batch parsed, and its attachments stored when a blob store was given (by the
        worker itself for any the helper did not deliver)."""
        parsed = parse_raw_emails(self._large, self._blob_root)
        if self._helper is None or self._future is None:
            parsed.update(parse_raw_emails(self._small, self._blob_root))
            return parsed
        try:
            parsed.update(self._future.result())
        except Exception as error:  # noqa: BLE001 - the helper died: parse here instead
            log.warning("parse helper failed (%r); the worker parses the batch itself", error)
            self._helper.discard()
            parsed.update(parse_raw_emails(self._small, self._blob_root))
        return parsed


class ParseHelper:
    """A helper process for parsing, started with the worker (or on first use) and again after it failed."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        # After a failure the worker parses by itself for a while instead of starting a process per batch.
        self._retry_at = 0.0

    def start(self) -> None:
        """Start the process now, so that the first batch does not wait for it to start."""
        self._call(os.getpid)

    def process_id(self) -> int | None:
        """The helper's process id (started if need be), None when there is no helper."""
        future = self._call(os.getpid)
        return future.result() if future is not None else None

    def submit(
        self, emails: Sequence[RawEmail], blob_root: Path | None = None
    ) -> Future[dict[int, ParsedRow]] | None:
        """Parse ``emails`` in the helper, storing their attachments under ``blob_root`` when given; None when
        there is no helper (the caller parses them)."""
        return self._call(parse_raw_emails, list(emails), blob_root)

    def _call(self, function: Callable[..., T], *args: object) -> Future[T] | None:
        if self._pool is None and time.monotonic() < self._retry_at:
            return None
        try:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_helper_started,
                    initargs=(os.getpid(),),
                )
            return self._pool.submit(function, *args)
        except Exception as error:  # noqa: BLE001 - no helper (no process to spare): the worker parses
            log.warning("no parse helper (%s); the worker parses by itself for %d s", error, RETRY_SECONDS)
            self.discard()
            return None

    def discard(self) -> None:
        """Let a broken helper go; a fresh one starts for a batch after ``RETRY_SECONDS``."""
        pool, self._pool = self._pool, None
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _helper_started(worker: int) -> None:
    # Ctrl-C reaches the whole process group; the worker decides when its helper ends (it closes the pool), so
    # the helper does not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker killed outright (kill -9, the OOM killer) cannot close the pool, and the helper holds both ends
    # of its own task pipe, so it would wait for work forever: it ends with the worker. Linux kills it at once
    # (PR_SET_PDEATHSIG); elsewhere, and if the worker died while the helper was starting, a thread notices.
    _kill_with_parent()
    threading.Thread(target=_exit_with_parent, args=(worker,), daemon=True).start()
    # The helper imports what the worker does (some 160,000 objects): a full collection walking them all took
    # about 100 ms, once or twice a thousand messages.
    freeze_loaded_objects()


def _kill_with_parent() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        log.info("no PR_SET_PDEATHSIG here; the helper polls for its worker")


def _exit_with_parent(worker: int) -> None:
    # The worker's own pid, not the helper's parent at this moment: the worker may have died while the
    # helper was still starting.
    while os.getppid() == worker:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)

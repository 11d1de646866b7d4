"""The IMAP poller against a real Dovecot started for each test, with the run's real database and Redis."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_sessionmaker
from centrala.core.settings import ImapSource, Settings, get_settings
from centrala.ingest import imap as imap_module
from centrala.ingest.imap import connect_imap, import_new_messages, run_imap_source
from centrala.ingest.models import ImapCursor, InboundEmail
from tests.support.dovecot import DovecotServer
from tests.support.fault_report import report
from tests.support.mails import make_mail
from tests.support.processes import wait_until

SEEN = b"\\Seen"


def wire(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends, as IMAP hands every message back (RFC 3501 §4.3)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def mail(number: int, **kwargs: object) -> bytes:
    return wire(make_mail(message_id=f"<imap-{number}@example.cz>", subject=f"Dotaz {number}", **kwargs))


@pytest.fixture()
def settings(redis_url: str, committed_db: Engine) -> Settings:
    """The run's settings; writes commit for real and their jobs reach the run's Redis."""
    return get_settings()


def source_for(dovecot: DovecotServer, *, folder: str = "INBOX", after_import: str = "seen") -> ImapSource:
    return ImapSource(
        name="support", url=dovecot.url(folder), mailbox="support@localhost", after_import=after_import
    )


@pytest.fixture()
def run_pass(settings: Settings, blobs: BlobStore) -> Callable[[ImapSource], int]:
    """One import pass over a source, on a connection of its own."""

    def run(source: ImapSource, *, prepare: Callable[[IMAPClient], None] | None = None) -> int:
        with connect_imap(source) as client:
            if prepare is not None:
                prepare(client)
            return import_new_messages(
                source=source,
                client=client,
                session_factory=get_sessionmaker(),
                blobs=blobs,
                now_fn=clock.now,
            )

    return run


def ledger(engine: Engine) -> list[InboundEmail]:
    with Session(engine) as session:
        return list(session.scalars(select(InboundEmail).order_by(InboundEmail.id)))


def cursor(engine: Engine, source: ImapSource) -> ImapCursor | None:
    with Session(engine) as session:
        return session.get(ImapCursor, (source.name, source.folder))


def flags(dovecot: DovecotServer, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    """UID -> flags of every message in ``folder``."""
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        found = client.get_flags(uids)
    return {uid: tuple(flag for flag in value if flag != b"\\Recent") for uid, value in found.items()}


def test_new_messages_are_stored_in_the_ledger_once_with_source_imap(dovecot, run_pass, committed_db):
    raws = [mail(1), mail(2, extra_headers={"Return-Path": "<jana@example.cz>"}), mail(3)]
    uids = [dovecot.append(raw) for raw in raws]
    source = source_for(dovecot)

    assert run_pass(source) == 3

    rows = ledger(committed_db)
    assert [row.raw for row in rows] == raws
    assert {row.source for row in rows} == {"imap"}
    assert {row.mailbox for row in rows} == {"support@localhost"}
    assert [row.rcpt_tos for row in rows] == [["support@localhost"]] * 3
    assert [row.mail_from for row in rows] == ["", "jana@example.cz", ""]
    state = cursor(committed_db, source)
    assert (state.last_uid, state.after_import_uid) == (uids[-1], uids[-1])


def test_a_second_pass_imports_nothing_new(dovecot, run_pass, committed_db):
    dovecot.append(mail(1))
    dovecot.append(mail(2))
    source = source_for(dovecot)
    assert run_pass(source) == 2

    assert run_pass(source) == 0
    dovecot.append(mail(3))
    assert run_pass(source) == 1

    assert len(ledger(committed_db)) == 3


def test_a_message_already_read_in_another_client_is_still_imported(dovecot, run_pass, committed_db):
    dovecot.append(mail(1), flags=[SEEN])
    dovecot.append(mail(2))

    assert run_pass(source_for(dovecot)) == 2

    assert len(ledger(committed_db)) == 2


def test_fetching_does_not_mark_messages_seen_but_after_import_seen_does(dovecot, run_pass, committed_db):
    uid = dovecot.append(mail(1))
    fetched_flags: list[tuple[bytes, ...]] = []
    original = IMAPClient.add_flags

    def spy(client: IMAPClient, messages, new_flags, silent=False):
        # Just before \Seen is set: BODY.PEEK[] must have left the message unread.
        fetched_flags.append(tuple(client.get_flags(messages)[uid]))
        return original(client, messages, new_flags, silent)

    source = source_for(dovecot, after_import="seen")
    assert run_pass(source, prepare=lambda client: setattr(client, "add_flags", spy.__get__(client))) == 1

    assert SEEN not in fetched_flags[0]
    assert SEEN in flags(dovecot)[uid]


def test_after_import_move_moves_messages_to_the_folder_creating_it(dovecot, run_pass, committed_db):
    first, second = mail(1), mail(2)
    dovecot.append(first)
    dovecot.append(second)
    source = source_for(dovecot, after_import="move:Processed")

    assert run_pass(source) == 2

    assert flags(dovecot, "INBOX") == {}
    assert len(flags(dovecot, "Processed")) == 2
    assert [row.raw for row in ledger(committed_db)] == [first, second]
    assert run_pass(source) == 0


def test_move_without_the_move_capability_copies_deletes_and_expunges(dovecot, run_pass, committed_db):
    dovecot.append(mail(1))
    dovecot.append(mail(2))
    source = source_for(dovecot, after_import="move:Processed")

    def without_move(client: IMAPClient) -> None:
        has_capability = client.has_capability
        client.has_capability = (  # type: ignore[method-assign]
            lambda name: name.upper() != "MOVE" and has_capability(name)
        )

    assert run_pass(source, prepare=without_move) == 2

    assert flags(dovecot, "INBOX") == {}
    moved = flags(dovecot, "Processed")
    assert len(moved) == 2
    assert all(SEEN not in value and b"\\Deleted" not in value for value in moved.values())


def test_after_import_none_leaves_messages_as_they_were(dovecot, run_pass, committed_db):
    uid = dovecot.append(mail(1))
    source = source_for(dovecot, after_import="none")

    assert run_pass(source) == 1
    assert run_pass(source) == 0

    assert flags(dovecot) == {uid: ()}
    assert len(ledger(committed_db)) == 1
    state = cursor(committed_db, source)
    assert state.after_import_uid == state.last_uid == uid


def test_the_last_message_is_not_imported_again_although_n_star_matches_it(dovecot, run_pass, committed_db):
    dovecot.append(mail(1))
    last = dovecot.append(mail(2))
    source = source_for(dovecot, after_import="none")
    assert run_pass(source) == 2

    # RFC 3501 §6.4.8: "UID n:*" with n above every UID still matches the last message; this server does it.
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UID", f"{last + 1}:*"]) == [last]

    assert run_pass(source) == 0
    assert len(ledger(committed_db)) == 2


def test_crash_after_commit_before_flagging_imports_once_and_flags_on_the_next_pass(
    dovecot, run_pass, committed_db
):
    raws = [mail(1), mail(2)]
    uids = [dovecot.append(raw) for raw in raws]
    source = source_for(dovecot, after_import="seen")

    def crash_on_flagging(client: IMAPClient) -> None:
        def add_flags(*args, **kwargs):
            raise ConnectionResetError("simulated crash after commit")

        client.add_flags = add_flags  # type: ignore[method-assign]

    with pytest.raises(ConnectionResetError):
        run_pass(source, prepare=crash_on_flagging)
    assert [row.raw for row in ledger(committed_db)] == raws
    assert all(SEEN not in value for value in flags(dovecot).values())
    state = cursor(committed_db, source)
    assert (state.last_uid, state.after_import_uid) == (uids[-1], 0)

    assert run_pass(source) == 0

    assert [row.raw for row in ledger(committed_db)] == raws
    assert all(SEEN in value for value in flags(dovecot).values())
    assert cursor(committed_db, source).after_import_uid == uids[-1]
    report_imap("imap_crash_after_commit_before_flagging", committed_db, sent=len(raws))


def test_crash_after_commit_before_moving_moves_on_the_next_pass(dovecot, run_pass, committed_db):
    dovecot.append(mail(1))
    source = source_for(dovecot, after_import="move:Processed")

    def crash_on_moving(client: IMAPClient) -> None:
        def move(*args, **kwargs):
            raise ConnectionResetError("simulated crash after commit")

        client.move = move  # type: ignore[method-assign]

    with pytest.raises(ConnectionResetError):
        run_pass(source, prepare=crash_on_moving)
    assert len(flags(dovecot, "INBOX")) == 1

    assert run_pass(source) == 0

    assert flags(dovecot, "INBOX") == {}
    assert len(flags(dovecot, "Processed")) == 1
    assert len(ledger(committed_db)) == 1
    report_imap("imap_crash_after_commit_before_moving", committed_db, sent=1)


def test_crash_after_fetch_before_commit_imports_each_message_once(
    dovecot, run_pass, committed_db, monkeypatch
):
    raws = [mail(1), mail(2), mail(3)]
    uids = [dovecot.append(raw) for raw in raws]
    source = source_for(dovecot, after_import="seen")
    record = imap_module.record_inbound_emails

    def crash_after_inserting(**kwargs):
        record(**kwargs)  # the rows are written, not yet committed
        raise ConnectionResetError("simulated crash before commit")

    monkeypatch.setattr(imap_module, "record_inbound_emails", crash_after_inserting)
    with pytest.raises(ConnectionResetError):
        run_pass(source)
    # The batch is one transaction: nothing of it is stored and the watermark stays below it.
    assert ledger(committed_db) == []
    assert cursor(committed_db, source).last_uid < uids[0]

    monkeypatch.undo()
    assert run_pass(source) == 3

    assert [row.raw for row in ledger(committed_db)] == raws
    assert all(SEEN in value for value in flags(dovecot).values())
    report_imap("imap_crash_after_fetch_before_commit", committed_db, sent=len(raws))


def test_new_uidvalidity_reads_the_folder_again_without_storing_anything_twice(
    dovecot, run_pass, committed_db
):
    first, second, third = mail(1), mail(2), mail(3)
    dovecot.append(first, folder="Support")
    dovecot.append(second, folder="Support")
    source = source_for(dovecot, folder="Support")
    assert run_pass(source) == 2
    old_uidvalidity = cursor(committed_db, source).uidvalidity

    # The folder is recreated (as after a server migration): new UIDVALIDITY, the same messages and one more.
    with dovecot.client() as client:
        client.delete_folder("Support")
        client.create_folder("Support")
    for raw in (first, second, third):
        dovecot.append(raw, folder="Support")

    assert run_pass(source) == 3

    state = cursor(committed_db, source)
    assert state.uidvalidity != old_uidvalidity
    assert state.last_uid == 3
    assert [row.raw for row in ledger(committed_db)] == [first, second, third]
    report_imap("imap_new_uidvalidity", committed_db, sent=3)


def report_imap(name: str, engine: Engine, *, sent: int) -> None:
    """The fault's counts: messages put in the folder, ledger rows, rows of the same bytes beyond the first."""
    raws = [row.raw for row in ledger(engine)]
    report(name, sent=sent, stored=len(raws), duplicates=len(raws) - len(set(raws)))


@contextmanager
def poller(source: ImapSource, settings: Settings, blobs: BlobStore) -> Iterator[threading.Event]:
    """``run_imap_source`` in a thread, with short waits; stopped (and checked to stop) on leaving."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_imap_source,
        args=(source, stop),
        kwargs={
            "settings": settings,
            "blobs": blobs,
            "idle_check_seconds": 0.5,
            "reconnect_initial_seconds": 0.2,
            "reconnect_max_seconds": 1.0,
        },
        daemon=True,
    )
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "run_imap_source did not stop"


def stored(engine: Engine, raw: bytes) -> bool:
    return any(row.raw == raw for row in ledger(engine))


def test_idle_imports_new_mail_and_survives_a_dovecot_restart(dovecot, settings, blobs, committed_db, caplog):
    # Renewal far beyond the test's waits: only IDLE's EXISTS (or a reconnect) can bring the mail in quickly.
    idle_settings = settings.model_copy(update={"imap_idle_renew_seconds": 600.0, "imap_poll_seconds": 600.0})
    source = source_for(dovecot)
    first, second, third = mail(1), mail(2), mail(3)
    dovecot.append(first)
    with caplog.at_level(logging.INFO, logger="centrala.ingest.imap"):
        with poller(source, idle_settings, blobs):
            wait_until(lambda: stored(committed_db, first), timeout=10, what="the first message")
            dovecot.append(second)
            wait_until(lambda: stored(committed_db, second), timeout=10, what="a message announced in IDLE")

            dovecot.restart()
            dovecot.append(third)
            wait_until(lambda: stored(committed_db, third), timeout=20, what="a message after the restart")

    assert [row.raw for row in ledger(committed_db)] == [first, second, third]
    assert all(SEEN in value for value in flags(dovecot).values())
    connects = [r for r in caplog.records if "connected to" in r.getMessage()]
    assert len(connects) >= 2, "the restart should have cost the poller its connection"
    assert dovecot.password not in caplog.text
    report_imap("imap_dovecot_restarted_while_idling", committed_db, sent=3)


def test_without_idle_the_folder_is_polled(dovecot, settings, blobs, committed_db, monkeypatch):
    has_capability = IMAPClient.has_capability
    monkeypatch.setattr(
        IMAPClient,
        "has_capability",
        lambda client, name: name.upper() != "IDLE" and has_capability(client, name),
    )
    polling = settings.model_copy(update={"imap_idle_renew_seconds": 600.0, "imap_poll_seconds": 0.3})
    source = source_for(dovecot)
    with poller(source, polling, blobs):
        dovecot.append(mail(1))
        wait_until(lambda: len(ledger(committed_db)) == 1, timeout=10, what="a polled message")


def test_the_poller_retries_while_the_server_is_down(dovecot, settings, blobs, committed_db, caplog):
    dovecot.stop()
    source = source_for(dovecot)
    with caplog.at_level(logging.INFO, logger="centrala.ingest.imap"), poller(source, settings, blobs):
        wait_until(
            lambda: len([r for r in caplog.records if "reconnecting in" in r.getMessage()]) >= 2,
            timeout=10,
            what="failed connection attempts",
        )
        dovecot.start()
        dovecot.append(mail(1))
        wait_until(lambda: len(ledger(committed_db)) == 1, timeout=20, what="the message, server up again")


def _centrala_imap(environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "centrala", "imap"],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )


def test_centrala_imap_imports_and_stops_on_sigterm(dovecot, settings, committed_db):
    raw = mail(1)
    dovecot.append(raw)
    sources = f'[{{"name": "support", "url": "{dovecot.url()}", "after_import": "seen"}}]'
    process = _centrala_imap({**os.environ, "CENTRALA_IMAP_MAILBOXES": sources})
    try:
        wait_until(
            lambda: process.poll() is not None or stored(committed_db, raw), timeout=20, what="the import"
        )
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [row] = ledger(committed_db)
    assert (row.source, row.mailbox) == ("imap", settings.mailboxes[0])
    assert dovecot.password.encode() not in process.stderr.read()


def test_centrala_imap_without_sources_waits_until_stopped(settings):
    environment = {k: v for k, v in os.environ.items() if k != "CENTRALA_IMAP_MAILBOXES"}
    process = _centrala_imap(environment)
    # Everything it says is read as it comes (a full pipe would block it), in a thread of its own.
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, b"")), daemon=True)
    reader.start()
    try:
        # It says so once its signal handlers are in place (a slow start must not meet SIGTERM unprepared).
        deadline = time.monotonic() + 60
        while not any(b"no IMAP sources configured" in line for line in lines) and time.monotonic() < deadline:
            assert process.poll() is None, b"".join(lines)
            time.sleep(0.1)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, b"".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    said = b"".join(lines)
    assert b"no IMAP sources configured" in said


def test_the_same_message_by_smtp_and_by_imap_becomes_one_interaction(
    dovecot, run_pass, committed_db, tmp_path
):
    """A mailbox that both forwards to our SMTP server and is polled over IMAP: two copies, one timeline entry."""
    import smtplib

    from centrala.tickets.models import Direction, Interaction
    from centrala.workers.jobs import process_inbound_email
    from tests.support.processes import free_port, port_is_open, service_env, start, stop

    raw = mail(42)
    smtp_port = free_port()
    smtp = start(
        ["smtp"],
        service_env(tmp_path / "var", http_port=free_port(), smtp_port=smtp_port, embedded=False),
        tmp_path / "smtp.log",
    )
    try:
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("jana@example.cz", ["support@localhost"], raw)
    finally:
        stop(smtp)
    # The mailbox's copy went through the provider's delivery, which added its own header: different bytes.
    dovecot.append(b"Delivered-To: support@localhost\r\n" + raw)
    assert run_pass(source_for(dovecot)) == 1

    rows = ledger(committed_db)
    assert sorted(row.source for row in rows) == ["imap", "smtp"]
    outcomes = [process_inbound_email(row.id) for row in rows]
    assert [o["status"] for o in outcomes] == ["processed", "processed"]
    assert outcomes[1]["reason"] == "duplicate"
    with Session(committed_db) as session:
        inbound = session.scalars(select(Interaction).where(Interaction.direction == Direction.INBOUND)).all()
    assert [i.external_id for i in inbound] == ["imap-42@example.cz"]

"""The inbound SMTP server, driven by real smtplib clients against the real server, database and Redis."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from centrala.core.db import get_engine, is_postgresql
from centrala.core.queue import get_queue
from centrala.ingest.ledger import DRAIN_EMAILS_JOB
from centrala.ingest.models import InboundStatus
from centrala.ingest.smtp import InboundHandler
from tests.support.smtp import (
    SIZE_LIMIT,
    TOO_BIG,
    connect,
    make_message,
    queued_id,
    send,
    stored,
    wait_until,
)

TEMPORARY_FAILURE = (451, b"4.3.0 Temporary failure, please retry later")
BAD_SYNTAX = (501, b"5.1.3 Bad recipient address syntax")
UNKNOWN_MAILBOX = (550, b"5.1.1 <nobody@localhost>: mailbox unavailable")


@contextlib.contextmanager
def database_write_lock(engine: Engine) -> Iterator[None]:
    """Make the ledger unwritable: SQLite's write lock, or PostgreSQL's exclusive lock on inbound_email."""
    if is_postgresql(engine):
        with engine.connect() as connection:
            connection.exec_driver_sql("LOCK TABLE inbound_email IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()
    else:
        holder = sqlite3.connect(engine.url.database, isolation_level=None, timeout=5)
        try:
            holder.execute("BEGIN IMMEDIATE")
            yield
        finally:
            holder.rollback()
            holder.close()


class SendInBackground(threading.Thread):
    """One smtplib transaction in another thread, so the test can act while it waits for its reply."""

    def __init__(self, port: int, raw: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.raw = port, raw
        self.reply: tuple[int, bytes] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        client = connect(self.port, timeout=20)
        try:
            client.ehlo()
            client.mail("alice@example.org")
            client.rcpt("support@localhost")
            self.reply = client.data(self.raw)
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            # No QUIT: a server that is stopping has already said 421 and closed.
            client.close()


def test_message_to_a_mailbox_is_stored_once_with_its_envelope_and_queued(smtp_server, committed_db):
    raw = make_message()

    code, reply = send(smtp_server.port, raw, sender="Alice@Example.org")

    assert code == 250
    [row] = stored(committed_db)
    assert queued_id(reply) == row.id
    assert row.raw == raw
    assert row.sha256 == hashlib.sha256(raw).hexdigest()
    assert row.size == len(raw)
    assert row.mail_from == "Alice@Example.org"
    assert row.rcpt_tos == ["support@localhost"]
    assert row.mailbox == "support@localhost"
    assert row.peer == "127.0.0.1"
    assert row.source == "smtp"
    assert row.status == InboundStatus.RECEIVED
    assert DRAIN_EMAILS_JOB in [job.func_name for job in get_queue().jobs]


def test_reply_250_comes_only_after_the_commit(run_server, committed_db):
    class SlowCommitSession(Session):
        def commit(self) -> None:
            time.sleep(0.3)
            super().commit()

    server = run_server(session_factory=sessionmaker(bind=get_engine(), class_=SlowCommitSession))
    raw = make_message()

    code, reply = send(server.port, raw)

    assert code == 250
    # Read at once, on another connection: had the server answered before committing, the row would be absent.
    [row] = stored(committed_db)
    assert row.id == queued_id(reply)
    assert row.raw == raw


def test_same_bytes_sent_twice_are_stored_once(smtp_server, committed_db):
    raw = make_message()

    first = send(smtp_server.port, raw)
    second = send(smtp_server.port, raw)

    assert first[0] == second[0] == 250
    [row] = stored(committed_db)
    assert queued_id(first[1]) == queued_id(second[1]) == row.id


def test_null_sender_of_a_bounce_is_stored_as_empty(smtp_server, committed_db):
    code, _ = send(smtp_server.port, make_message(), sender="")

    assert code == 250
    [row] = stored(committed_db)
    assert row.mail_from == ""


def test_unknown_recipient_is_refused_with_550(smtp_server, committed_db):
    with connect(smtp_server.port) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("alice@example.org", ["nobody@localhost"], make_message())

    assert refused.value.recipients == {"nobody@localhost": UNKNOWN_MAILBOX}
    assert stored(committed_db) == []


def test_plus_address_is_accepted_and_the_first_accepted_mailbox_is_recorded(smtp_server, committed_db):
    with connect(smtp_server.port) as client:
        refused = client.sendmail(
            "alice@example.org",
            ["nobody@localhost", "Sales+Invoice-42@LocalHost", "support@localhost"],
            make_message(),
        )

    assert refused == {"nobody@localhost": UNKNOWN_MAILBOX}
    [row] = stored(committed_db)
    assert row.mailbox == "sales@localhost"
    assert row.rcpt_tos == ["Sales+Invoice-42@LocalHost", "support@localhost"]


@pytest.mark.parametrize("address", ["<support>", "<a@b@localhost>", '<"sup port"@localhost>', "<+@>"])
def test_malformed_recipient_is_refused_with_501(smtp_server, address):
    with connect(smtp_server.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        assert client.docmd("RCPT", f"TO:{address}") == BAD_SYNTAX


def test_ehlo_advertises_the_size_limit(smtp_server):
    with connect(smtp_server.port) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(SIZE_LIMIT)


def test_message_over_the_size_limit_is_refused_with_552_and_not_stored(smtp_server, committed_db):
    big, small = make_message(padding=2 * SIZE_LIMIT), make_message()
    with connect(smtp_server.port) as client:
        client.ehlo()
        assert client.mail("alice@example.org") == (250, b"OK")
        assert client.rcpt("support@localhost")[0] == 250
        assert client.data(big) == TOO_BIG
        # The session goes on: the next transaction is accepted.
        assert client.mail("alice@example.org")[0] == 250
        assert client.rcpt("support@localhost")[0] == 250
        assert client.data(small)[0] == 250

    assert [row.raw for row in stored(committed_db)] == [small]


def test_size_parameter_over_the_limit_is_refused_with_552(smtp_server, committed_db):
    with connect(smtp_server.port) as client:
        client.ehlo()
        assert client.mail("alice@example.org", [f"SIZE={SIZE_LIMIT + 1}"]) == TOO_BIG
        assert client.mail("alice@example.org", [f"SIZE={SIZE_LIMIT}"])[0] == 250
    with connect(smtp_server.port) as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail("alice@example.org", ["support@localhost"], make_message(padding=2 * SIZE_LIMIT))

    assert (refused.value.smtp_code, refused.value.smtp_error) == TOO_BIG
    assert stored(committed_db) == []


def test_database_unavailable_answers_451_and_the_retry_is_stored_once(run_server, committed_db, caplog):
    server = run_server(lock_timeout_ms=300)
    raw = make_message(marker="do-not-log-me")

    with caplog.at_level(logging.ERROR, logger="centrala.ingest.smtp"), database_write_lock(committed_db):
        assert send(server.port, raw) == TEMPORARY_FAILURE
    assert stored(committed_db) == []
    assert hashlib.sha256(raw).hexdigest()[:12] in caplog.text
    # Neither the body nor the envelope addresses reach the log (SQLAlchemy would print bound parameters).
    assert "do-not-log-me" not in caplog.text
    assert "alice@example.org" not in caplog.text

    code, reply = send(server.port, raw)

    assert code == 250
    [row] = stored(committed_db)
    assert (row.id, row.raw) == (queued_id(reply), raw)


def test_any_failure_to_write_answers_451_without_its_text(run_server, committed_db):
    def refuse() -> Session:
        raise ConnectionRefusedError("connection to 10.0.0.7:5432 refused")

    server = run_server(session_factory=refuse)

    assert send(server.port, make_message()) == TEMPORARY_FAILURE
    assert stored(committed_db) == []


def test_a_slow_database_write_does_not_block_other_sessions(run_server, committed_db):
    server = run_server(lock_timeout_ms=10_000)
    raw = make_message()

    with database_write_lock(committed_db):
        waiting = SendInBackground(server.port, raw)
        waiting.start()
        wait_until(lambda: server.handler.in_flight_writes == 1)
        # A blocked event loop would leave this client without a greeting until the write above gave up.
        with connect(server.port, timeout=5) as other:
            assert other.ehlo()[0] == 250
            assert other.noop()[0] == 250
        assert waiting.is_alive() and waiting.reply is None

    waiting.join(15)
    assert waiting.error is None
    assert waiting.reply is not None and waiting.reply[0] == 250
    assert [row.raw for row in stored(committed_db)] == [raw]


def test_exception_in_a_hook_answers_451_without_exception_text(run_server):
    class ExplodingHandler(InboundHandler):
        async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
            raise RuntimeError("internal detail")

    server = run_server(handler_class=ExplodingHandler)
    with connect(server.port) as client:
        assert client.noop() == TEMPORARY_FAILURE
        assert client.ehlo()[0] == 250


def test_connections_over_the_limit_are_refused_with_421(run_server, settings):
    server = run_server(settings.model_copy(update={"smtp_max_connections": 2}))
    first, second = connect(server.port), connect(server.port)
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            connect(server.port)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            421,
            b"4.3.2 Too many connections, try again later",
        )
        first.quit()
        wait_until(lambda: server.server.open_sessions == 1)
        with connect(server.port) as third:
            assert third.noop()[0] == 250
    finally:
        first.close()
        second.close()


def test_stop_finishes_in_flight_data_and_then_closes_every_session(run_server, committed_db):
    server = run_server(lock_timeout_ms=10_000)
    raw = make_message()
    idle = connect(server.port)
    try:
        with database_write_lock(committed_db):
            waiting = SendInBackground(server.port, raw)
            waiting.start()
            wait_until(lambda: server.handler.in_flight_writes == 1)
            stopping = threading.Thread(target=server.stop, daemon=True)
            stopping.start()
            wait_until(lambda: server.server.server.sockets == ())
            time.sleep(0.2)
            assert stopping.is_alive() and waiting.is_alive()

        waiting.join(15)
        stopping.join(15)
        assert waiting.reply is not None and waiting.reply[0] == 250
        assert not stopping.is_alive()
        assert idle.getreply() == (421, b"4.3.2 Service shutting down, try again later")
    finally:
        idle.close()
    with pytest.raises(ConnectionRefusedError):
        connect(server.port, timeout=2)
    assert [row.raw for row in stored(committed_db)] == [raw]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts_smtp(port: int) -> bool:
    try:
        with connect(port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def test_serve_smtp_runs_on_the_configured_port_and_stops_on_sigterm(settings, committed_db):
    port = _free_port()
    environment = {**os.environ, "CENTRALA_SMTP_HOST": "127.0.0.1", "CENTRALA_SMTP_PORT": str(port)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from centrala.core.settings import get_settings\n"
            "from centrala.ingest.smtp import serve_smtp\n"
            "serve_smtp(get_settings())\n",
        ],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_until(lambda: process.poll() is not None or _accepts_smtp(port), timeout=20)
        assert process.poll() is None
        raw = make_message()
        assert send(port, raw)[0] == 250

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [row.raw for row in stored(committed_db)] == [raw]

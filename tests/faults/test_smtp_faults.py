"""The inbound SMTP server under faults: crashes around the commit, SIGTERM mid-DATA, floods, probes, limits.

Real smtplib clients (or raw sockets, where a probe needs exact bytes on the wire) talk to the real server:
in this process where that is enough, as a ``centrala smtp`` child process where the fault is the process
dying or stopping. Each test reports what it sent, how much got a 250, what the ledger stored and how many
rows are duplicates (``tests/support/fault_report.py``), before it asserts.
"""

from __future__ import annotations

import hashlib
import re
import signal
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from centrala.ingest.smtp import (
    IDLE_WHEN_FULL_SECONDS,
    MAX_RECIPIENTS,
    REPLY_IDLE_TIMEOUT,
    SHUTDOWN_GRACE_SECONDS,
)
from tests.support.crashing_smtp import CRASH_EXIT_CODE, CRASH_POINTS, start_crashing_smtp
from tests.support.fault_report import report
from tests.support.mails import make_mail
from tests.support.processes import free_port, service_env, start, stop_all
from tests.support.smtp import SENDER, RawSession, data_section, queued_id, stored

START_TIMEOUT_SECONDS = 60.0


def as_stored(raw: bytes) -> bytes:
    """``raw`` as it is sent and stored: CRLF line ends, ending in CRLF (smtplib's own normalisation)."""
    wire = re.sub(rb"\r?\n", b"\r\n", raw)
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


def unstuffed(content: bytes) -> bytes:
    """What a server stores of DATA ``content``: the first dot of each CRLF line removed (RFC 5321 §4.5.2)."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def send(port: int, raw: bytes, *, recipients: tuple[str, ...] = ("support@localhost",)) -> tuple[int, bytes]:
    """One message through a fresh smtplib session; the reply to its end of data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.mail(SENDER)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        return client.data(raw)


def ledger_counts(engine: Engine, messages: list[bytes]) -> dict[str, int]:
    """Rows in the ledger, and how many of them are beyond one per message sent (a copy or a damaged one)."""
    rows = stored(engine)
    sent = {hashlib.sha256(raw).hexdigest() for raw in messages}
    return {"stored": len(rows), "duplicates": len(rows) - len({row.sha256 for row in rows} & sent)}


def child_env(tmp_path: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment of a ``centrala smtp`` child writing to this run's database and Redis."""
    return service_env(tmp_path / "var", http_port=free_port(), smtp_port=smtp_port, embedded=False, **extra)


def wait_for_smtp(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until the child greets on ``port``; fail at once if it exits instead."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the SMTP server exited with {process.returncode} before listening"
        try:
            with RawSession(port, timeout=5) as probe:
                if probe.reply()[0] == 220:
                    probe.command(b"QUIT")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the SMTP server did not listen on port {port} within {START_TIMEOUT_SECONDS} s")


# --- the server process dies around the commit -------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_server_dying_around_the_commit_stores_the_retried_message_once(
    point, tmp_path, committed_db, redis_url, request
):
    port = free_port()
    env = child_env(tmp_path, port)
    raw = as_stored(make_mail(message_id=f"<crash-{point}@example.cz>"))
    crashing = start_crashing_smtp(point, env, tmp_path / "crashing-smtp.log")
    processes = [crashing]
    try:
        wait_for_smtp(port, crashing)
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
            send(port, raw)
        assert crashing.wait(timeout=30) == CRASH_EXIT_CODE
        # Before the commit the row dies with its transaction; after it the row stays, never answered.
        stored_by_crash = len(stored(committed_db))

        server = start(["smtp"], env, tmp_path / "smtp.log")
        processes.append(server)
        wait_for_smtp(port, server)
        code, reply = send(port, raw)
        rows = stored(committed_db)
    finally:
        stop_all(processes, tmp_path, timeout=SHUTDOWN_GRACE_SECONDS + 10)
    report(
        request.node.name,
        sent=1,
        attempts=2,
        accepted=int(code == 250),
        stored_by_crash=stored_by_crash,
        **ledger_counts(committed_db, [raw]),
    )
    assert stored_by_crash == (1 if point == "after-commit" else 0)
    assert code == 250
    assert [row.raw for row in rows] == [raw]
    assert queued_id(reply) == rows[0].id


# --- SIGTERM while ten sessions are in the middle of DATA ----------------------------------------------

TRANSFERS = 10
TRANSFER_LINES = 2_200  # about 200 KB a message
TRANSFER_CHUNKS = 50
CHUNK_PAUSE_SECONDS = 0.04


def big_message(n: int) -> bytes:
    body = "\n".join(f"Line {line} of message {n}: " + "x" * 64 for line in range(TRANSFER_LINES))
    return as_stored(
        make_mail(subject=f"Velká zpráva {n}", message_id=f"<sigterm-{n}@example.cz>", body=body)
    )


class SlowTransfer(threading.Thread):
    """One session that sends its DATA in small pieces with pauses, as over a slow link.

    It sends the first piece, waits at ``barrier`` (so that the test knows every transfer is mid-DATA), then
    the rest. ``outcome``: "accepted" (250), "refused" (another reply), "dropped" (the connection went away)
    or "timeout" (no reply: a hang).
    """

    def __init__(self, port: int, raw: bytes, barrier: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.port, self.raw, self.barrier = port, raw, barrier
        self.outcome = "not started"
        self.reply: tuple[int, bytes] | None = None

    def run(self) -> None:
        try:
            with RawSession(self.port) as session:
                session.start_data()
                data = data_section(self.raw)
                size = -(-len(data) // TRANSFER_CHUNKS)
                session.send(data[:size])
                self.barrier.wait(timeout=60)
                for offset in range(size, len(data), size):
                    time.sleep(CHUNK_PAUSE_SECONDS)
                    session.send(data[offset : offset + size])
                self.reply = session.reply()
        except TimeoutError:
            self.outcome = "timeout"
        except threading.BrokenBarrierError:
            self.outcome = "never reached DATA"
        except OSError:
            self.outcome = "dropped"
        else:
            self.outcome = "accepted" if self.reply[0] == 250 else "refused"


@pytest.mark.faults
def test_sigterm_during_ten_data_transfers_loses_and_duplicates_nothing(
    tmp_path, committed_db, redis_url, request
):
    port = free_port()
    env = child_env(tmp_path, port)
    messages = [big_message(n) for n in range(TRANSFERS)]
    server = start(["smtp"], env, tmp_path / "smtp-1.log")
    processes = [server]
    try:
        wait_for_smtp(port, server)
        barrier = threading.Barrier(TRANSFERS + 1)
        transfers = [SlowTransfer(port, raw, barrier) for raw in messages]
        for transfer in transfers:
            transfer.start()
        barrier.wait(timeout=60)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=SHUTDOWN_GRACE_SECONDS + 30)
        stop_seconds = time.monotonic() - signalled
        for transfer in transfers:
            transfer.join(timeout=60)
        outcomes = [transfer.outcome for transfer in transfers]
        stored_at_stop = {row.sha256 for row in stored(committed_db)}

        retries = [transfer.raw for transfer in transfers if transfer.outcome != "accepted"]
        retried_accepted = 0
        if retries:
            restarted = start(["smtp"], env, tmp_path / "smtp-2.log")
            processes.append(restarted)
            wait_for_smtp(port, restarted)
            retried_accepted = sum(send(port, raw)[0] == 250 for raw in retries)
    finally:
        stop_all(processes, tmp_path, timeout=SHUTDOWN_GRACE_SECONDS + 10)
    counts = ledger_counts(committed_db, messages)
    accepted_first = outcomes.count("accepted")
    report(
        request.node.name,
        sent=TRANSFERS,
        accepted=accepted_first + retried_accepted,
        accepted_before_stop=accepted_first,
        retried=len(retries),
        **counts,
        exit_code=exit_code,
        stop_seconds=round(stop_seconds),
    )
    assert "timeout" not in outcomes and "never reached DATA" not in outcomes, outcomes
    # A 250 given while stopping is a promise: its row was committed before the process went away.
    for transfer in transfers:
        if transfer.outcome == "accepted":
            assert hashlib.sha256(transfer.raw).hexdigest() in stored_at_stop
    assert retried_accepted == len(retries)
    assert counts == {"stored": TRANSFERS, "duplicates": 0}
    assert exit_code == 0
    # A "did not hang" bound: the stop waits at most the grace period for sessions in DATA.
    assert stop_seconds < SHUTDOWN_GRACE_SECONDS + 5


# --- a flood of idle connections ---------------------------------------------------------------------

FLOOD_LIMIT = 200  # the default of CENTRALA_SMTP_MAX_CONNECTIONS
FLOOD_CONNECTIONS = FLOOD_LIMIT + 50


def open_flood(port: int) -> tuple[list[RawSession], int]:
    """Open ``FLOOD_CONNECTIONS`` sessions that say nothing, or only EHLO; those greeted, and the refused count."""
    flood, refused = [], 0
    for n in range(FLOOD_CONNECTIONS):
        session = RawSession(port, timeout=10)
        code, text = session.reply()
        if code != 220:
            assert (code, text) == (421, b"4.3.2 Too many connections, try again later")
            refused += 1
            session.close()
            continue
        if n % 2:
            assert session.command(b"EHLO flood.example.org")[0] == 250
        flood.append(session)
    return flood, refused


@pytest.mark.faults
def test_idle_connection_flood_does_not_lock_out_a_normal_sender(tmp_path, committed_db, redis_url, request):
    port = free_port()
    env = child_env(tmp_path, port, CENTRALA_SMTP_MAX_CONNECTIONS=str(FLOOD_LIMIT))
    server = start(["smtp"], env, tmp_path / "smtp.log")
    raw = as_stored(make_mail(message_id="<after-the-flood@example.cz>"))
    flood: list[RawSession] = []
    try:
        wait_for_smtp(port, server)
        flood, refused = open_flood(port)
        # Silent for longer than a client thinking between two commands: idle, as far as a full server knows.
        time.sleep(IDLE_WHEN_FULL_SECONDS + 0.5)
        started = time.monotonic()
        try:
            code, reply = send(port, raw)
        except smtplib.SMTPConnectError as error:
            code, reply = error.smtp_code, error.smtp_error
        waited = time.monotonic() - started
        closing_words = [
            words for words in (session.closing_words() for session in flood) if words is not None
        ]
    finally:
        for session in flood:
            session.close()
        stop_all([server], tmp_path, timeout=SHUTDOWN_GRACE_SECONDS + 10)
    counts = ledger_counts(committed_db, [raw])
    report(
        request.node.name,
        flood_opened=FLOOD_CONNECTIONS,
        flood_refused_at_connect=refused,
        flood_closed_by_server=len(closing_words),
        sent=1,
        accepted=int(code == 250),
        **counts,
    )
    assert code == 250, reply
    assert waited < 10
    assert counts == {"stored": 1, "duplicates": 0}
    # Room was made by closing idle sessions, each told why; the limit still held.
    assert closing_words and set(closing_words) == {REPLY_IDLE_TIMEOUT.encode() + b"\r\n"}
    assert len(flood) - len(closing_words) < FLOOD_LIMIT


def test_a_full_server_closes_the_longest_idle_session_but_never_one_in_data(
    run_server, settings, committed_db, request
):
    server = run_server(settings.model_copy(update={"smtp_max_connections": 2}))
    raw = as_stored(make_mail(message_id="<slow-but-in-data@example.cz>"))
    data = data_section(raw)
    with RawSession(server.port) as in_data, RawSession(server.port) as idle:
        in_data.start_data()
        in_data.send(data[:100])
        assert idle.reply()[0] == 220
        assert idle.command(b"EHLO idle.example.org")[0] == 250
        time.sleep(IDLE_WHEN_FULL_SECONDS + 0.5)
        with RawSession(server.port) as newcomer:
            greeting = newcomer.reply()
            newcomer.command(b"QUIT")
        idle_closing = idle.replies_until_closed()
        in_data.send(data[100:])
        in_data_reply = in_data.reply()
    report(
        request.node.name,
        sessions=3,
        closed_by_server=len(idle_closing),
        sent=1,
        accepted=int(in_data_reply[0] == 250),
        **ledger_counts(committed_db, [raw]),
    )
    assert greeting[0] == 220
    assert idle_closing == [(421, REPLY_IDLE_TIMEOUT.encode()[4:])]
    assert in_data_reply[0] == 250
    assert [row.raw for row in stored(committed_db)] == [raw]


# --- 150 recipients in one transaction -------------------------------------------------------------------


def test_150_recipients_get_100_accepted_the_rest_452_and_one_row(smtp_server, committed_db, request):
    recipients = [f"support+r{n}@localhost" for n in range(150)]
    raw = as_stored(make_mail(message_id="<many-recipients@example.cz>"))
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.mail(SENDER)[0] == 250
        replies = [client.rcpt(recipient) for recipient in recipients]
        first = client.data(raw)
        # RFC 5321 §4.5.3.1.10: the sender delivers the deferred recipients in a later transaction.
        deferred = [
            recipient for recipient, reply in zip(recipients, replies, strict=True) if reply[0] == 452
        ]
        assert client.mail(SENDER)[0] == 250
        later_replies = [client.rcpt(recipient) for recipient in deferred]
        second = client.data(raw)
    rows = stored(committed_db)
    report(
        request.node.name,
        sent=1,
        transactions=2,
        recipients=len(recipients),
        recipients_accepted=sum(reply[0] == 250 for reply in replies),
        recipients_deferred=len(deferred),
        accepted=sum(reply[0] == 250 for reply in (first, second)),
        **ledger_counts(committed_db, [raw]),
    )
    assert replies[:MAX_RECIPIENTS] == [(250, b"2.1.5 Ok")] * MAX_RECIPIENTS
    assert replies[MAX_RECIPIENTS:] == [(452, b"4.5.3 Too many recipients")] * (150 - MAX_RECIPIENTS)
    assert later_replies == [(250, b"2.1.5 Ok")] * len(deferred)
    assert first[0] == 250 and second[0] == 250
    assert [(row.raw, row.rcpt_tos) for row in rows] == [(raw, recipients[:MAX_RECIPIENTS])]
    assert queued_id(first[1]) == queued_id(second[1]) == rows[0].id


# --- SMTP smuggling and STARTTLS injection ------------------------------------------------------------

# Bare CR and LF variants that some servers take for the end of data (CVE-2023-51764 and its family).
FALSE_ENDS = (b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r")
SMUGGLED = (
    b"MAIL FROM:<evil@x>\r\nRCPT TO:<support@localhost>\r\nDATA\r\n"
    b"From: evil@x\r\nTo: support@localhost\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
)


def smuggling_content(n: int, false_end: bytes) -> bytes:
    head = (
        f"From: Alice <alice@example.org>\r\nTo: support@localhost\r\nSubject: probe {n}\r\n"
        f"Message-ID: <smuggle-{n}@example.org>\r\n\r\nHello"
    ).encode()
    return head + false_end + SMUGGLED


def test_smuggled_end_of_data_is_stored_as_content_of_the_one_real_message(
    smtp_server, committed_db, request
):
    contents = [smuggling_content(n, false_end) for n, false_end in enumerate(FALSE_ENDS)]
    transcripts = []
    for content in contents:
        with RawSession(smtp_server.port) as session:
            session.start_data()
            # The whole rest in one packet, as a smuggler pipelines it.
            session.send(content + b"\r\n.\r\nQUIT\r\n")
            transcripts.append(session.replies_until_closed())
    rows = stored(committed_db)
    # RFC 5321 §4.5.2: only CRLF "." CRLF ends the data; a line beginning with a dot loses that dot.
    expected = [unstuffed(content + b"\r\n") for content in contents]
    accepted = sum(1 for transcript in transcripts for code, _text in transcript if code == 250)
    report(
        request.node.name,
        sent=len(contents),
        accepted=accepted,
        refused=sum(1 for transcript in transcripts if transcript[0][0] != 250),
        **ledger_counts(committed_db, expected),
        smuggled=sum(row.mail_from == "evil@x" for row in rows),
    )
    for transcript in transcripts:
        # One reply to the one end of data and one to QUIT: no reply to a smuggled MAIL, RCPT or DATA.
        assert [code for code, _text in transcript] == [250, 221], transcript
    assert [row.raw for row in rows] == expected
    assert all(SMUGGLED.split(b"\r\n")[0] in row.raw for row in rows)
    assert {row.mail_from for row in rows} == {SENDER}


def test_starttls_is_not_offered_and_commands_piped_after_it_run_in_plaintext(
    smtp_server, committed_db, request
):
    raw = as_stored(make_mail(message_id="<after-starttls@example.cz>"))
    with RawSession(smtp_server.port) as session:
        assert session.reply()[0] == 220
        code, extensions = session.command(b"EHLO client.example.org")
        # CVE-2011-0411: plaintext sent after STARTTLS in the same packet must never reach a TLS session.
        session.send(b"STARTTLS\r\nRSET\r\n")
        starttls, rset = session.reply(), session.reply()
        session.send(b"STARTTLS\r\nMAIL FROM:<" + SENDER.encode() + b">\r\n")
        second_starttls, mail = session.reply(), session.reply()
        assert session.command(b"RCPT TO:<support@localhost>")[0] == 250
        assert session.command(b"DATA")[0] == 354
        session.send(data_section(raw))
        data = session.reply()
        session.command(b"QUIT")
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls()
    rows = stored(committed_db)
    report(request.node.name, sent=1, accepted=int(data[0] == 250), **ledger_counts(committed_db, [raw]))
    assert code == 250 and b"STARTTLS" not in extensions.upper()
    # TLS is terminated in front of the server (README): STARTTLS gets RFC 3207's 454, the session stays
    # plaintext and the command piped after it is answered in plaintext, in order.
    assert starttls == second_starttls == (454, b"TLS not available")
    assert rset == (250, b"OK")
    assert mail[0] == 250 and data[0] == 250
    assert [(row.raw, row.mail_from) for row in rows] == [(raw, SENDER)]


# --- a 5,000-octet line -----------------------------------------------------------------------------

LONG_LINE_OCTETS = 5_000


def test_5000_octet_line_in_data_is_stored_byte_for_byte(smtp_server, committed_db, request):
    # Mail with a long unwrapped HTML line is real; 8bit text/html has no soft line breaks to shorten it.
    head = (
        b"From: Alice <alice@example.org>\r\nTo: support@localhost\r\nSubject: Long line\r\n"
        b"Message-ID: <long-line@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    line = b"<p>" + b"x" * (LONG_LINE_OCTETS - 7) + b"</p>"
    assert len(line) == LONG_LINE_OCTETS
    raw = head + line + b"\r\n"
    code, reply = send(smtp_server.port, raw)
    rows = stored(committed_db)
    report(request.node.name, sent=1, accepted=int(code == 250), **ledger_counts(committed_db, [raw]))
    assert code == 250, reply
    assert [row.raw for row in rows] == [raw]


def test_5000_octet_command_line_is_refused_and_the_session_goes_on(smtp_server, committed_db, request):
    raw = as_stored(make_mail(message_id="<after-long-command@example.cz>"))
    with RawSession(smtp_server.port) as session:
        assert session.reply()[0] == 220
        assert session.command(b"EHLO client.example.org")[0] == 250
        long_command = b"MAIL FROM:<" + b"a" * LONG_LINE_OCTETS + b"@example.org>"
        refused = session.command(long_command)
        assert session.command(b"MAIL FROM:<" + SENDER.encode() + b">")[0] == 250
        assert session.command(b"RCPT TO:<support@localhost>")[0] == 250
        assert session.command(b"DATA")[0] == 354
        session.send(data_section(raw))
        code, reply = session.reply()
    rows = stored(committed_db)
    report(request.node.name, sent=1, accepted=int(code == 250), **ledger_counts(committed_db, [raw]))
    assert refused == (500, b"Command line too long")
    assert code == 250, reply
    assert [row.raw for row in rows] == [raw]

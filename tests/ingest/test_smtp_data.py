"""The data of a DATA command as the real server reads it: where it ends, what is stored, the line and size
limits; over real sockets, raw where the test needs exact octets on the wire and how they are split."""

from __future__ import annotations

import random
import select
import socket
import time
from itertools import pairwise

import pytest

from centrala.ingest.ledger import load_raw
from centrala.ingest.smtp import REPLY_DATA_TIMEOUT, REPLY_IDLE_TIMEOUT, REPLY_LINE_TOO_LONG, InboundSMTP
from tests.support.smtp import (
    SIZE_LIMIT,
    TOO_BIG,
    RawSession,
    connect,
    data_section,
    make_message,
    queued_id,
    send,
    stored,
    wait_until,
)

LINE_LIMIT = InboundSMTP.line_length_limit
MIB = 1024 * 1024
QUIT = b"QUIT\r\n"
BYE = (221, b"Bye")


def send_in_pieces(session: RawSession, data: bytes, cuts: list[int]) -> None:
    """Send ``data`` cut at ``cuts``, each piece in its own packet."""
    session.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for start, end in pairwise([0, *cuts, len(data)]):
        session.send(data[start:end])
        time.sleep(0.005)


# As sent after DATA (dot-stuffed, with the end of data), and as stored.
DATA_AND_CONTENT = [
    pytest.param(b".\r\n", b"", id="empty"),
    pytest.param(b"\r\n.\r\n", b"\r\n", id="one-empty-line"),
    pytest.param(b"..\r\n.\r\n", b".\r\n", id="first-line-a-dot"),
    pytest.param(
        b"..X-Dot: 1\r\n\r\nHi\r\n.\r\n", b".X-Dot: 1\r\n\r\nHi\r\n", id="first-line-begins-with-a-dot"
    ),
    pytest.param(
        b"S: 1\r\n\r\n..\r\n...\r\n..x\r\n.\r\n", b"S: 1\r\n\r\n.\r\n..\r\n.x\r\n", id="stuffed-lines"
    ),
    pytest.param(
        b"S: 1\r\n\r\na\n.\nb\r.\rc\r\n.\r\n", b"S: 1\r\n\r\na\n.\nb\r.\rc\r\n", id="bare-lf-and-cr"
    ),
    pytest.param(b"S: 1\r\n\r\na\r\n.\rb\r\n.\r\n", b"S: 1\r\n\r\na\r\n\rb\r\n", id="dot-then-bare-cr"),
]


@pytest.mark.parametrize("in_pieces", [False, True], ids=["one-packet", "octet-by-octet"])
@pytest.mark.parametrize(("data", "content"), DATA_AND_CONTENT)
def test_data_ends_only_at_crlf_dot_crlf_and_loses_its_stuffed_dots(
    smtp_server, committed_db, data, content, in_pieces
):
    with RawSession(smtp_server.port) as session:
        session.start_data()
        # QUIT right behind the end of data, as a pipelining client sends it (RFC 2920): it must stay a command.
        wire = data + QUIT
        send_in_pieces(session, wire, list(range(1, len(wire))) if in_pieces else [])
        replies = session.replies_until_closed()

    assert [code for code, _text in replies] == [250, 221], replies
    [row] = stored(committed_db)
    assert row.raw == content
    assert queued_id(replies[0][1]) == row.id


def test_transactions_pipelined_behind_the_end_of_data_are_answered_in_order(smtp_server, committed_db):
    first, second = make_message(), make_message()
    with RawSession(smtp_server.port) as session:
        session.start_data()
        session.send(
            data_section(first) + b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n"
        )
        replies = [session.reply() for _ in range(4)]
        session.send(data_section(second) + QUIT)
        replies += session.replies_until_closed()

    assert [code for code, _text in replies] == [250, 250, 250, 354, 250, 221], replies
    rows = stored(committed_db)
    assert [(row.raw, row.mail_from, row.mailbox) for row in rows] == [
        (first, "jana@example.cz", "support@localhost"),
        (second, "bob@example.org", "sales@localhost"),
    ]


def test_message_of_several_mebibytes_is_stored_octet_for_octet(run_server, settings, committed_db):
    server = run_server(settings.model_copy(update={"max_message_bytes": 8 * MIB}))
    # Random octets, a tenth of them CR, LF or a dot: bare CRs and LFs, CRLF "." CRLF and stuffed lines,
    # 8-bit octets, all across the pieces the server reads.
    noisy = bytes.maketrans(bytes(range(26)), b"\r" * 8 + b"\n" * 8 + b"." * 10)
    content = random.Random(5321).randbytes(3 * MIB).translate(noisy) + b"\r\n"
    with RawSession(server.port) as session:
        session.start_data()
        session.send(data_section(content) + QUIT)
        replies = session.replies_until_closed()

    assert [code for code, _text in replies] == [250, 221], replies
    [row] = stored(committed_db)
    assert load_raw(row=row, blobs=server.handler.blobs) == content


def test_line_at_the_line_limit_is_stored_and_one_octet_longer_is_refused_with_500(
    run_server, settings, committed_db
):
    server = run_server(settings.model_copy(update={"max_message_bytes": 4 * MIB}))
    head = b"From: alice@example.org\r\nTo: support@localhost\r\nSubject: One long line\r\n\r\n"
    # The limit counts a line with its CRLF.
    longest = head + b"x" * (LINE_LIMIT - 2) + b"\r\n"
    too_long = head + b"y" * (LINE_LIMIT - 1) + b"\r\n"
    with connect(server.port, timeout=30) as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt("support@localhost")
        refused = client.data(too_long)
        # The session goes on.
        client.mail("alice@example.org")
        client.rcpt("support@localhost")
        accepted = client.data(longest)

    assert refused == (500, REPLY_LINE_TOO_LONG[4:].encode())
    assert accepted[0] == 250
    [row] = stored(committed_db)
    assert load_raw(row=row, blobs=server.handler.blobs) == longest


def test_message_of_exactly_the_size_limit_is_accepted_and_one_octet_more_is_not(smtp_server, committed_db):
    head = b"From: alice@example.org\r\nTo: support@localhost\r\nSubject: Just the size\r\n\r\n"
    exact = head + b"x" * (SIZE_LIMIT - len(head) - 2) + b"\r\n"
    over = head + b"y" * (SIZE_LIMIT - len(head) - 1) + b"\r\n"
    assert len(exact) == SIZE_LIMIT

    assert send(smtp_server.port, over) == TOO_BIG
    code, _reply = send(smtp_server.port, exact)

    assert code == 250
    assert [row.raw for row in stored(committed_db)] == [exact]


def test_client_hanging_up_in_the_middle_of_data_leaves_nothing_and_the_server_serving(
    smtp_server, committed_db
):
    unfinished, complete = make_message(padding=4000), make_message()
    with RawSession(smtp_server.port) as session:
        session.start_data()
        session.send(data_section(unfinished)[:2000])
    wait_until(lambda: smtp_server.server.open_sessions == 0)

    code, _reply = send(smtp_server.port, complete)

    assert code == 250
    assert [row.raw for row in stored(committed_db)] == [complete]


# A short session timeout, so that "longer than the session timeout" fits a test.
SHORT_TIMEOUT = 1.0


def _reply_line(reply: str) -> tuple[int, bytes]:
    return int(reply[:3]), reply[4:].encode()


def test_upload_slower_than_the_session_timeout_but_steady_is_stored(run_server, committed_db):
    """A large message over a slow link takes longer than the session timeout (300 s: 25 MiB at 85 KB/s);
    while the data keeps coming the session must not be cut off, or the sender retries the same upload
    for ever."""
    server = run_server(session_timeout=SHORT_TIMEOUT, min_data_rate=100)
    message = make_message(padding=3000)
    section = data_section(message)
    pieces = [section[start : start + 200] for start in range(0, len(section), 200)]
    started = time.monotonic()
    with RawSession(server.port) as session:
        session.start_data()
        for piece in pieces:
            session.send(piece)
            time.sleep(0.2)
        code, _reply = session.reply()
    assert time.monotonic() - started > 2 * SHORT_TIMEOUT
    assert code == 250
    assert [row.raw for row in stored(committed_db)] == [message]


def test_data_trickling_below_the_minimum_rate_is_cut_off_with_421(run_server, committed_db):
    """A client that sends an octet now and then keeps resetting the silence timer; the minimum rate still
    frees its connection slot, and nothing half-received is stored."""
    server = run_server(session_timeout=SHORT_TIMEOUT, min_data_rate=10_000)
    octets = data_section(make_message())
    replies = []
    started = time.monotonic()
    with RawSession(server.port) as session:
        session.start_data()
        for octet in octets:
            session.send(bytes([octet]))
            # The wait between two octets, watching for the server's answer.
            if select.select([session.sock], [], [], 0.1)[0]:
                replies = session.replies_until_closed()
                break
    elapsed = time.monotonic() - started
    assert replies == [_reply_line(REPLY_DATA_TIMEOUT)]
    # The first session timeout is granted in full, plus the time the few octets sent have earned; sent at
    # this pace, the message would have taken half a minute.
    assert SHORT_TIMEOUT <= elapsed < 4 * SHORT_TIMEOUT < len(octets) * 0.1
    wait_until(lambda: server.server.open_sessions == 0)
    assert stored(committed_db) == []


def test_silent_session_is_closed_with_421_after_the_session_timeout(run_server):
    server = run_server(session_timeout=SHORT_TIMEOUT)
    with RawSession(server.port) as session:
        assert session.reply()[0] == 220
        assert session.command(b"EHLO client.example.org")[0] == 250
        assert session.replies_until_closed() == [_reply_line(REPLY_IDLE_TIMEOUT)]

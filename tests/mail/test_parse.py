"""Parsing raw MIME into what the ticket system needs."""

import pytest

from centrala.core.errors import MessageRejected
from centrala.mail.parse import parse_email
from tests.support.mails import make_mail


def test_plain_message_yields_sender_subject_ids_and_text():
    parsed = parse_email(
        make_mail(in_reply_to="<a@x>", references="<root@x> <a@x>", message_id="<m1@example.cz>")
    )
    assert parsed.from_address == "jana@example.cz"
    assert parsed.from_name == "Jana Nováková"
    assert parsed.subject == "Nefunguje mi přihlášení"
    assert parsed.message_id == "m1@example.cz"
    assert parsed.referenced_ids == ["a@x", "root@x"]
    assert "nemohu se přihlásit" in parsed.text


def test_legacy_charset_body_is_decoded():
    raw = (
        "From: Petr <petr@example.cz>\r\nTo: support@localhost\r\nSubject: =?iso-8859-2?q?P=F8=EDloha?=\r\n"
        "Message-ID: <legacy@example.cz>\r\nContent-Type: text/plain; charset=iso-8859-2\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode("ascii") + "Žluťoučký kůň úpěl ďábelské ódy.\r\n".encode("iso-8859-2")
    parsed = parse_email(raw)
    assert parsed.subject == "Příloha"
    assert parsed.text == "Žluťoučký kůň úpěl ďábelské ódy."


def test_unknown_charset_falls_back_and_records_defect():
    raw = (
        b"From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello world\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.text == "hello world"
    assert any("LookupError" in defect for defect in parsed.defects)


def test_html_only_message_gets_text_and_sanitised_html():
    raw = (
        b"From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Hello <b>there</b></p><script>alert(1)</script><p onclick='x()'>Second</p>\r\n"
    )
    parsed = parse_email(raw)
    assert "script" not in parsed.html and "onclick" not in parsed.html
    assert parsed.text.splitlines()[0] == "Hello there"
    assert "Second" in parsed.text


def test_attachments_are_returned_with_their_bytes():
    parsed = parse_email(make_mail(attachments=[("faktura.pdf", "application/pdf", b"%PDF-1.4 data")]))
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("faktura.pdf", "application/pdf", b"%PDF-1.4 data")
    ]


@pytest.mark.parametrize(
    "from_header",
    [
        "",  # no From at all
        "undisclosed",
        "alice@example.org)<bob@example.org>",  # CVE-2023-27043: refuse rather than guess the author
        "a@example.org, b@example.org",
    ],
)
def test_message_without_one_clear_sender_is_rejected(from_header):
    raw = (f"From: {from_header}\r\n" if from_header else "").encode() + (
        b"To: support@localhost\r\nSubject: x\r\n\r\nbody\r\n"
    )
    with pytest.raises(MessageRejected):
        parse_email(raw)

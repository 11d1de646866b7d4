"""Inputs the fuzzer of the inbound path found breaking the parser, each as its minimal message."""

from __future__ import annotations

import time

import pytest

from centrala.mail.parse import MAX_HTML_DEPTH, decode_bytes, html_nesting_exceeds, parse_email, sanitize_html

HEAD = b"From: Jana <jana@example.cz>\r\nTo: support@localhost\r\n"


def test_encoded_word_with_a_non_ascii_charset_label_is_read_as_text():
    # classify's subject reader raised email.errors.CharsetError on the label "\x80".
    parsed = parse_email(HEAD + b"Subject: =?\xc2\x80?B?QUE=?= hello\r\n\r\nbody\r\n")
    assert parsed.from_address == "jana@example.cz"
    assert "hello" in parsed.subject


@pytest.mark.parametrize("label", ["punycode", "idna", "undefined", "unicode_escape", "raw_unicode_escape"])
def test_python_only_codec_labels_are_unknown_charsets(label):
    # punycode and undefined raised a plain UnicodeError, which is not a UnicodeDecodeError.
    body = "Dobrý den, účet.\\N{x}".encode()
    parsed = parse_email(
        HEAD
        + f"Subject: =?{label}?B?QUE=?=\r\nContent-Type: text/plain; charset={label}\r\n\r\n".encode()
        + body
        + b"\r\n"
    )
    assert parsed.text == body.decode()
    assert any(label in defect and "decoded as utf-8" in defect for defect in parsed.defects)
    assert decode_bytes(b"a" * 100, label) == (
        "a" * 100,
        f"LookupError: unknown charset {label!r}, decoded as us-ascii",
    )


def test_nul_and_control_characters_do_not_reach_text_names_or_ids():
    # PostgreSQL refuses NUL in text: the message stayed "received" and its job failed for ever.
    parsed = parse_email(
        b"From: Ja\x00na <jana@example.cz>\r\nTo: support@localhost\r\nSubject: a\x00b\x01c\r\n"
        b"Message-ID: <a\x00b@example.cz>\r\nIn-Reply-To: <r\x00@example.cz> <ok@example.cz>\r\n\r\n"
        b"hello\x00world\r\n"
    )
    assert parsed.subject == "a b c"
    assert parsed.from_name == "Ja na"
    assert parsed.text == "helloworld"
    assert parsed.message_id is None
    assert parsed.in_reply_to == ["ok@example.cz"]


def test_nul_in_an_html_body_does_not_reach_the_html():
    parsed = parse_email(HEAD + b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>a\x00b</p>\r\n")
    assert "\x00" not in parsed.html and "\x00" not in parsed.text


def test_overlong_content_id_is_dropped_and_the_image_kept_as_a_file():
    # Attachment.content_id holds 255 characters; PostgreSQL refused the row.
    content_id = b"x" * 300 + b"@example.cz"
    raw = HEAD + (
        b'Subject: x\r\nContent-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html\r\n\r\n<img src="cid:' + content_id + b'">\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <" + content_id + b">\r\n\r\npng\r\n--r--\r\n"
    )
    parsed = parse_email(raw)
    [image] = parsed.attachments
    assert image.content_id is None and image.data == b"png"
    assert any("Content-ID longer than 255" in defect for defect in parsed.defects)


@pytest.mark.parametrize("tag", ["div", "blockquote"])
def test_deeply_nested_html_is_shown_as_text_in_bounded_time(tag):
    # html5ever inside nh3 took 88 s on 100,000 nested <div>: quadratic in the depth.
    raw = (
        HEAD + b"Subject: x\r\nContent-Type: text/html\r\n\r\n" + f"<{tag}>".encode() * 100_000 + b"deep\r\n"
    )
    started = time.perf_counter()
    parsed = parse_email(raw)
    assert time.perf_counter() - started < 2
    assert parsed.text.endswith("deep")
    assert (
        parsed.html.startswith("<pre>")
        and parsed.html.endswith("deep</pre>")
        and "<" + tag not in parsed.html
    )


def test_html_within_the_depth_limit_keeps_its_markup():
    html = "<div>" * (MAX_HTML_DEPTH - 1) + "<b>bold</b>" + "</div>" * (MAX_HTML_DEPTH - 1)
    assert not html_nesting_exceeds(html, MAX_HTML_DEPTH)
    assert "<b>bold</b>" in sanitize_html(html)


def test_nesting_scan_counts_open_elements_not_siblings():
    assert not html_nesting_exceeds("<p>para" * 10_000 + "<br>" * 10_000 + "<div></div>" * 10_000, 10)
    assert not html_nesting_exceeds("<table><tr><td>" * 5 + "x", 10)
    assert html_nesting_exceeds("<span>" * 11, 10)
    assert html_nesting_exceeds("<div><span></div>" * 3 + "<b>" * 8, 10) is False
    assert html_nesting_exceeds("<div>" * 6 + "</span>" * 6 + "<div>" * 5, 10)


def test_lone_surrogates_from_utf7_become_replacement_characters():
    # UTF-7 decodes "+2AA-" to an unpaired surrogate. It reached the acknowledgement's Subject, and the
    # header folder raised UnicodeEncodeError; PostgreSQL's driver refuses it too.
    parsed = parse_email(
        HEAD + b"Subject: =?utf-7?Q?a+2AA-b?=\r\nContent-Type: text/plain; charset=utf-7\r\n\r\na+2AA-b\r\n"
    )
    assert parsed.subject == "a\ufffdb"
    assert parsed.text == "a\ufffdb"


@pytest.mark.parametrize(
    ("raw_id", "expected"),
    [(b"<came\xc3\xa9@pony>", "cameé@pony"), (b"<came\x80@pony>", "came€@pony")],
)
def test_8bit_message_ids_are_decoded_not_left_surrogate_escaped(raw_id, expected):
    # The escaped bytes reached the database driver, which cannot encode them (UnicodeEncodeError).
    parsed = parse_email(
        HEAD + b"Subject: x\r\nMessage-ID: " + raw_id + b"\r\nIn-Reply-To: " + raw_id + b"\r\n\r\nhi\r\n"
    )
    assert parsed.message_id == expected
    assert parsed.in_reply_to == [expected]


def test_bounce_with_8bit_original_message_id_reports_no_id():
    from centrala.mail.classify import MailKind

    parsed = parse_email(
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@localhost\r\nSubject: Undelivered Mail\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; jana@example.cz\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ours\xc3\xa9@centrala>\r\n\r\n--b--\r\n",
        mail_from="",
    )
    assert parsed.classification.kind == MailKind.BOUNCE
    assert parsed.classification.bounce.original_message_id is None
